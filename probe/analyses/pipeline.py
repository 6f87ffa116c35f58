"""The engine of ``probe analyze``: every registered epoch analysis over a run or a sweep, cached, tabulated, judged.

For each run, analyses registered with ``needs_model=False`` (records only: groups, logits, losses, proposition) run
on every committed epoch; analyses with ``needs_model=True`` (features, pruning, attributions) run on a few epochs
(:func:`default_model_epochs`). Each result is cached under ``<out>/cache`` keyed by the epoch file's sha256 from the
manifest, the analysis options and the probe version, so a second ``analyze`` recomputes nothing that is still valid;
every epoch is re-hashed against the manifest before the cache (or an analysis) answers for it.

The results come back as tidy tables (:class:`AnalysisResult`):

- ``epochs``: long format, one row per (run, epoch, analysis, split, metric) with ``value``;
- ``runs``: one row per run with its configuration, ``status`` and the summary columns ``final:<split>/<metric>``
  (the last committed epoch) and ``early:<split>/<metric>`` (:func:`early_epoch`: the recorded epoch whose global
  step is closest to 10% of the run's steps);
- ``claims``: :func:`probe.analyses.claims.evaluate_claims` of the run table (with ``survives_control`` when a
  matched-budget sweep is analysed alongside a fixed-steps one);
- ``failures``: every run left out of the claims (diverged, collapsed, incomplete, empty, damaged).

A failing analysis never stops the others: the error is recorded in ``errors`` / ``metrics.json`` / the report and
printed to stderr. A damaged run (a truncated or altered epoch file, an unreadable ``run.json``) never stops the
others either: it gets status ``damaged`` with ``damaged_file`` and ``damage_reason`` and none of its numbers are
used (``strict=True`` raises in both cases instead).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from probe.analyses.base import EPOCH_ANALYSES, AnalysisContext
from probe.errors import ProbeError, ProbeInputError, RunDirectoryError
from probe.store.reader import RUN_JSON, SWEEP_JSON, Run, Sweep, open_path

#: modules whose import registers the epoch analyses ``analyze`` runs (those not installed are skipped).
ANALYSIS_MODULES = (
    "probe.analyses.groups",
    "probe.analyses.logits",
    "probe.analyses.losses",
    "probe.analyses.proposition",
    "probe.analyses.probes",
    "probe.analyses.geometry",
    "probe.analyses.sparsity",
    "probe.analyses.pruning",
    "probe.analyses.attribution",
)
#: the "early" phase of a run is the recorded epoch closest to this fraction of its steps.
EARLY_FRACTION = 0.1
#: fractions of training at which the default model epochs are taken (besides epoch 0 and the last).
MODEL_EPOCH_FRACTIONS = (0.25, 0.5, 0.75)
#: identity columns of the epochs table.
EPOCH_COLUMNS = ["run", "sweep", "lr", "seed", "budget", "epoch", "step", "analysis", "split", "metric", "value"]
#: configuration columns of the run table, before the summary columns.
RUN_COLUMNS = ["run", "sweep", "lr", "seed", "batch_size", "momentum", "weight_decay", "budget", "steps",
               "epochs_recorded", "train_status", "status", "final_train_acc", "diverged_epoch", "diverged_step",
               "early_epoch", "early_step", "final_epoch", "final_step", "damaged_file", "damage_reason"]
STATUSES = ("ok", "diverged", "collapsed", "incomplete", "empty", "damaged")
CACHE_FORMAT = 1


def load_analyses() -> dict[str, Any]:
    """Import the analysis modules (registering their epoch analyses) and return the registry."""
    import importlib
    import importlib.util

    for name in ANALYSIS_MODULES:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)
    return EPOCH_ANALYSES


# --- which runs ----------------------------------------------------------------------------------------------------


@dataclass
class UnreadableRun:
    """A started run of a sweep that cannot be opened (its ``run.json`` is damaged): listed, never analysed."""

    name: str
    path: Path
    config: dict[str, Any]  # what sweep.json says of it: the base config with the run's axis values (lr, seed ...)
    error: Exception


@dataclass
class Source:
    """One analysed run or sweep: its runs and the budget kind they share (``fixed`` or ``matched``)."""

    label: str
    path: Path
    budget: str
    runs: list[Run]
    kind: str  # "sweep" or "run"
    unreadable: list[UnreadableRun] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {"label": self.label, "path": str(self.path), "budget": self.budget, "kind": self.kind,
                "runs": [r.name for r in self.runs] + [r.name for r in self.unreadable]}


def _open_sweep_runs(sweep: Sweep) -> tuple[list[Run], list[UnreadableRun]]:
    """The started runs of ``sweep`` in ``sweep.json`` order, and those whose ``run.json`` cannot be read."""
    runs, unreadable = [], []
    base = sweep.config.get("base_config") or {}
    for entry in sweep.run_entries():
        path = sweep.path / entry["name"]
        if not (path / RUN_JSON).is_file():
            continue  # not started yet
        try:
            runs.append(Run(path))
        except (ProbeError, OSError, ValueError) as err:  # damaged run.json: list the run, analyse the others
            unreadable.append(UnreadableRun(entry["name"], path, {**base, **entry}, err))
    return runs, unreadable


def _source(target: Run | Sweep, label: str | None = None) -> Source:
    if isinstance(target, Sweep):
        runs, unreadable = _open_sweep_runs(target)
        return Source(label or target.name, target.path, target.budget, runs, "sweep", unreadable)
    return Source(label or target.name, target.path, str(target.config.get("budget", "fixed")), [target], "run")


def resolve_sources(path: str | os.PathLike, control: str | os.PathLike | None = None) -> tuple[str, list[Source]]:
    """The name of the analysis and what it covers.

    ``path`` is a run directory, a sweep directory, or a folder whose sub-folders are sweeps or runs (for example a
    fixed-steps sweep beside its matched-budget twin). ``control`` is a matched-budget sweep analysed alongside.
    """
    p = Path(path)
    if (p / SWEEP_JSON).is_file() or (p / RUN_JSON).is_file():
        sources = [_source(open_path(p))]
    elif p.is_dir():
        children = sorted(c for c in p.iterdir() if c.is_dir() and ((c / SWEEP_JSON).is_file()
                                                                  or (c / RUN_JSON).is_file()))
        if not children:
            raise RunDirectoryError(f"{p}: no run (run.json) or sweep (sweep.json) in it or in its sub-folders")
        sources = [_source(open_path(c)) for c in children]
    else:
        open_path(p)  # raises the store's own error (no such directory ...)
        raise RunDirectoryError(f"{p}: not a directory")
    if control is not None:
        ctl = _source(open_path(control))
        if ctl.budget != "matched":
            raise ProbeInputError(f"--control {control}: budget is {ctl.budget!r}; the control must be a "
                                  "matched-budget sweep (probe sweep --budget matched)")
        sources.append(ctl)
    labels = [s.label for s in sources]
    if len(set(labels)) != len(labels):
        for i, s in enumerate(sources):  # two sweeps with the same folder name: tell them apart
            s.label = f"{s.label}-{s.budget}" if labels.count(s.label) > 1 else s.label
            if [x.label for x in sources].count(s.label) > 1:
                s.label = f"{s.label}{i}"
    if not any(s.runs or s.unreadable for s in sources):
        raise RunDirectoryError(f"{p}: no started run to analyse")
    return p.resolve().name, sources


# --- which epochs --------------------------------------------------------------------------------------------------


def nearest_epoch(epochs: Sequence[int], steps: Sequence[int], target_step: float) -> int:
    """The epoch whose step is closest to ``target_step`` (the earlier one on a tie)."""
    if len(epochs) == 0:
        raise ProbeInputError("no epochs to choose from")
    dist = np.abs(np.asarray(steps, dtype=np.float64) - float(target_step))
    return int(np.asarray(epochs)[int(np.argmin(dist))])


def early_epoch(epochs: Sequence[int], steps: Sequence[int], total_steps: int,
                fraction: float = EARLY_FRACTION) -> int:
    """The "early" epoch of a run: among recorded epochs after the first step (step > 0), the one whose global step
    is closest to ``fraction * total_steps`` (earlier on a tie); epoch 0 only when nothing else is recorded."""
    epochs, steps = np.asarray(epochs), np.asarray(steps)
    trained = steps > 0
    if not trained.any():
        return int(epochs[0])
    return nearest_epoch(epochs[trained], steps[trained], fraction * total_steps)


def default_model_epochs(epochs: Sequence[int], steps: Sequence[int],
                         fractions: Sequence[float] = MODEL_EPOCH_FRACTIONS) -> list[int]:
    """Epoch 0, the recorded epochs closest (by step) to ``fractions`` of the last step, and the last epoch."""
    if len(epochs) == 0:
        return []
    last_step = int(np.asarray(steps)[-1])
    chosen = {int(epochs[0]), int(epochs[-1])}
    chosen.update(nearest_epoch(epochs, steps, f * last_step) for f in fractions)
    return sorted(chosen)


def _select(spec: Any, committed: list[int], steps: list[int], *, default: list[int]) -> list[int]:
    """``None`` -> default; ``"all"``, ``"last"``, ``"none"``; or explicit epoch numbers (those committed)."""
    if spec is None:
        return default
    if isinstance(spec, str):
        words = {"all": list(committed), "last": committed[-1:], "none": [], "default": default}
        if spec not in words:
            raise ProbeInputError(f"epochs must be numbers or one of {', '.join(words)}, got {spec!r}")
        return words[spec]
    wanted = {int(e) for e in spec}
    return [e for e in committed if e in wanted]


def _total_steps(run: Run, epochs: list[int], steps: list[int]) -> int:
    """Steps the run was planned for: ``steps`` in its config, else epochs x (steps per recorded epoch)."""
    cfg = run.config
    if cfg.get("steps"):
        return int(cfg["steps"])
    if cfg.get("epochs") and epochs and epochs[-1] > 0:
        return int(round(cfg["epochs"] * steps[-1] / epochs[-1]))
    return int(steps[-1]) if steps else 0


@dataclass
class RunPlan:
    """What ``analyze`` reads of one run: its committed epochs with their steps and sha256 (from the manifest),
    and the epochs of the record-level (``cheap``) and model (``heavy``) analyses."""

    source: Source
    run: Run
    committed: list[int]
    steps: list[int]
    sha256: dict[int, str]
    total_steps: int
    early: int | None
    cheap: list[int]
    heavy: list[int]

    @property
    def epochs(self) -> list[int]:
        """Every epoch some analysis reads, in order."""
        return sorted(set(self.cheap) | set(self.heavy))

    def tasks(self, cheap_names: Sequence[str], heavy_names: Sequence[str]) -> int:
        return len(self.cheap) * len(cheap_names) + len(self.heavy) * len(heavy_names)


def plan_run(source: Source, run: Run, epochs: Any = None, model_epochs: Any = None) -> RunPlan:
    """The :class:`RunPlan` of ``run`` for ``analyze``'s ``epochs`` and ``model_epochs`` (see :func:`analyze`)."""
    try:
        manifest_epochs = run.manifest["epochs"]
    except RunDirectoryError:  # started, nothing committed yet (no manifest)
        manifest_epochs = []
    committed = [int(e["epoch"]) for e in manifest_epochs]
    steps = [int(e["global_step"]) for e in manifest_epochs]
    total = _total_steps(run, committed, steps) if committed else 0
    early = early_epoch(committed, steps, total) if committed else None
    cheap = _select(epochs, committed, steps, default=list(committed))
    if committed:
        cheap = sorted(set(cheap) | {early, committed[-1]})
    heavy = _select(model_epochs, committed, steps, default=default_model_epochs(committed, steps))
    sha256 = {int(e["epoch"]): e.get("sha256") for e in manifest_epochs}
    return RunPlan(source, run, committed, steps, sha256, total, early, cheap, heavy)


