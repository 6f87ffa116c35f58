"""``report.html`` of an analysis: the figures of :mod:`probe.report.figures`, the sections of
:mod:`probe.report.html`, the representation panel and the attribution heatmap grids (computed beforehand by
:func:`probe.analyses.engine.grids.attribution_grids`) of :mod:`probe.report.panels`, in one self-contained page. The
report computes nothing: it draws an :class:`~probe.analyses.engine.result.AnalysisResult`.

Every figure goes through the figure cache (:mod:`probe.report.figcache`, ``<out>/cache/report-figures``): a figure
whose data is unchanged is not drawn again (the attributions behind the grids have their own cache:
:func:`probe.analyses.engine.grids.attribution_grids`).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probe.report.comparison import comparison_section
from probe.report.figcache import FigureCache, write_if_changed
from probe.report.figures import chain_figure, claims_forest, dynamics, proposition_panels, sweep_overview
from probe.report.html import Section, analysis_sections, glossary_section, render_page
from probe.report.panels import attribution_figures, attribution_section, representation_section

if TYPE_CHECKING:
    from probe.analyses.engine.grids import AttributionGrids
    from probe.analyses.engine.result import AnalysisResult

__all__ = ["FIGURE_CACHE_DIR", "write_report"]

#: the figure cache's folder under the analysis's ``cache`` folder.
FIGURE_CACHE_DIR = "report-figures"


def write_report(result: AnalysisResult, grids: AttributionGrids | None = None,
                 extra_sections: Sequence[Section] = (), title: str | None = None, *, strict: bool = False,
                 use_cache: bool = True) -> Path:
    """Draw the figures (``<out>/figures/*.png``, each only when the figure cache does not hold it for the same data)
    and write ``<out>/report.html``; returns the report's path.

    Args:
        result: what :func:`probe.analyses.engine.analyze` (or :func:`probe.analyses.engine.load_analysis`) returned.
        grids: attribution heatmap grids from :func:`probe.analyses.engine.grids.attribution_grids` (None: no such
            section).
        extra_sections: more sections, placed before the run table.
        title: the page title (default ``probe analyze: <name of the analysed path>``).
        strict: raise when a figure or panel fails instead of recording it in ``result.errors``.
        use_cache: reuse cached figures (False: draw everything; the cache is still rewritten).

    A figure or panel that fails is recorded in ``result.errors`` (and listed in the report); write the tables again
    (:func:`probe.analyses.engine.write_tables`) so that ``metrics.json`` lists it too. The call's figure cache (the
    names it drew and those it reused) is left in :data:`LAST_CACHE`.
    """
    fig_dir = result.out / "figures"
    cache = FigureCache(result.out / "cache" / FIGURE_CACHE_DIR, reuse=use_cache)
    figures: dict[str, bytes] = {}
    runs = result.runs
    drawers: list[tuple[str, Any, tuple]] = []
    if len(runs):
        epochs = result.epochs
        drawers.append(("overview", sweep_overview, (runs,)))
        drawers.append(("claims", claims_forest, (result.claims,)))
        drawers.append(("chain", chain_figure, (epochs, runs)))
        for budget in [b for b in ("fixed", "matched") if (epochs["budget"] == b).any()]:
            rows = epochs[epochs["budget"] == budget]
            drawers.append((f"dynamics_{budget}", dynamics, (rows, budget)))
        drawers.append(("proposition", proposition_panels, (result.ratio_curves, result.proposition,
                                                            result.ratio_vs_norm, result.proposition_steps)))
    for name, draw, args in drawers:
        try:
            figures[name] = cache.png(name, draw, *args)
            result.files[f"figures/{name}.png"] = write_if_changed(fig_dir / f"{name}.png", figures[name])
        except Exception as exc:  # noqa: BLE001 - a figure that fails must not lose the report
            if strict:
                raise
            result.record_error(f"figure {name}", exc)
    panels: list[Section] = []
    makers = [("comparison", lambda: comparison_section(result, fig_dir, cache)),
              ("representations", lambda: representation_section(result, fig_dir, cache))]
    if grids is not None:
        makers.append(("attribution grids", lambda: attribution_section(
            attribution_figures(result, grids, fig_dir, cache), grids.notes)))
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
    write_if_changed(path, render_page(name, sections, intro).encode("utf-8"))
    result.files["report.html"] = path
    global LAST_CACHE
    LAST_CACHE = cache
    return path


#: the figure cache of the latest :func:`write_report` call (its ``drawn`` and ``reused`` lists), for tests and timing.
LAST_CACHE: FigureCache | None = None
