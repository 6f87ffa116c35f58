"""Attribution heatmap grids of an analysis: the same bias-conflicting test samples across the learning rates of each
sweep, one grid per applicable method, computed here and drawn by :mod:`probe.report` (which computes nothing).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from probe.analyses.attribution import Attributions, attribute_run
from probe.analyses.attribution_methods import method_applies
from probe.analyses.cache import FileCache
from probe.analyses.engine.result import AnalysisResult
from probe.errors import ProbeInputError
from probe.store.reader import Run

#: the methods of the report's grids (those that apply to the model).
GRID_METHODS = ("ig", "saliency", "gradcam")
#: format of the cached grid attributions; bump it when a change makes them differ.
GRID_CACHE_FORMAT = 1
#: format of the cached arrays of the grid's samples (:class:`_GridSamples`).
SAMPLES_CACHE_FORMAT = 1


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
    with ``strict``), not fatal. The attributions are cached beside the analysis's own cache
    (``<out>/cache/<source>/grids/<run>/``, keyed by the epoch file's sha256, the method, the samples and the device;
    the file is re-hashed before an entry answers), so a second ``probe analyze`` draws the grids without running a
    model.

    Example:
        >>> from probe.analyses.engine import analyze, attribution_grids
        >>> from probe.report import write_report
        >>> result = analyze("checkpoints/my_sweep")                      # doctest: +SKIP
        >>> write_report(result, attribution_grids(result))              # doctest: +SKIP
    """
    out = AttributionGrids()
    cache_root = None if result.out is None else Path(result.out) / "cache"
    for source, runs in readable_runs(result):
        try:
            _source_grids(source, runs, methods, n, samples, result.config.get("device"), out, cache_root)
        except Exception as exc:  # noqa: BLE001 - a grid that fails must not lose the report
            if strict:
                raise
            result.record_error(f"the attribution grids of {source['label']}", exc)
    return out


def _source_grids(source: dict[str, Any], runs: list[Run], methods: Sequence[str], n: int, samples: str,
                  device: str | None, out: AttributionGrids, cache_root: Path | None = None) -> None:
    runs = [r for r in runs if r.epochs]
    if not runs:
        return
    first_seed = min(r.seed for r in runs)
    runs = sorted((r for r in runs if r.seed == first_seed), key=lambda r: r.lr)
    architecture = runs[0].build_model()  # which methods apply depends on the modules, not on the weights
    cache = FileCache(None if cache_root is None else cache_root / source["label"])
    shown = _GridSamples(runs[0], samples, n, cache)
    for method in methods:
        if not method_applies(architecture, method):
            out.notes.append(f"{method} does not apply to this model (no conv layer)")
            continue
        rows = [_grid_row(r, method, samples, n, shown, device, cache) for r in runs]
        out.grids.append(AttributionGrid(source["label"], source["budget"], method, samples, first_seed, rows))


#: the per-sample arrays of :class:`~probe.analyses.attribution.Attributions` that depend only on the dataset and
#: the choice of samples (cached once per source, so that a cached report builds no dataset).
SAMPLE_FIELDS = ("positions", "index", "y", "a", "is_bc", "inputs", "core_mask", "spurious_mask")


class _GridSamples:
    """The dataset of a source's runs (built on first use) and the arrays of the grid's samples, cached under
    ``grid_samples/<samples><n>/`` keyed by the dataset's name, options and plugins, the samples, ``n``, the seed
    and probe's version (the build is deterministic given them)."""

    def __init__(self, run: Run, samples: str, n: int, cache: FileCache):
        from probe import __version__

        self.run, self.cache, self._dataset = run, cache, None
        config = run.config
        self.key = json.loads(json.dumps({
            "dataset": config.get("dataset"), "dataset_options": config.get("dataset_options", {}),
            "plugins": run.plugins, "split": "test", "samples": samples, "n": int(n), "seed": 0,
            "probe": __version__, "format": SAMPLES_CACHE_FORMAT}, sort_keys=True, default=str))
        self.folder = Path("grid_samples") / f"{samples}{n}"
        self._arrays: dict[str, np.ndarray | None] | None = None

    def dataset(self) -> Any:
        if self._dataset is None:
            self._dataset = self.run.dataset()
        return self._dataset

    def arrays(self) -> dict[str, np.ndarray | None] | None:
        """The cached sample arrays (None for a mask the dataset does not have), or None on a miss."""
        if self._arrays is None:
            listing = self.cache.load_json(self.folder / "fields.json")
            if not isinstance(listing, dict) or listing.get("key") != self.key:
                return None
            present = listing.get("fields")
            if not isinstance(present, list) or not set(present) <= set(SAMPLE_FIELDS):
                return None
            arrays: dict[str, np.ndarray | None] = dict.fromkeys(SAMPLE_FIELDS)
            for name in present:
                arrays[name] = self.cache.load_array(self.folder / f"{name}.npy", self.key)
                if arrays[name] is None:
                    return None
            if any(arrays[name] is None for name in SAMPLE_FIELDS[:6]):
                return None
            self._arrays = arrays
        return self._arrays

    def store(self, row: Attributions) -> None:
        """Cache the sample arrays of ``row`` (a row computed from the dataset)."""
        if self.cache.root is None or self._arrays is not None:
            return
        arrays = {name: getattr(row, name) for name in SAMPLE_FIELDS}
        present = [name for name, value in arrays.items() if value is not None]
        with contextlib.suppress(FileNotFoundError):
            self.cache.path(self.folder / "fields.json").unlink()
        for name in present:
            self.cache.store_array(self.folder / f"{name}.npy", arrays[name], self.key)
        self.cache.store_json(self.folder / "fields.json", {"key": self.key, "fields": present})
        self._arrays = arrays


def _grid_row(run: Run, method: str, samples: str, n: int, shown: _GridSamples, device: str | None,
              cache: FileCache) -> Attributions:
    """:func:`attribute_run` of ``run`` at its last epoch, its attributions read from ``cache`` when an entry was
    computed from the same epoch file (re-hashed against the manifest first), method, samples and device, and its
    samples from ``shown``'s cache (no dataset is built when both answer)."""
    epoch = run.epochs[-1]
    entry = next(e for e in run.manifest["epochs"] if e.get("epoch") == epoch)
    name = Path("grids") / run.name / f"epoch_{epoch:05d}_{method}_{samples}{n}.npy"
    key = {"run": run.name, "epoch": int(epoch), "epoch_sha256": entry.get("sha256"), "method": method,
           "samples": samples, "n": int(n), "seed": 0, "device": str(device), "format": GRID_CACHE_FORMAT}
    values = cache.load_array(name, key)
    if values is not None:
        run.verify_bytes(epoch)  # the cache never answers for a changed file
        arrays = shown.arrays()
        if arrays is not None and tuple(values.shape) == tuple(arrays["inputs"].shape):
            return Attributions(method=method, smoothgrad=None, run_name=run.name, lr=float(run.lr),
                                seed=int(run.seed), epoch=int(epoch), split="test", values=values, **arrays)
        try:
            row = attribute_run(run, epoch, method, samples=samples, n=n, dataset=shown.dataset(), device=device,
                                values=values)
            shown.store(row)
            return row
        except ProbeInputError:  # an entry of other samples (the dataset changed): compute it again
            pass
    row = attribute_run(run, epoch, method, samples=samples, n=n, dataset=shown.dataset(), device=device)
    cache.store_array(name, row.values, key)
    shown.store(row)
    return row