# --- caching -------------------------------------------------------------------------------------------------------


def _options_key(options: dict[str, Any]) -> str:
    from probe import __version__

    text = json.dumps({"options": options, "version": __version__, "format": CACHE_FORMAT}, sort_keys=True,
                      default=lambda o: np.asarray(o).tolist() if hasattr(o, "__len__") else str(o))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class MetricCache:
    """Per-(run, epoch) JSON files ``<root>/<run>/epoch_XXXXX.json`` mapping analysis -> {key, metrics}.

    An entry is valid when its ``epoch_sha256`` equals the manifest's and its ``options`` key equals the current
    one; errors are never cached. ``analyze`` verifies the epoch file against the manifest before it uses an entry.
    """

    def __init__(self, root: Path | None):
        self.root = root

    def _path(self, run: Run, epoch: int) -> Path:
        assert self.root is not None
        return self.root / run.name / f"epoch_{int(epoch):05d}.json"

    def load(self, run: Run, epoch: int) -> dict[str, Any]:
        if self.root is None:
            return {}
        path = self._path(run, epoch)
        if not path.is_file():
            return {}
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return {}

    def store(self, run: Run, epoch: int, entries: dict[str, Any]) -> None:
        if self.root is None:
            return
        path = self._path(run, epoch)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(entries, sort_keys=True))
        os.replace(tmp, path)


