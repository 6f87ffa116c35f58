"""``report.html`` of an analysis: the figures of :mod:`probe.report.figures`, the sections of
:mod:`probe.report.html`, the representation panel and the attribution heatmap grids (computed beforehand by
:func:`probe.analyses.engine.grids.attribution_grids`, or on request: :class:`GridRequest`) of
:mod:`probe.report.panels`, in one self-contained page. The report computes nothing but the grids it is asked for: it
draws an :class:`~probe.analyses.engine.result.AnalysisResult`.

Every figure goes through the figure cache (:mod:`probe.report.figcache`, ``<out>/cache/report-figures``): a figure
whose data is unchanged is not drawn again, and a :class:`GridRequest` whose inputs are unchanged (the runs' last
epoch files, their configs, the grid options and the attribution code) reuses the grids' figures without computing
the attributions.
"""

from __future__ import annotations

import hashlib
import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probe.report.figcache import FigureCache, data_digest, write_if_changed
from probe.report.figures import chain_figure, claims_forest, dynamics, proposition_panels, sweep_overview
from probe.report.html import Section, analysis_sections, glossary_section, render_page
from probe.report.panels import attribution_figures, attribution_section, representation_section

if TYPE_CHECKING:
    from probe.analyses.engine.grids import AttributionGrids
    from probe.analyses.engine.result import AnalysisResult

__all__ = ["FIGURE_CACHE_DIR", "GridRequest", "grid_inputs_key", "write_report"]

#: the figure cache's folder under the analysis's ``cache`` folder.
FIGURE_CACHE_DIR = "report-figures"
#: the grids' cache entry (in the figure cache folder): the key of their inputs and the figures they gave.
GRIDS_ENTRY = "attribution_grids.json"
#: version of the grids' entry; bump when what the grids depend on changes in a way the key does not see.
GRIDS_VERSION = 1
#: code the attribution grids depend on (relative to the ``probe`` package): hashed into the grids' key.
GRID_CODE = ("analyses/attribution.py", "analyses/attribution_methods.py", "analyses/engine/grids.py",
             "store/reader.py", "models", "data")


@dataclass(frozen=True)
class GridRequest:
    """Attribution grids that :func:`write_report` computes itself
    (``attribution_grids(result, methods, n, samples, strict=strict)``), only when its cache does not already hold
    their figures for the same inputs (see :func:`grid_inputs_key`).

    Attributes:
        methods: the methods (None: :data:`probe.analyses.engine.grids.GRID_METHODS`).
        n: samples per grid; samples: which samples (``bc`` ...); strict: raise on a failing source.
    """

    methods: tuple[str, ...] | None = None
    n: int = 8
    samples: str = "bc"
    strict: bool = False

    def compute(self, result: AnalysisResult) -> AttributionGrids:
        from probe.analyses.engine.grids import GRID_METHODS, attribution_grids

        return attribution_grids(result, self.methods or GRID_METHODS, self.n, self.samples, strict=self.strict)


def _code_digest() -> str:
    """sha256 over the source files of :data:`GRID_CODE` (paths and bytes, in sorted order)."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for part in GRID_CODE:
        path = root / part
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            h.update(str(file.relative_to(root)).encode() + b"\0" + file.read_bytes() + b"\0")
    return h.hexdigest()


def grid_inputs_key(result: AnalysisResult, request: GridRequest) -> str | None:
    """The key of what :meth:`GridRequest.compute` would compute: per source, each analysed run's name, ``run.json``
    and its last epoch's manifest entry (its file's sha256: ``analyze`` re-hashed that file); the request; the device;
    the source of :data:`GRID_CODE`; torch's, captum's and numpy's versions; :data:`GRIDS_VERSION`. None (compute
    every time) when a run uses plugins (their code is not hashed) or a run cannot be read."""
    import importlib.metadata

    import numpy as np

    from probe.analyses.engine.grids import GRID_METHODS, readable_runs

    sources = []
    try:
        for source, runs in readable_runs(result):
            entries = []
            for run in runs:
                if run.plugins:
                    return None
                manifest = run.manifest["epochs"]
                entries.append({"run": run.name, "info": run.info_json, "last": manifest[-1] if manifest else None})
            sources.append({"label": source["label"], "budget": source["budget"], "kind": source["kind"],
                            "runs": entries})
    except Exception:  # noqa: BLE001 - an unreadable run: no key, the grids are computed (and report the error)
        return None
    versions = {}
    for package in ("torch", "captum"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return data_digest({"version": GRIDS_VERSION, "methods": list(request.methods or GRID_METHODS), "n": request.n,
                        "samples": request.samples, "device": result.config.get("device"), "sources": sources,
                        "code": _code_digest(), "numpy": np.__version__, **versions})


def _requested_grids(result: AnalysisResult, request: GridRequest, fig_dir: Path,
                     cache: FigureCache) -> list[Section]:
    """The attribution section of ``request``: from the cache when the grids' inputs and every figure are intact,
    else computed, drawn and recorded (not when computing them recorded an error)."""
    key = grid_inputs_key(result, request)
    entry = cache.files.load_json(GRIDS_ENTRY) if key is not None and cache.reuse else None
    if isinstance(entry, dict) and entry.get("key") == key and isinstance(entry.get("figures"), list):
        figures = []
        for name, caption, sha256 in entry["figures"]:
            png = cache.load(name, sha256=sha256)
            if png is None:
                break
            figures.append((name, png, caption))
        else:
            for name, png, _ in figures:
                result.files[f"figures/{name}.png"] = write_if_changed(fig_dir / f"{name}.png", png)
            cache.reused += [name for name, _, _ in figures]
            return attribution_section(figures, list(entry.get("notes", [])))
    errors = len(result.errors)
    grids = request.compute(result)
    figures = attribution_figures(result, grids, fig_dir, cache)
    if key is not None and len(result.errors) == errors and cache.files.root is not None:
        cache.files.store_json(GRIDS_ENTRY, {"key": key, "notes": list(grids.notes), "figures": [
            [name, caption, hashlib.sha256(png).hexdigest()] for name, png, caption in figures]})
    return attribution_section(figures, grids.notes)


def write_report(result: AnalysisResult, grids: AttributionGrids | GridRequest | None = None,
                 extra_sections: Sequence[Section] = (), title: str | None = None, *, strict: bool = False,
                 use_cache: bool = True) -> Path:
    """Draw the figures (``<out>/figures/*.png``, each only when the figure cache does not hold it for the same data)
    and write ``<out>/report.html``; returns the report's path.

    Args:
        result: what :func:`probe.analyses.engine.analyze` (or :func:`probe.analyses.engine.load_analysis`) returned.
        grids: attribution heatmap grids from :func:`probe.analyses.engine.grids.attribution_grids`, or a
            :class:`GridRequest` to compute them here only when the cache cannot answer (None: no such section).
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
    makers = [("representations", lambda: representation_section(result, fig_dir, cache))]
    if isinstance(grids, GridRequest):
        makers.append(("attribution grids", lambda: _requested_grids(result, grids, fig_dir, cache)))
    elif grids is not None:
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
