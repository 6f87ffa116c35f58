"""What ``analyze`` reads: the sources (runs and sweeps) and, per run, the epochs each kind of analysis reads.

:func:`resolve_sources` turns a path (a run, a sweep, or a folder of sweeps) and an optional matched-budget control
into :class:`Source` objects; :func:`plan_run` turns one run into a :class:`RunPlan`: its committed epochs with their
global steps and sha256 (from the manifest), its early epoch (:func:`early_epoch`), the epochs of the record-level
analyses (every committed epoch by default) and those of the model analyses (:func:`default_model_epochs`).

"Early" is a distance, ``lr x steps``, equal across the rates of a sweep: the recorded epoch whose ``lr x step`` is
nearest :data:`EARLY_FRACTION` of the run's distance budget (``run.json``'s ``plan.distance_budget``, which a sweep
sets to one value for all its runs and records at; for runs written before it was stored, the run's own
``lr x planned steps``). An epoch of the store is a recorded point: the end of a data pass or, with the run's
``record_steps``, a step inside one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from probe.errors import ProbeError, ProbeInputError, RunDirectoryError
from probe.store.reader import RUN_JSON, SWEEP_JSON, Run, Sweep, folder_members, open_path

#: the "early" phase of a run is the recorded epoch whose ``lr x step`` is closest to this fraction of the distance
#: budget (the last of ``probe.train.config.EARLY_DISTANCE_FRACTIONS``, at which sweeps record).
EARLY_FRACTION = 0.1
#: fractions of training at which the default model epochs are taken (besides epoch 0 and the last).
MODEL_EPOCH_FRACTIONS = (0.25, 0.5, 0.75)

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
    axes: dict[str, list[Any]] = field(default_factory=dict)  # sweep.json's axes (none for a single run)
    run_axes: dict[str, dict[str, Any]] = field(default_factory=dict)  # run folder -> its value of each axis

    def describe(self) -> dict[str, Any]:
        return {"label": self.label, "path": str(self.path), "budget": self.budget, "kind": self.kind,
                "runs": [r.name for r in self.runs] + [r.name for r in self.unreadable],
                "axes": self.axes, "run_axes": self.run_axes}


def _open_sweep_runs(sweep: Sweep) -> tuple[list[Run], list[UnreadableRun]]:
    """The started runs of ``sweep`` in ``sweep.json`` order, and those whose ``run.json`` cannot be read."""
    runs, unreadable = [], []
    base = sweep.config.get("base_config") or {}
    for entry in sweep.config["runs"]:
        path = sweep.path / entry["name"]
        if not (path / RUN_JSON).is_file():
            continue  # not started yet
        try:
            runs.append(Run(path))
        except (ProbeError, OSError, ValueError) as err:  # damaged run.json: list the run, analyse the others
            unreadable.append(UnreadableRun(entry["name"], path, {**base, **entry}, err))
    return runs, unreadable


def _source(target: Run | Sweep, label: str | None = None) -> Source:
    # the folder's own name, also for a path given as "sweep/.." or "."; it names the source's cache folders
    label = label or Path(os.path.normpath(os.path.abspath(target.path))).name
    if isinstance(target, Sweep):
        runs, unreadable = _open_sweep_runs(target)
        axes = {str(a): list(v) for a, v in target.axes.items()}
        run_axes = {e["name"]: {a: e.get(a) for a in axes} for e in target.config["runs"]}
        return Source(label, target.path, target.budget, runs, "sweep", unreadable, axes, run_axes)
    return Source(label, target.path, str(target.config.get("budget", "fixed")), [target], "run")


def resolve_sources(path: str | os.PathLike, control: str | os.PathLike | None = None,
                    compare: Sequence[str | os.PathLike] = ()) -> tuple[str, list[Source]]:
    """The name of the analysis and what it covers.

    ``path`` is a run directory, a sweep directory, or a folder whose sub-folders are sweeps or runs (for example a
    fixed-steps sweep beside its matched-budget twin). ``control`` is a matched-budget sweep analysed alongside;
    ``compare`` more sweeps (over other axes) analysed alongside.
    """
    p = Path(path)
    if (p / SWEEP_JSON).is_file() or (p / RUN_JSON).is_file():
        sources = [_source(open_path(p))]
    elif p.is_dir():
        sweeps, runs = folder_members(p)
        children = sorted(sweeps + runs)
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
    sources += [_source(open_path(other)) for other in compare]
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


def early_epoch(epochs: Sequence[int], steps: Sequence[int], total_steps: float,
                fraction: float = EARLY_FRACTION) -> int:
    """The "early" epoch of a run: among recorded epochs after the first step (step > 0), the one whose global step
    is closest to ``fraction * total_steps`` (earlier on a tie); epoch 0 only when nothing else is recorded.

    ``total_steps`` is the run's steps of the distance budget, ``distance_budget / lr`` (:func:`budget_steps`), so
    that the epoch chosen is the one whose ``lr x step`` is nearest ``fraction x distance_budget``."""
    epochs, steps = np.asarray(epochs), np.asarray(steps)
    trained = steps > 0
    if not trained.any():
        return int(epochs[0])
    return nearest_epoch(epochs[trained], steps[trained], fraction * total_steps)


def run_distance_budget(run: Run, total_steps: int) -> float:
    """The distance budget ``B = lr x steps`` of ``run``: ``run.json``'s ``plan.distance_budget`` (a sweep's common
    budget), else (runs written before it was stored) ``lr x total_steps``, the run's own planned distance."""
    stored = run.distance_budget
    return stored if stored is not None else run.lr * total_steps