class EpochMemo:
    """A run whose ``records`` / ``sgd_records`` / ``state_dict`` keep the last epoch read in memory, so that the
    analyses of one epoch read its file once; everything else is the run's own. Memoised arrays are read-only."""

    def __init__(self, run: Run):
        self._run = run
        self._epoch: int | None = None
        self._memo: dict[tuple, Any] = {}

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

    def records(self, split: str, epoch: int):
        return self._get(("records", split), epoch, lambda: self._run.records(split, epoch))

    def sgd_records(self, epoch: int):
        return self._get(("sgd",), epoch, lambda: self._run.sgd_records(epoch))

    def state_dict(self, epoch: int):
        return {k: v.clone() for k, v in self._get(("state",), epoch, lambda: self._run.state_dict(epoch)).items()}


# --- the result ----------------------------------------------------------------------------------------------------


@dataclass
class AnalysisResult:
    """What ``probe analyze`` produced: tidy tables, the output folder and its files.

    Attributes:
        out: output folder (``metrics.json``, ``epochs.csv``, ``runs.csv``, ``claims.csv``, ``figures/``,
            ``report.html``).
        epochs: long table ``run, sweep, lr, seed, budget, epoch, step, analysis, split, metric, value``.
        runs: one row per run (see the module doc).
        claims: per claim and budget: rank correlation with the rate, uncertainty, verdict (and
            ``survives_control`` when both budgets are present).
        failures: runs left out of the claims, with status, where they diverged, and for a damaged run the file
            and the reason (``damaged_file``, ``damage_reason``).
        ratio_curves: ``log R(alpha)`` of the training split at each run's early and final epoch:
            ``run, lr, seed, budget, phase, epoch, alpha, ratio, log_ratio``.
        errors: one dict per failed (run, epoch, analysis): ``run, epoch, analysis, error, traceback``.
        timings: seconds per (run, epoch, analysis) and whether the cache answered.
        sources: the analysed sweeps / runs.
        config: how ``analyze`` was called.
        files: name -> path of every file written.
    """

    out: Path
    epochs: pd.DataFrame
    runs: pd.DataFrame
    claims: pd.DataFrame
    failures: pd.DataFrame
    ratio_curves: pd.DataFrame
    errors: list[dict[str, Any]] = field(default_factory=list)
    timings: pd.DataFrame = field(default_factory=pd.DataFrame)
    sources: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)

    def __repr__(self) -> str:
        statuses = self.runs["status"].value_counts().to_dict() if len(self.runs) else {}
        return (f"AnalysisResult(out={str(self.out)!r}, runs={len(self.runs)} {statuses}, "
                f"epoch rows={len(self.epochs)}, claims={self.claims['claim'].nunique() if len(self.claims) else 0}, "
                f"errors={len(self.errors)})")

    @property
    def damaged(self) -> pd.DataFrame:
        """Runs that could not be read (status ``damaged``), with ``damaged_file`` and ``damage_reason``."""
        if self.runs.empty:
            return self.runs
        return self.runs[self.runs["status"] == "damaged"].reset_index(drop=True)

    @property
    def report(self) -> Path | None:
        """Path of ``report.html`` (None when no report was written)."""
        return self.files.get("report.html")

    def metric(self, metric: str, split: str | None = None) -> pd.DataFrame:
        """Rows of the epochs table for one metric id (and split), e.g. ``result.metric("unbiased_acc", "test")``."""
        rows = self.epochs[self.epochs["metric"] == metric]
        if split is not None:
            rows = rows[rows["split"] == split]
        return rows.reset_index(drop=True)

    @property
    def proposition(self) -> pd.DataFrame:
        """Per run and epoch, the proposition check of the training split (one column per quantity)."""
        rows = self.epochs[self.epochs["analysis"] == "proposition"]
        if rows.empty:
            return pd.DataFrame(columns=["run", "sweep", "lr", "seed", "budget", "epoch", "step"])
        return (rows.pivot_table(index=["run", "sweep", "lr", "seed", "budget", "epoch", "step"], columns="metric",
                                 values="value", aggfunc="first").reset_index().rename_axis(columns=None))

    @property
    def ratio_vs_norm(self) -> pd.DataFrame:
        """Across epochs of every run: mean logit norm and measured BC/BA loss ratio of the training split."""
        want = {"logit_norm", "bc_ba_loss_ratio", "margin_min_ba"}
        rows = self.epochs[(self.epochs["split"] == "train") & self.epochs["metric"].isin(want)
                           & self.epochs["analysis"].isin(["logits", "losses"])]
        cols = ["run", "sweep", "lr", "seed", "budget", "epoch", "step"]
        if rows.empty:
            return pd.DataFrame(columns=[*cols, *sorted(want)])
        return rows.pivot_table(index=cols, columns="metric", values="value",
                                aggfunc="first").reset_index().rename_axis(columns=None)

    def verdicts(self) -> pd.DataFrame:
        """One row per claim: the verdict at each budget (and ``survives_control``)."""
        from probe.report.figures import claims_wide

        return claims_wide(self.claims)

    # -- plotting helpers for notebooks ------------------------------------------------------------------------------
    def plot_overview(self, columns: Sequence[str] | None = None):
        """Each claim's metric against the learning rate (log x, mean over seeds with error bars, failures marked)."""
        from probe.report.figures import sweep_overview

        return sweep_overview(self.runs, columns=columns)

    def plot_metric(self, metric: str, split: str = "test", ax=None, x: str = "step"):
        """One metric over training, one line per run coloured by learning rate (a new figure, or drawn into
        ``ax`` and returning it)."""
        from probe.report.figures import metric_over_training

        drawn = metric_over_training(self.epochs, metric, split, ax=ax, x=x)
        return drawn.figure if ax is None else drawn

    def plot_dynamics(self, budget: str | None = None):
        """The per-run dynamics panels of the report (accuracy by group, logit norms, cmr@0.9, loss share,
        parameter norm)."""
        from probe.report.figures import dynamics

        return dynamics(self.epochs, budget=budget)

    def plot_proposition(self):
        """R(alpha) curves, fitted rate vs smallest BA margin, and measured ratio vs logit norm."""
        from probe.report.figures import proposition_panels

        return proposition_panels(self.ratio_curves, self.proposition, self.ratio_vs_norm)

    def plot_claims(self):
        """Rank correlation of each claim's metric with the rate, with its interval, per budget."""
        from probe.report.figures import claims_forest

        return claims_forest(self.claims)


