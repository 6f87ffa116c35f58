"""``analyze``: every declared epoch analysis over a run or a sweep, cached, tabulated, judged.

For each run, analyses registered with ``needs_model=False`` (records only: groups, logits, losses, proposition) run
on every committed epoch; analyses with ``needs_model=True`` (features, pruning, attributions) run on a few epochs
(:func:`probe.analyses.engine.plan.default_model_epochs`). Each result is cached under ``<out>/cache``
(:mod:`probe.analyses.engine.cache`: the epoch file's sha256, the analysis's version and options, the engine's cache
format), so a second ``analyze`` recomputes nothing that is still valid; every epoch is re-hashed against the manifest
before the cache (or an analysis) answers for it.

A failing analysis never stops the others: the error is recorded in ``errors`` / ``metrics.json`` and printed to
stderr. A damaged run (a truncated or altered epoch file, an unreadable ``run.json``) never stops the others either:
it gets status ``damaged`` with ``damaged_file`` and ``damage_reason`` and none of its numbers are used
(``strict=True`` raises in both cases instead). ``analyze`` writes the tables and ``metrics.json``; the figures and
``report.html`` are :func:`probe.report.write_report`'s.

The steps, in order: :func:`select_analyses` (names, resolved options),
:func:`probe.analyses.engine.plan.resolve_sources`, :func:`prepare_out_dir`, :func:`plan_runs`, :func:`analyse_run` per
plan, :func:`assemble`.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from probe.analyses.base import AnalysisContext, EpochAnalysis, load_analyses, resolve_options
from probe.analyses.cache import FileCache
from probe.analyses.chain import CHAIN_COLUMNS, CHAIN_RUN_COLUMNS, mechanism_chain
from probe.analyses.engine.cache import CACHE_FORMAT, EntryKey, MetricCache
from probe.analyses.engine.plan import EARLY_FRACTION, RunPlan, Source, plan_run, resolve_sources
from probe.analyses.engine.result import (
    EPOCH_COLUMNS,
    RATIO_COLUMNS,
    RUN_COLUMNS,
    STEPS_COLUMNS,
    AnalysisResult,
    compare_sweeps,
    error_record,
    judge_runs,
    summarise_runs,
    warn,
    write_tables,
)
from probe.analyses.engine.status import damaged_row, identity, run_identity, run_row
from probe.device import resolve_device
from probe.errors import ProbeInputError
from probe.plugins import PluginError
from probe.store.reader import RUN_JSON, Run


class EpochMemo:
    """A run whose ``records`` / ``sgd_records`` / ``state_dict`` keep the last epoch read in memory, so that the
    analyses of one epoch read its file once (inside :meth:`reading`, one verified open of the file serves every
    read), whose ``model`` loads the memoised weights, and whose ``dataset`` is built once per ``analyze`` for all
    runs with the same dataset, plugins and options (``datasets``, shared between the memos of one ``analyze``);
    everything else is the run's own. Memoised arrays are read-only."""

    def __init__(self, run: Run, datasets: dict[str, Any] | None = None):
        self._run = run
        self._epoch: int | None = None
        self._memo: dict[tuple, Any] = {}
        self._datasets = {} if datasets is None else datasets

    def __getattr__(self, name: str) -> Any:
        return getattr(self._run, name)

    def __repr__(self) -> str:
        return repr(self._run)

    def _get(self, key: tuple, epoch: int, read) -> Any:
        if epoch != self._epoch:
            self._epoch, self._memo = epoch, {}
        if key not in self._memo:
            value = read()
            for arr in vars(value).values() if hasattr(value, "__dataclass_fields__") else ():
                if isinstance(arr, np.ndarray):
                    arr.setflags(write=False)
            self._memo[key] = value
        return self._memo[key]

    def reading(self, epoch: int):
        """The run's :meth:`~probe.store.reader.Run.reading_epoch` for ``epoch``."""
        return self._run.reading_epoch(epoch)

    def records(self, split: str, epoch: int):
        return self._get(("records", split), epoch, lambda: self._run.records(split, epoch))

    def sgd_records(self, epoch: int):
        return self._get(("sgd",), epoch, lambda: self._run.sgd_records(epoch))

    def state_dict(self, epoch: int):
        return {k: v.clone() for k, v in self._get(("state",), epoch, lambda: self._run.state_dict(epoch)).items()}

    def model(self, epoch: int | None = None):
        """:meth:`Run.model <probe.store.reader.Run.model>` from the memoised weights (``load_state_dict`` copies
        them into a freshly built model)."""
        epoch = self._run.epochs[-1] if epoch is None else epoch
        model = self._run.build_model()
        model.load_state_dict(self._get(("state",), epoch, lambda: self._run.state_dict(epoch)))
        return model.eval()

    def dataset(self):
        """:meth:`Run.dataset <probe.store.reader.Run.dataset>`, built once for every run of this ``analyze`` that
        names the same dataset, options and plugins (the build is deterministic given them)."""
        config = self._run.config
        key = json.dumps([config.get("dataset"), config.get("dataset_options", {}), self._run.plugins],
                         sort_keys=True, default=str)
        if key not in self._datasets:
            self._datasets[key] = self._run.dataset()
        else:
            self._run.load_plugins()
        return self._datasets[key]


