"""``report.html`` of an analysis: the figures of :mod:`probe.report.figures`, the sections of
:mod:`probe.report.html`, the representation panel and the attribution heatmap grids (computed beforehand by
:func:`probe.analyses.engine.grids.attribution_grids`) of :mod:`probe.report.panels`, in one self-contained page. The
report computes nothing: it draws an :class:`~probe.analyses.engine.result.AnalysisResult`.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probe.report.figures import (
    chain_figure,
    claims_forest,
    dynamics,
    proposition_panels,
    save_figure,
    sweep_overview,
)
from probe.report.html import Section, analysis_sections, glossary_section, render_page
from probe.report.panels import attribution_sections, representation_section
from probe.store.atomic import atomic_write_bytes

if TYPE_CHECKING:
    from probe.analyses.engine.grids import AttributionGrids
    from probe.analyses.engine.result import AnalysisResult


def write_report(result: AnalysisResult, grids: AttributionGrids | None = None, extra_sections: Sequence[Section] = (),
                 title: str | None = None, *, strict: bool = False) -> Path:
    """Draw the figures (``<out>/figures/*.png``) and write ``<out>/report.html``; returns the report's path.

    Args:
        result: what :func:`probe.analyses.engine.analyze` (or :func:`probe.analyses.engine.load_analysis`) returned.
        grids: attribution heatmap grids from :func:`probe.analyses.engine.grids.attribution_grids` (None: no such
            section).
        extra_sections: more sections, placed before the run table.
        title: the page title (default ``probe analyze: <name of the analysed path>``).
        strict: raise when a figure or panel fails instead of recording it in ``result.errors``.

    A figure or panel that fails is recorded in ``result.errors`` (and listed in the report); write the tables again
    (:func:`probe.analyses.engine.write_tables`) so that ``metrics.json`` lists it too.
    """
    fig_dir = result.out / "figures"
    figures: dict[str, Path] = {}
    runs = result.runs
    drawers: list[tuple[str, Any]] = []
    if len(runs):
        drawers.append(("overview", lambda: sweep_overview(runs)))
        drawers.append(("claims", lambda: claims_forest(result.claims)))
        drawers.append(("chain", lambda: chain_figure(result.epochs, result.runs)))
        for budget in [b for b in ("fixed", "matched") if (result.epochs["budget"] == b).any()]:
            drawers.append((f"dynamics_{budget}", lambda b=budget: dynamics(result.epochs, budget=b)))
        drawers.append(("proposition", lambda: proposition_panels(result.ratio_curves, result.proposition,
                                                                  result.ratio_vs_norm, result.proposition_steps)))
    for name, draw in drawers:
        try:
            figures[name] = save_figure(draw(), fig_dir / f"{name}.png")
            result.files[f"figures/{name}.png"] = figures[name]
        except Exception as exc:  # noqa: BLE001 - a figure that fails must not lose the report
            if strict:
                raise
            result.record_error(f"figure {name}", exc)
    panels: list[Section] = []
    makers = [("representations", lambda: representation_section(result, fig_dir))]
    if grids is not None:
        makers.append(("attribution grids", lambda: attribution_sections(result, grids, fig_dir)))
    for name, make in makers:
        try:
            panels += make()
        except Exception as exc:  # noqa: BLE001 - a panel that fails must not lose the report
            if strict:
                raise
            result.record_error(f"panel {name}", exc)
    sections = analysis_sections(result, figures)
    runs_at = next(i for i, s in enumerate(sections) if s.title == "Runs")
    sections[runs_at:runs_at] = [*panels, *extra_sections]
    sections.append(glossary_section(sections))
    files = ", ".join(f"<code>{html.escape(k)}</code>" for k in ("metrics.json", "runs.csv", "epochs.csv",
                                                                   "claims.csv", "failures.csv", "ratio_curves.csv",
                                                                   "proposition_steps.csv", "chain.csv"))
    intro = (f"<p>Written by <code>probe analyze</code> into <code>{html.escape(str(result.out))}</code>, next to "
             f"{files}. Metric names link to their definitions in the glossary at the end.</p>")
    name = title or f"probe analyze: {Path(result.config.get('path', result.out)).name}"
    path = result.out / "report.html"
    atomic_write_bytes(path, render_page(name, sections, intro).encode("utf-8"))
    result.files["report.html"] = path
    return path