# --- the engine ----------------------------------------------------------------------------------------------------


def _warn(message: str) -> None:
    print(f"probe analyze: {message}", file=sys.stderr, flush=True)


def _identity(source: Source, name: str, lr: Any, seed: Any, many: bool) -> dict[str, Any]:
    """The identity columns of a run's rows: ``run`` (``<sweep>/<run>`` with several sources), sweep, lr, seed,
    budget."""
    return {"run": f"{source.label}/{name}" if many else name, "sweep": source.label, "lr": _number(lr, float),
            "seed": _number(seed, int), "budget": source.budget}


def _number(value: Any, kind: type) -> Any:
    try:
        return kind(value)
    except (TypeError, ValueError):
        return np.nan


def _run_identity(source: Source, run: Run, many: bool) -> dict[str, Any]:
    try:
        config = run.config
    except Exception:  # noqa: BLE001 - a damaged run.json still gets a row
        config = {}
    return _identity(source, run.name, config.get("lr"), config.get("seed"), many)


def _run_row(plan: RunPlan, ident: dict[str, Any]) -> dict[str, Any]:
    """The run table row of an analysed run: configuration, status, final training accuracy, early and final
    epochs."""
    run, committed, steps = plan.run, plan.committed, plan.steps
    status, final_acc = _classify(run, committed)
    cfg = run.config
    div = run.diverged or {}
    return {
        **ident,
        "batch_size": cfg.get("batch_size"), "momentum": cfg.get("momentum"),
        "weight_decay": cfg.get("weight_decay"), "steps": plan.total_steps, "epochs_recorded": len(committed),
        "train_status": run.status, "status": status, "final_train_acc": final_acc,
        "diverged_epoch": div.get("epoch", np.nan), "diverged_step": div.get("step", np.nan),
        "early_epoch": plan.early if plan.early is not None else np.nan,
        "early_step": dict(zip(committed, steps)).get(plan.early, np.nan) if plan.early is not None else np.nan,
        "final_epoch": committed[-1] if committed else np.nan,
        "final_step": steps[-1] if steps else np.nan,
        "damaged_file": None, "damage_reason": None,
    }