# --- the steps -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SelectedAnalyses:
    """The analyses one ``analyze`` runs, in registry order, and the resolved values of the options they declare."""

    analyses: tuple[EpochAnalysis, ...]
    options: dict[str, Any]

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.analyses]

    @property
    def cheap(self) -> list[str]:
        """Record-level analyses (every chosen epoch)."""
        return [a.name for a in self.analyses if not a.needs_model]

    @property
    def heavy(self) -> list[str]:
        """Analyses that load the model (the model epochs)."""
        return [a.name for a in self.analyses if a.needs_model]

    def function(self, name: str):
        """The function ``fn(ctx, epoch)`` of the selected analysis ``name``."""
        return next(a.fn for a in self.analyses if a.name == name)

    def keys(self, epoch_sha256: str | None) -> dict[str, EntryKey]:
        """The cache key of each analysis at an epoch file with ``epoch_sha256``."""
        return {name: EntryKey.of(epoch_sha256, name, self.options) for name in self.names}


def select_analyses(names: Sequence[str] | None, options: Mapping[str, Any] | None) -> SelectedAnalyses:
    """The registered analyses ``names`` (default: all, from :func:`probe.analyses.base.load_analyses`) and their
    options resolved against the declarations (:func:`probe.analyses.base.resolve_options`). Raises
    :class:`ProbeInputError` for an unknown analysis, an unknown option or a value of the wrong kind."""
    registry = load_analyses()
    wanted = list(registry) if names is None else list(names)
    unknown = [n for n in wanted if n not in registry]
    if unknown:
        raise ProbeInputError(f"unknown analysis {unknown[0]!r}; registered: {', '.join(sorted(registry))}")
    resolved = resolve_options(options, wanted)
    return SelectedAnalyses(tuple(registry[n] for n in wanted), resolved)


