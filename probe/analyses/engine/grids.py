"""Attribution heatmap grids of an analysis: the same bias-conflicting test samples across the learning rates of each
sweep, one grid per applicable method, computed here and drawn by :mod:`probe.report` (which computes nothing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probe.analyses.attribution import Attributions, attribute_run
from probe.analyses.attribution_methods import method_applies
from probe.analyses.engine.result import AnalysisResult
from probe.store.reader import Run

#: the methods of the report's grids (those that apply to the model).
GRID_METHODS = ("ig", "saliency", "gradcam")


@dataclass
class AttributionGrid:
    """One grid: rows are the runs of one seed of a source ordered by learning rate (each at its last epoch),
    columns the same ``samples`` of the test split.

    Attributes:
        source: the sweep's label; budget: its budget kind (``fixed`` or ``matched``).
        method: the attribution method; samples: which samples (``bc`` ...); seed: the seed of the rows.
        rows: one :class:`~probe.analyses.attribution.Attributions` per learning rate.
    """

    source: str
    budget: str
    method: str
    samples: str
    seed: int
    rows: list[Attributions] = field(default_factory=list)


@dataclass
class AttributionGrids:
    """The grids of an analysis, and notes on methods that do not apply (``gradcam`` without a conv layer)."""

    grids: list[AttributionGrid] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def readable_runs(result: AnalysisResult) -> list[tuple[dict[str, Any], list[Run]]]:
    """Each source of ``result`` with its runs that were analysed (not ``damaged``), reopened from their folders."""
    damaged = set(result.damaged["run"]) if len(result.runs) else set()
    many = len(result.sources) > 1
    out = []
    for source in result.sources:
        path = Path(source["path"])
        runs = []
        for name in source["runs"]:
            ident = f"{source['label']}/{name}" if many else name
            if ident in damaged:
                continue
            runs.append(Run(path if source["kind"] == "run" else path / name))
        out.append((source, runs))
    return out


def attribution_grids(result: AnalysisResult, methods: Sequence[str] = GRID_METHODS, n: int = 8,
                      samples: str = "bc", *, strict: bool = False) -> AttributionGrids:
    """Attributions of the same ``n`` ``samples`` test samples across the learning rates of each source of
    ``result`` (the runs of its first seed, each at its last epoch), for each method of ``methods`` that applies to
    the model, on the device the analysis used. A source whose grids fail is recorded in ``result.errors`` (raised
    with ``strict``), not fatal.

    Example:
        >>> from probe.analyses.engine import analyze, attribution_grids
        >>> from probe.report import write_report
        >>> result = analyze("checkpoints/my_sweep")                      # doctest: +SKIP
        >>> write_report(result, attribution_grids(result))              # doctest: +SKIP
    """
    out = AttributionGrids()
    for source, runs in readable_runs(result):
        try:
            _source_grids(source, runs, methods, n, samples, result.config.get("device"), out)
        except Exception as exc:  # noqa: BLE001 - a grid that fails must not lose the report
            if strict:
                raise
            result.record_error(f"the attribution grids of {source['label']}", exc)
    return out


def _source_grids(source: dict[str, Any], runs: list[Run], methods: Sequence[str], n: int, samples: str,
                  device: str | None, out: AttributionGrids) -> None:
    runs = [r for r in runs if r.epochs]
    if not runs:
        return
    first_seed = min(r.seed for r in runs)
    runs = sorted((r for r in runs if r.seed == first_seed), key=lambda r: r.lr)
    dataset = runs[0].dataset()
    probe_model = runs[0].model()
    for method in methods:
        if not method_applies(probe_model, method):
            out.notes.append(f"{method} does not apply to this model (no conv layer)")
            continue
        rows = [attribute_run(r, None, method, samples=samples, n=n, dataset=dataset, device=device) for r in runs]
        out.grids.append(AttributionGrid(source["label"], source["budget"], method, samples, first_seed, rows))