def _damaged_row(ident: dict[str, Any], error: Exception, run_dir: Path, file: Path | None = None) -> dict[str, Any]:
    """The run table row of a run that cannot be read: status ``damaged``, the file and the reason."""
    damaged_file, reason = _file_and_reason(error, run_dir, file or run_dir)
    return {**ident, "status": "damaged", "train_status": "damaged", "damaged_file": damaged_file,
            "damage_reason": reason}


def _file_and_reason(error: Exception, run_dir: Path, default_file: Path) -> tuple[str, str]:
    """Split an error about a file of ``run_dir`` into the file and the reason: probe's typed errors read
    ``<file>: <reason>``, ``OSError`` carries ``filename``; anything else is about ``default_file``."""
    text = str(error) or type(error).__name__
    named = getattr(error, "filename", None)
    if named is not None:
        return str(named), getattr(error, "strerror", None) or text
    for prefix in (f"{run_dir}{os.sep}", f"{run_dir}"):
        if text.startswith(prefix) and ": " in text[len(prefix):]:
            name, _, reason = text[len(prefix):].partition(": ")
            return prefix + name, reason
    if not isinstance(error, ProbeError):
        text = f"{type(error).__name__}: {text}"
    return str(default_file), text


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


def _final_train_acc(run: Run, epoch: int) -> float | None:
    """Training accuracy at ``epoch`` in eval mode; without recorded training records, the accuracy on the
    minibatches SGD saw in that epoch; None when neither was kept (``--record-splits`` without train and
    ``--no-sgd-logits``)."""
    if "train" in run.splits:
        rec = run.records("train", epoch)
    else:
        rec = run.sgd_records(epoch)
        if rec.logits.shape[1] == 0:
            return None
    return float(np.mean(rec.pred == rec.y)) if len(rec) else float("nan")


def _classify(run: Run, committed: list[int]) -> tuple[str, float]:
    from probe.analyses.claims import classify_run

    if not committed:
        return "empty", float("nan")
    measured = _final_train_acc(run, committed[-1])
    acc = float("nan") if measured is None else measured
    if run.diverged is not None:
        return "diverged", acc
    if run.status in ("running", "interrupted", "failed"):
        return "incomplete", acc
    if measured is None:  # training accuracy was not recorded: nothing says the run collapsed
        return "ok", acc
    if not math.isfinite(acc):
        return "collapsed", acc
    return classify_run(acc, run.num_classes, False), acc


def _flatten(metrics: Any) -> list[tuple[str, str, float]]:
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