def prepare_out_dir(out_dir: Path) -> None:
    """Create ``out_dir`` and check that a file can be written in it: an output folder that cannot be written
    (a read-only mount, ``/proc``, a file in the way) is refused before any analysis runs."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, trial = tempfile.mkstemp(prefix=".probe-write-check-", dir=out_dir)
        os.close(fd)
        os.unlink(trial)
    except OSError as err:
        raise ProbeInputError(f"--out {out_dir}: cannot write there ({err.strerror or err})") from None


def plan_runs(sources: Sequence[Source], epochs: Any, model_epochs: Any, *,
              strict: bool) -> tuple[list[RunPlan], list[dict[str, Any]]]:
    """A :class:`RunPlan` per readable run of ``sources``, and the run-table rows of the runs that cannot be read
    (an unreadable ``run.json`` or manifest: status ``damaged``). The plugins that built each run are imported
    first: a missing one is bad input (:class:`~probe.plugins.PluginError`, exit code 2), raised before any
    analysis runs."""
    many = len(sources) > 1
    plans: list[RunPlan] = []
    damaged: list[dict[str, Any]] = []
    for source in sources:
        for unreadable in source.unreadable:
            cfg = unreadable.config
            ident = identity(source, unreadable.name, cfg.get("lr"), cfg.get("seed"), many)
            damaged.append(damaged_row(ident, unreadable.error, unreadable.path, unreadable.path / RUN_JSON))
        for run in source.runs:
            try:
                run.load_plugins()
                plans.append(plan_run(source, run, epochs, model_epochs))
            except PluginError:  # the user's environment, not the run, is missing something
                raise
            except Exception as exc:  # noqa: BLE001 - a damaged run is listed, the others are analysed
                if strict:
                    raise
                damaged.append(damaged_row(run_identity(source, run, many), exc, run.path))
    return plans, damaged


@dataclass
class RunAnalysis:
    """What :func:`analyse_run` measured of one run: epochs-table rows, timings, its run-table row, its
    ``R(alpha)`` curves and its scale / direction decomposition (None when not computed)."""

    rows: list[tuple] = field(default_factory=list)
    timings: list[dict[str, Any]] = field(default_factory=list)
    run_row: dict[str, Any] = field(default_factory=dict)
    ratio_curves: pd.DataFrame | None = None
    proposition_steps: pd.DataFrame | None = None


def analyse_run(plan: RunPlan, ident: dict[str, Any], selected: SelectedAnalyses, ctx: AnalysisContext,
                cache: MetricCache, *, use_cache: bool, strict: bool, errors: list[dict[str, Any]],
                on_task: Callable[[], None] = lambda: None) -> RunAnalysis:
    """Every selected analysis on every planned epoch of one run, from the cache where a valid entry exists.

    Every planned epoch is hashed against the manifest once (a damaged epoch raises a typed error naming the file,
    which the caller turns into a ``damaged`` row), so the cache never answers for a changed file: an epoch the cache
    answers in full is re-hashed (:meth:`Run.verify_bytes`) before any analysis runs; an epoch with something to
    compute is hashed when its file is opened for the analyses (:meth:`Run.reading_epoch`: one verified open serves
    every read of it, and the contents are checked as they are read). A failing analysis is appended to ``errors``
    (raised with ``strict``); ``on_task()`` is called once per (epoch, analysis).
    """
    run, rid = plan.run, ident["run"]
    todo = []
    for epoch in plan.epochs:
        keys = selected.keys(plan.sha256[epoch])
        stored = cache.load(run.name, epoch)
        valid = MetricCache.matching(stored, keys) if use_cache else {}
        wanted = plan.analyses_at(epoch, selected.cheap, selected.heavy)
        answered = all(a in valid for a in wanted)
        if answered:  # re-hash before any analysis runs or any cache entry answers for this file
            run.verify_bytes(epoch)
        todo.append((epoch, keys, stored, valid, wanted, answered))
    out = RunAnalysis()
    step_of = plan.step_of
    for epoch, keys, stored, valid, wanted, answered in todo:
        with ExitStack() as reading:
            if not answered:  # one verified open of the file serves every analysis
                reading.enter_context(run.reading_epoch(epoch))
            changed = _analyse_epoch(epoch, wanted, valid, stored, keys, ident, selected, ctx, strict, errors,
                                     on_task, out, step_of[epoch])
        if changed:
            cache.store(run.name, epoch, stored)
    out.run_row = run_row(plan, ident)
    if plan.committed and "train" in run.splits and "proposition" in selected.names:
        try:
            out.ratio_curves, out.proposition_steps = proposition_tables(ctx, ident, plan, use_cache=use_cache)
        except Exception as exc:  # noqa: BLE001
            if strict:
                raise
            errors.append(error_record(exc, "ratio_curves", run=rid, epoch=plan.committed[-1]))
            warn(f"ERROR computing R(alpha) curves and proposition steps of {rid}: {type(exc).__name__}: {exc}")
    return out


def _analyse_epoch(epoch: int, wanted: Sequence[str], valid: dict, stored: dict, keys: dict, ident: dict[str, Any],
                   selected: SelectedAnalyses, ctx: AnalysisContext, strict: bool, errors: list[dict[str, Any]],
                   on_task: Callable[[], None], out: RunAnalysis, step: int) -> bool:
    """The analyses ``wanted`` at one epoch, from ``valid`` cache entries where they exist; new entries go into
    ``stored`` and ``valid``. Returns whether any entry was computed."""
    rid = ident["run"]
    changed = False
    for analysis in wanted:
        hit = analysis in valid
        started = time.perf_counter()
        on_task()
        if not hit:
            try:
                metrics = flatten_metrics(selected.function(analysis)(ctx, epoch))
            except Exception as exc:  # noqa: BLE001 - one failing analysis must not stop the others
                if strict:
                    raise
                errors.append(error_record(exc, analysis, run=rid, epoch=epoch))
                warn(f"ERROR in analysis {analysis!r} on {rid} epoch {epoch}: {errors[-1]['error']}")
                continue
            valid[analysis] = stored[analysis] = MetricCache.entry(keys[analysis], metrics)
            changed = True
        out.timings.append({"run": rid, "epoch": int(epoch), "analysis": analysis, "cached": hit,
                            "seconds": time.perf_counter() - started})
        head = (rid, ident["sweep"], ident["lr"], ident["seed"], ident["budget"], int(epoch), int(step), analysis)
        out.rows.extend([(*head, split, metric, float(value)) for split, metric, value in valid[analysis]["metrics"]])
    return changed

def proposition_tables(ctx: AnalysisContext, ident: dict[str, Any], plan: RunPlan, *,
                       use_cache: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Of the training split, reading each record-level epoch once
    (:func:`probe.analyses.proposition.proposition_tables`): ``log R(alpha)`` on the grid of the declared option
    ``alphas`` at the run's early and final epochs and at the epochs where the proposition applies (``phase``
    ``final``, ``early`` or ``window``), and the scale / direction decomposition between consecutive record-level
    epochs; both with the run's identity columns. Cached under ``<cache>/proposition/<run>.json`` for the sha256 of
    every epoch it reads (each re-hashed or read by :func:`analyse_run` before), the alphas and the analysis version."""
    from probe.analyses.proposition import proposition_tables as tables_of

    final, early = plan.committed[-1], plan.early
    curve_epochs = {final} | ({early} - {None})
    alphas = ctx.option("alphas")
    cache = FileCache(ctx.cache_dir)  # without a cache folder: computed every time
    name = Path("proposition") / f"{ctx.run.name}.json"
    key = None if cache.root is None else {
        "format": CACHE_FORMAT, "version": load_analyses()["proposition"].version, "split": "train",
        "alphas": [float(a) for a in alphas], "curve_epochs": sorted(int(e) for e in curve_epochs),
        "epochs": [[int(e), plan.sha256[e]] for e in plan.cheap]}
    stored = cache.load_json(name) if use_cache and key is not None else None
    if isinstance(stored, dict) and stored.get("key") == key:
        steps, curves = _frame_of(stored["steps"]), _frame_of(stored["curves"])
    else:
        steps, curves = tables_of(ctx.run, "train", epochs=plan.cheap, curve_epochs=curve_epochs, alphas=alphas)
        if key is not None:
            cache.store_json(name, {"key": key, "steps": _json_of(steps), "curves": _json_of(curves)})
    curves.insert(0, "phase", np.where(curves["epoch"] == final, "final",
                                       np.where(curves["epoch"] == early, "early", "window")))
    for i, (k, v) in enumerate(ident.items()):
        curves.insert(i, k, v)
        steps.insert(i, k, v)
    return curves, steps