def budget_steps(run: Run, total_steps: int) -> float:
    """``B / lr``: the steps in which ``run`` travels its distance budget ``B`` (:func:`run_distance_budget`)."""
    return run_distance_budget(run, total_steps) / run.lr


def default_model_epochs(epochs: Sequence[int], steps: Sequence[int],
                         fractions: Sequence[float] = MODEL_EPOCH_FRACTIONS) -> list[int]:
    """Epoch 0, the recorded epochs closest (by step) to ``fractions`` of the last step, and the last epoch."""
    if len(epochs) == 0:
        return []
    last_step = int(np.asarray(steps)[-1])
    chosen = {int(epochs[0]), int(epochs[-1])}
    chosen.update(nearest_epoch(epochs, steps, f * last_step) for f in fractions)
    return sorted(chosen)


def select_epochs(spec: Any, committed: list[int], steps: list[int], *, default: list[int]) -> list[int]:
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


def planned_steps(run: Run, epochs: list[int], steps: list[int]) -> int:
    """Steps the run was planned for: ``run.json``'s ``plan.total_steps``; for runs written before it was stored,
    ``steps`` in its config, else epochs x (steps per recorded epoch), those runs' epochs being data passes."""
    if run.planned_steps is not None:
        return run.planned_steps
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
    distance_budget: float = float("nan")  # lr x steps; "early" is EARLY_FRACTION of it

    @property
    def step_of(self) -> dict[int, int]:
        """Global step of each committed epoch."""
        return dict(zip(self.committed, self.steps))

    @property
    def epochs(self) -> list[int]:
        """Every epoch some analysis reads, in order."""
        return sorted(set(self.cheap) | set(self.heavy))

    def analyses_at(self, epoch: int, cheap_names: Sequence[str], heavy_names: Sequence[str]) -> list[str]:
        """The analyses that read ``epoch``: the record-level ones on a cheap epoch, the model ones on a heavy one."""
        return (list(cheap_names) if epoch in self.cheap else []) + (list(heavy_names) if epoch in self.heavy else [])

    def tasks(self, cheap_names: Sequence[str], heavy_names: Sequence[str]) -> int:
        """How many (epoch, analysis) pairs this plan runs."""
        return len(self.cheap) * len(cheap_names) + len(self.heavy) * len(heavy_names)


def model_epochs_with_weights(run: Run, manifest_epochs: list[dict[str, Any]], model_epochs: Any) -> list[int]:
    """The model analyses' epochs: ``model_epochs`` (default :func:`default_model_epochs`) chosen among the committed
    epochs that keep weights (all of them unless the run was trained with ``keep_weights``). Asked epochs without
    weights are replaced by the nearest epoch (by step) with weights, and a warning names both."""
    from probe.analyses.engine.result import warn

    kept = [e for e in manifest_epochs if e.get("weights", True)]
    epochs = [int(e["epoch"]) for e in kept]
    steps = [int(e["global_step"]) for e in kept]
    if len(kept) == len(manifest_epochs):
        return select_epochs(model_epochs, epochs, steps, default=default_model_epochs(epochs, steps))
    step_of = {int(e["epoch"]): int(e["global_step"]) for e in manifest_epochs}
    committed = list(step_of)
    asked = select_epochs(model_epochs, committed, list(step_of.values()),
                          default=default_model_epochs(committed, list(step_of.values())))
    if not epochs:
        if asked:
            warn(f"run {run.name}: no committed epoch keeps weights (keep_weights "
                 f"{run.config.get('keep_weights')!r}); the model analyses are skipped")
        return []
    chosen = {e if e in epochs else nearest_epoch(epochs, steps, step_of[e]) for e in asked}
    moved = [e for e in asked if e not in epochs]
    if moved:
        warn(f"run {run.name}: epochs {moved} keep no weights (keep_weights {run.config.get('keep_weights')!r}); "
             f"the model analyses read the nearest epochs with weights instead: {sorted(chosen)}")
    return sorted(chosen)


def plan_run(source: Source, run: Run, epochs: Any = None, model_epochs: Any = None) -> RunPlan:
    """The :class:`RunPlan` of ``run`` for ``analyze``'s ``epochs`` and ``model_epochs``
    (see :func:`probe.analyses.engine.analyze`)."""
    try:
        manifest_epochs = run.manifest["epochs"]
    except RunDirectoryError:  # started, nothing committed yet (no manifest)
        manifest_epochs = []
    committed = [int(e["epoch"]) for e in manifest_epochs]
    steps = [int(e["global_step"]) for e in manifest_epochs]
    total = planned_steps(run, committed, steps) if committed else 0
    budget = run_distance_budget(run, total) if committed else float("nan")
    early = early_epoch(committed, steps, budget / run.lr) if committed else None
    cheap = select_epochs(epochs, committed, steps, default=list(committed))
    if committed:
        cheap = sorted(set(cheap) | {early, committed[-1]})
    heavy = model_epochs_with_weights(run, manifest_epochs, model_epochs)
    sha256 = {int(e["epoch"]): e.get("sha256") for e in manifest_epochs}
    return RunPlan(source, run, committed, steps, sha256, total, early, cheap, heavy, budget)