def analyze(
    path: str | os.PathLike,
    out: str | os.PathLike | None = None,
    epochs: Any = None,
    model_epochs: Any = None,
    device: str = "cpu",
    progress: bool = True,
    options: dict[str, Any] | None = None,
    *,
    control: str | os.PathLike | None = None,
    analyses: Sequence[str] | None = None,
    report: bool = True,
    strict: bool = False,
    use_cache: bool = True,
    attribution_grids: bool = True,
) -> AnalysisResult:
    """Analyse a run, a sweep, or a folder of sweeps; write tables, ``metrics.json``, figures and ``report.html``.

    Args:
        path: run directory, sweep directory, or a folder holding sweeps (e.g. a fixed-steps sweep and its
            matched-budget twin side by side).
        out: output folder (default ``analyses/<name of path>`` under the current directory).
        epochs: epochs for the record-level analyses: None (every committed epoch), ``"last"``, or numbers; each
            run's early and last epochs are always added so that its summary columns are defined.
        model_epochs: epochs for the analyses that need the model: None (epoch 0, the epochs nearest 25/50/75% of
            training and the last; :func:`default_model_epochs`), ``"last"``, ``"all"``, ``"none"`` or numbers.
        device: where models run (``cpu``, ``cuda`` ...).
        progress: show a progress bar on stderr.
        options: analysis options passed through :class:`AnalysisContext` (``cmr_taus``, ``attr_n`` ...).
        control: a matched-budget sweep analysed alongside ``path`` (claims then say whether they survive it).
        analyses: names of registered analyses to run (default: all).
        report: write figures and ``report.html``.
        strict: raise on the first failing analysis instead of recording it.
        use_cache: reuse cached results (they are written either way).
        attribution_grids: add heatmap grids (ig, saliency, gradcam where it applies) of the same
            bias-conflicting test samples across each sweep's learning rates to the report.

    Returns:
        :class:`AnalysisResult`.

    Example:
        >>> from probe.analyses.pipeline import analyze
        >>> result = analyze("checkpoints/my_sweep")                    # doctest: +SKIP
        >>> result.claims[["claim", "budget", "spearman", "verdict"]]   # doctest: +SKIP
    """
    import torch

    registry = load_analyses()
    names = list(registry) if analyses is None else list(analyses)
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise ProbeInputError(f"unknown analysis {unknown[0]!r}; registered: {', '.join(sorted(registry))}")
    options = dict(options or {})
    name, sources = resolve_sources(path, control)
    out_dir = Path(out) if out is not None else Path("analyses") / name
    prepare_out_dir(out_dir)
    dev = torch.device(device)
    many = len(sources) > 1
    opt_key = _options_key(options)

    plans: list[RunPlan] = []
    damaged: list[dict[str, Any]] = []  # run-table rows of runs that cannot be read
    damaged_paths: set[Path] = set()
    for source in sources:
        for unreadable in source.unreadable:
            cfg = unreadable.config
            ident = _identity(source, unreadable.name, cfg.get("lr"), cfg.get("seed"), many)
            damaged.append(_damaged_row(ident, unreadable.error, unreadable.path, unreadable.path / RUN_JSON))
        for run in source.runs:
            try:
                plans.append(plan_run(source, run, epochs, model_epochs))
            except Exception as exc:  # noqa: BLE001 - a damaged run is listed, the others are analysed
                if strict:
                    raise
                damaged.append(_damaged_row(_run_identity(source, run, many), exc, run.path))
                damaged_paths.add(run.path)

    cheap_names = [n for n in names if not registry[n].needs_model]
    heavy_names = [n for n in names if registry[n].needs_model]
    tasks = sum(p.tasks(cheap_names, heavy_names) for p in plans)
    bar = _bar(tasks, progress)
    rows: list[tuple] = []
    errors: list[dict[str, Any]] = []
    timings: list[dict[str, Any]] = []
    run_rows: list[dict[str, Any]] = []
    ratio_frames: list[pd.DataFrame] = []

    for plan in plans:
        source, run, committed, steps = plan.source, plan.run, plan.committed, plan.steps
        ident = _run_identity(source, run, many)
        rid = ident["run"]
        cache_root = out_dir / "cache" / source.label
        ctx = AnalysisContext(EpochMemo(run), device=dev, cache_dir=cache_root, options=options)  # type: ignore[arg-type]
        cache = MetricCache(cache_root / "metrics")
        step_of = dict(zip(committed, steps))
        run_rows_epochs: list[tuple] = []  # kept only if the whole run reads cleanly
        run_timings: list[dict[str, Any]] = []
        done = 0
        try:
            for epoch in plan.epochs:  # re-hash every epoch against the manifest before any analysis or cache entry
                run.verify(epoch)  # answers for it (a damaged epoch raises a typed error naming the file)
            for epoch in plan.epochs:
                wanted = (cheap_names if epoch in plan.cheap else []) + (heavy_names if epoch in plan.heavy else [])
                stored = cache.load(run, epoch) if use_cache else {}
                entries = {k: v for k, v in stored.items()
                           if v.get("epoch_sha256") == plan.sha256[epoch] and v.get("options") == opt_key}
                changed = False
                for analysis in wanted:
                    hit = analysis in entries
                    t0 = time.perf_counter()
                    done += 1
                    bar.update(1)
                    if not hit:
                        try:
                            metrics = _flatten(registry[analysis].fn(ctx, epoch))
                        except Exception as exc:  # noqa: BLE001 - one failing analysis must not stop the report
                            if strict:
                                raise
                            err = {"run": rid, "epoch": int(epoch), "analysis": analysis,
                                   "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
                            errors.append(err)
                            _warn(f"ERROR in analysis {analysis!r} on {rid} epoch {epoch}: {err['error']}")
                            continue
                        entries[analysis] = {"epoch_sha256": plan.sha256[epoch], "options": opt_key,
                                             "metrics": [list(m) for m in metrics]}
                        changed = True
                    run_timings.append({"run": rid, "epoch": int(epoch), "analysis": analysis, "cached": hit,
                                        "seconds": time.perf_counter() - t0})
                    for split, metric, value in entries[analysis]["metrics"]:
                        run_rows_epochs.append((rid, source.label, ident["lr"], ident["seed"], source.budget,
                                                int(epoch), int(step_of[epoch]), analysis, split, metric,
                                                float(value)))
                if changed:
                    cache.store(run, epoch, entries)
            run_row = _run_row(plan, ident)
        except Exception as exc:  # noqa: BLE001 - a damaged run is listed, the others are analysed
            if strict:
                raise
            bar.update(plan.tasks(cheap_names, heavy_names) - done)
            damaged.append(_damaged_row(ident, exc, run.path))
            damaged_paths.add(run.path)
            continue
        rows += run_rows_epochs
        timings += run_timings
        run_rows.append(run_row)
        if run_row["status"] != "ok":
            where = ""
            if run_row["status"] == "diverged":
                where = (f" (non-finite loss at epoch {run_row['diverged_epoch']}, "
                         f"step {run_row['diverged_step']})")
            _warn(f"run {rid} (lr {ident['lr']:g}) is {run_row['status']}{where}; it is listed in the report and "
                  "left out of the claims")
        if committed and "train" in run.splits and "proposition" in names:
            try:
                ratio_frames.append(_ratio_curves(run, ident, plan.early, committed[-1], options))
            except Exception as exc:  # noqa: BLE001
                if strict:
                    raise
                errors.append({"run": rid, "epoch": int(committed[-1]), "analysis": "ratio_curves",
                               "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})
                _warn(f"ERROR computing R(alpha) curves of {rid}: {type(exc).__name__}: {exc}")
    for row in damaged:
        _warn(f"run {row['run']} is damaged and left out: {row['damaged_file']}: {row['damage_reason']}")
        run_rows.append(row)
    bar.close()

    epochs_table = pd.DataFrame(rows, columns=EPOCH_COLUMNS)
    runs_table = _summarise(pd.DataFrame(run_rows, columns=RUN_COLUMNS), epochs_table)
    claims, failures = _judge(runs_table)
    ratio_curves = (pd.concat(ratio_frames, ignore_index=True) if ratio_frames else
                    pd.DataFrame(columns=["run", "sweep", "lr", "seed", "budget", "phase", "epoch", "alpha",
                                          "ratio", "log_ratio"]))
    config = {"path": str(Path(path)), "control": None if control is None else str(control), "out": str(out_dir),
              "epochs": epochs if epochs is None or isinstance(epochs, str) else [int(e) for e in epochs],
              "model_epochs": (model_epochs if model_epochs is None or isinstance(model_epochs, str)
                               else [int(e) for e in model_epochs]),
              "device": str(dev), "options": options, "analyses": {n: registry[n].needs_model for n in names},
              "early_fraction": EARLY_FRACTION, "setup": _setup(sources)}
    result = AnalysisResult(out=out_dir, epochs=epochs_table, runs=runs_table, claims=claims, failures=failures,
                            ratio_curves=ratio_curves, errors=errors, timings=pd.DataFrame(timings),
                            sources=[s.describe() for s in sources], config=config)
    try:
        if report:
            from probe.report.html import write_report

            readable = [dataclasses.replace(s, runs=[r for r in s.runs if r.path not in damaged_paths])
                        for s in sources]
            write_report(result, extra_sections=_panels(result, readable, attribution_grids, strict))
    finally:
        write_tables(result)  # after the report, so that errors drawing figures are in metrics.json too
    if errors:
        _warn(f"{len(errors)} analysis error(s); they are listed in {out_dir / 'metrics.json'}"
              + (" and in the report" if report else ""))
    return result


def _panels(result: AnalysisResult, sources: list[Source], attribution_grids: bool, strict: bool) -> list[Any]:
    """Representation and attribution sections of the report; a panel that fails is recorded, not fatal."""
    from probe.report.panels import attribution_sections, representation_section

    fig_dir = result.out / "figures"
    makers = [("representations", lambda: representation_section(result, fig_dir))]
    if attribution_grids:
        makers.append(("attribution grids", lambda: attribution_sections(result, sources, fig_dir)))
    sections: list[Any] = []
    for name, make in makers:
        try:
            sections += make()
        except Exception as exc:  # noqa: BLE001 - a panel that fails must not lose the report
            if strict:
                raise
            import traceback

            result.errors.append({"run": "-", "epoch": -1, "analysis": f"panel {name}",
                                  "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})
            _warn(f"ERROR drawing the {name} panel: {type(exc).__name__}: {exc}")
    return sections


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


def _ratio_curves(run: Run, ident: dict[str, Any], early: int, final: int, options: dict[str, Any]) -> pd.DataFrame:
    from probe.analyses.proposition import DEFAULT_ALPHAS, ratio_curves

    epochs = sorted({early, final})
    curves = ratio_curves(run, "train", epochs=epochs, alphas=options.get("alphas", DEFAULT_ALPHAS))
    curves.insert(0, "phase", np.where(curves["epoch"] == final, "final", "early"))
    for i, (k, v) in enumerate(ident.items()):
        curves.insert(i, k, v)
    return curves


def _summarise(runs: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """Add ``final:<split>/<metric>`` and ``early:<split>/<metric>`` columns to the run table."""
    if runs.empty or epochs.empty:
        return runs
    wide = {}
    for phase, col in (("final", "final_epoch"), ("early", "early_epoch")):
        at = runs[["run", col]].rename(columns={col: "epoch"}).dropna()
        at["epoch"] = at["epoch"].astype(int)
        sel = epochs.merge(at, on=["run", "epoch"])
        if sel.empty:
            continue
        sel = sel.drop_duplicates(["run", "split", "metric"], keep="first")
        sel = sel.assign(column=phase + ":" + sel["split"] + "/" + sel["metric"])
        wide[phase] = sel.pivot(index="run", columns="column", values="value")
    summary = pd.concat([wide[p] for p in ("final", "early") if p in wide], axis=1)
    return runs.merge(summary, left_on="run", right_index=True, how="left")


def _judge(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    from probe.analyses.claims import evaluate_claims, failures_table

    if runs.empty:
        return pd.DataFrame(columns=["claim", "budget", "verdict"]), pd.DataFrame(columns=["run", "status"])
    failures = failures_table(runs, axis="lr")
    damage = runs.set_index("run")[["damaged_file", "damage_reason"]]
    return evaluate_claims(runs, axis="lr"), failures.join(damage, on="run")


def _bar(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="analyze", unit="analysis", disable=None if enabled else True, dynamic_ncols=True,
                file=sys.stderr)


# --- files ---------------------------------------------------------------------------------------------------------


def _clean(value: Any) -> Any:
    """JSON-safe: NaN / inf -> None, numpy scalars -> Python, recursively."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [_clean(r) for r in frame.to_dict(orient="records")]


def metrics_payload(result: AnalysisResult) -> dict[str, Any]:
    """Everything of ``result`` as one JSON-safe dict (the content of ``metrics.json``)."""
    from probe import __version__

    per_epoch: dict[str, dict[str, Any]] = {}
    for (run, epoch, step), part in result.epochs.groupby(["run", "epoch", "step"], sort=True):
        nested: dict[str, dict[str, float]] = {}
        for split, metric, value in zip(part["split"], part["metric"], part["value"]):
            nested.setdefault(split, {}).setdefault(metric, value)
        per_epoch.setdefault(run, {})[str(epoch)] = {"step": int(step), "metrics": nested}
    statuses = dict(zip(result.runs["run"], result.runs["status"])) if len(result.runs) else {}
    return _clean({
        "probe_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": result.config,
        "sources": result.sources,
        "statuses": statuses,
        "runs": _records(result.runs),
        "failures": _records(result.failures),
        "claims": _records(result.claims),
        "proposition": _records(result.proposition),
        "epochs": per_epoch,
        "errors": result.errors,
    })


def write_tables(result: AnalysisResult) -> None:
    """``epochs.csv``, ``runs.csv``, ``claims.csv``, ``failures.csv``, ``ratio_curves.csv`` and ``metrics.json``."""
    out = result.out
    for name, frame in (("epochs.csv", result.epochs), ("runs.csv", result.runs), ("claims.csv", result.claims),
                        ("failures.csv", result.failures), ("ratio_curves.csv", result.ratio_curves)):
        frame.to_csv(out / name, index=False)
        result.files[name] = out / name
    path = out / "metrics.json"
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(metrics_payload(result), indent=1, allow_nan=False))
    os.replace(tmp, path)
    result.files["metrics.json"] = path