def _json_of(frame: pd.DataFrame) -> dict[str, Any]:
    """A table as JSON: columns, dtypes and rows (floats written by ``repr``, so they read back bit for bit)."""
    return {"columns": [str(c) for c in frame.columns], "dtypes": [str(t) for t in frame.dtypes],
            "rows": [[v.item() if isinstance(v, np.generic) else v for v in row]
                     for row in frame.itertuples(index=False, name=None)]}


def _frame_of(document: dict[str, Any]) -> pd.DataFrame:
    """The table :func:`_json_of` wrote."""
    frame = pd.DataFrame(document["rows"], columns=document["columns"], dtype=object)
    return frame.astype(dict(zip(document["columns"], document["dtypes"])))


def assemble(out_dir: Path, sources: Sequence[Source], measured: Sequence[RunAnalysis],
             damaged: Sequence[dict[str, Any]], errors: list[dict[str, Any]], config: dict[str, Any]) -> AnalysisResult:
    """The :class:`AnalysisResult` of the measured and damaged runs: epochs and run tables, claims and failures, the
    mechanism chain."""
    from probe.analyses.comparison import claims_runs, has_comparison

    rows = [row for m in measured for row in m.rows]
    epochs_table = pd.DataFrame(rows, columns=EPOCH_COLUMNS)
    run_rows = [m.run_row for m in measured] + list(damaged)
    runs_table = summarise_runs(pd.DataFrame(run_rows, columns=RUN_COLUMNS), epochs_table)
    claims, failures = judge_runs(runs_table)
    described = [s.describe() for s in sources]
    comparison, dominance = compare_sweeps(runs_table, described, errors)
    if len(runs_table) and has_comparison(described):  # never pool another axis's levels as replicates of a rate
        claims = judge_runs(claims_runs(runs_table, described))[0]
    try:
        chain, chain_runs = mechanism_chain(epochs_table, runs_table)
    except Exception as exc:  # noqa: BLE001 - the other tables stand without it
        errors.append(error_record(exc, "chain"))
        warn(f"ERROR computing the mechanism chain: {errors[-1]['error']}")
        chain, chain_runs = pd.DataFrame(columns=CHAIN_COLUMNS), pd.DataFrame(columns=CHAIN_RUN_COLUMNS)
    frames = [m.ratio_curves for m in measured if m.ratio_curves is not None]
    curves = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=RATIO_COLUMNS)
    step_frames = [m.proposition_steps for m in measured if m.proposition_steps is not None]
    steps = (pd.concat(step_frames, ignore_index=True)[STEPS_COLUMNS] if step_frames
             else pd.DataFrame(columns=STEPS_COLUMNS))
    timings = pd.DataFrame([t for m in measured for t in m.timings],
                           columns=["run", "epoch", "analysis", "cached", "seconds"])
    return AnalysisResult(out=out_dir, epochs=epochs_table, runs=runs_table, claims=claims, failures=failures,
                          ratio_curves=curves, proposition_steps=steps, chain=chain, chain_runs=chain_runs,
                          errors=errors, timings=timings, comparison=comparison, dominance=dominance,
                          sources=described, config=config)


# --- analyze -------------------------------------------------------------------------------------------------------


def analyze(
    path: str | os.PathLike,
    out: str | os.PathLike | None = None,
    epochs: Any = None,
    model_epochs: Any = None,
    device: str = "cpu",
    progress: bool = True,
    options: Mapping[str, Any] | None = None,
    *,
    control: str | os.PathLike | None = None,
    compare: Sequence[str | os.PathLike] = (),
    analyses: Sequence[str] | None = None,
    strict: bool = False,
    use_cache: bool = True,
) -> AnalysisResult:
    """Analyse a run, a sweep, or a folder of sweeps; write the tables and ``metrics.json`` into ``out``.

    Args:
        path: run directory, sweep directory, or a folder holding sweeps (e.g. a fixed-steps sweep and its
            matched-budget twin side by side).
        out: output folder (default ``analyses/<name of path>`` under the current directory).
        epochs: epochs for the record-level analyses: None (every committed epoch), ``"last"``, or numbers; each
            run's early and last epochs are always added so that its summary columns are defined.
        model_epochs: epochs for the analyses that need the model: None (epoch 0, the epochs nearest 25/50/75% of
            training and the last; :func:`probe.analyses.engine.plan.default_model_epochs`), ``"last"``, ``"all"``,
            ``"none"`` or numbers.
        device: where models run: ``cpu`` (default), ``auto`` (CUDA, then MPS, then the CPU), ``cuda``, ``cuda:N``,
            ``mps`` (:func:`probe.device.resolve_device`).
        progress: show a progress bar on stderr.
        options: values of the options the analyses declare (``{"attr_n": 128, "attr_methods": ["ig"]}``, or the
            command line's strings ``{"attr_methods": "ig,saliency"}``); unknown keys and ill-typed values raise
            :class:`~probe.errors.ProbeInputError` before anything runs.
        control: a matched-budget sweep analysed alongside ``path`` (claims then say whether they survive it).
        compare: more sweeps analysed alongside ``path``; when the sources sweep an axis besides ``lr``, each
            property is compared along each axis (``result.comparison``, ``result.dominance``: docs/compare.md).
        analyses: names of registered analyses to run (default: all).
        strict: raise on the first failing analysis or damaged run instead of recording it.
        use_cache: reuse cached results (they are written either way).

    Returns:
        :class:`~probe.analyses.engine.result.AnalysisResult`; draw its report with :func:`probe.report.write_report`.

    Example:
        >>> import probe
        >>> result = probe.analyze("checkpoints/my_sweep")             # doctest: +SKIP
        >>> result.claims[["claim", "budget", "spearman", "verdict"]]   # doctest: +SKIP
    """
    selected = select_analyses(analyses, options)
    dev = resolve_device(device)
    name, sources = resolve_sources(path, control, compare)
    out_dir = Path(out) if out is not None else Path("analyses") / name
    prepare_out_dir(out_dir)
    plans, damaged = plan_runs(sources, epochs, model_epochs, strict=strict)
    many = len(sources) > 1

    bar = _bar(sum(p.tasks(selected.cheap, selected.heavy) for p in plans), progress)
    errors: list[dict[str, Any]] = []
    measured: list[RunAnalysis] = []
    datasets: dict[str, Any] = {}  # one build per distinct dataset, shared by the runs of this analyze
    for plan in plans:
        ident = run_identity(plan.source, plan.run, many)
        cache_root = out_dir / "cache" / plan.source.label
        ctx = AnalysisContext(EpochMemo(plan.run, datasets), device=dev,  # type: ignore[arg-type]
                              cache_dir=cache_root, options=selected.options)
        done = 0

        def tick() -> None:
            nonlocal done
            done += 1
            bar.update(1)

        try:
            outcome = analyse_run(plan, ident, selected, ctx, MetricCache(cache_root / "metrics"),
                                  use_cache=use_cache, strict=strict, errors=errors, on_task=tick)
        except Exception as exc:  # noqa: BLE001 - a damaged run is listed, the others are analysed
            if strict:
                raise
            bar.update(plan.tasks(selected.cheap, selected.heavy) - done)
            damaged.append(damaged_row(ident, exc, plan.run.path))
            continue
        measured.append(outcome)
        _warn_if_failed(outcome.run_row)
    for row in damaged:
        warn(f"run {row['run']} is damaged and left out: {row['damaged_file']}: {row['damage_reason']}")
    bar.close()

    config = {"path": str(Path(path)), "control": None if control is None else str(control),
              "compare": [str(c) for c in compare], "out": str(out_dir),
              "epochs": _epochs_spec(epochs), "model_epochs": _epochs_spec(model_epochs), "device": str(dev),
              "options": selected.options, "analyses": {a.name: a.needs_model for a in selected.analyses},
              "early_fraction": EARLY_FRACTION, "setup": _setup(sources)}
    result = assemble(out_dir, sources, measured, damaged, errors, config)
    write_tables(result)
    if errors:
        warn(f"{len(errors)} analysis error(s); they are listed in {out_dir / 'metrics.json'}")
    return result


# --- helpers -------------------------------------------------------------------------------------------------------


def _warn_if_failed(row: dict[str, Any]) -> None:
    if row["status"] == "ok":
        return
    where = ""
    if row["status"] == "diverged":
        where = f" (non-finite loss at epoch {row['diverged_epoch']}, step {row['diverged_step']})"
    warn(f"run {row['run']} (lr {row['lr']:g}) is {row['status']}{where}; it is listed in the report and left out "
         "of the claims")


def _epochs_spec(spec: Any) -> Any:
    return spec if spec is None or isinstance(spec, str) else [int(e) for e in spec]


def flatten_metrics(metrics: Any) -> list[tuple[str, str, float]]:
    """``{split: {metric: value}}`` -> ``[(split, metric, float)]`` (values that are not numbers are dropped)."""
    out = []
    if not isinstance(metrics, dict):
        raise TypeError(f"an epoch analysis must return {{split: {{metric: value}}}}, got {type(metrics).__name__}")
    for split, values in metrics.items():
        for metric, value in values.items():
            try:
                out.append((str(split), str(metric), float(value)))
            except (TypeError, ValueError):
                continue
    return out


def _setup(sources: list[Source]) -> dict[str, Any]:
    """Dataset, model and optimiser of the first readable run (what the report's header shows)."""
    for source in sources:
        for run in source.runs:
            try:
                cfg, info = run.config, run.info_json.get("dataset", {})
            except Exception:  # noqa: BLE001 - a damaged run.json: take the next run
                continue
            return {"dataset": cfg.get("dataset"), "dataset_options": cfg.get("dataset_options"),
                    "dataset_source": info.get("source"), "bc_rule": info.get("bc_rule"),
                    "model": cfg.get("model"), "model_options": cfg.get("model_options"),
                    "optimizer": cfg.get("optimizer"), "batch_size": cfg.get("batch_size"),
                    "momentum": cfg.get("momentum"), "weight_decay": cfg.get("weight_decay"),
                    "schedule": cfg.get("schedule")}
    return {}


def _bar(total: int, enabled: bool):
    from probe.progress import progress_bar

    return progress_bar(total, "analyze", "analyses", enabled=enabled)
