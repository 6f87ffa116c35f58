"""Learning-rate sweeps: one run directory per combination of the swept axes, plus ``sweep.json``.

With ``budget="matched"`` every rate trains for ``round(max(lrs) * steps / lr)`` steps, so that ``lr x steps`` is the
same for every run (the matched-budget control of SPEC section 5).

"Early" in training is measured in distance, ``lr x steps``, identically for every rate: the sweep's distance budget
``B`` (:func:`distance_budget`) is ``max(lrs) x S`` for a matched sweep and the smallest ``lr x total steps`` of its
runs for a fixed one (the largest distance every run reaches), and every run records at the steps
``round(f * B / lr)`` for ``f`` in ``early_fractions`` (1%, 3% and 10% of ``B``), even inside a data pass.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from probe.errors import ProbeInputError, RunDirectoryError, RunStartedError
from probe.plugins import import_plugins, is_module_name
from probe.store.atomic import atomic_write_json, read_json
from probe.store.lock import DirectoryLock
from probe.store.ownership import take_directory
from probe.store.reader import SWEEP_JSON
from probe.store.schema import SCHEMA_VERSION
from probe.store.writer import now_iso
from probe.train.config import RESULT_NEUTRAL_FIELDS, TrainConfig, config_differences
from probe.train.trainer import plan_length, plugin_modules, train

#: Swept axis name -> TrainConfig field.
AXES = {"lr": "lr", "seed": "seed", "batch_size": "batch_size", "momentum": "momentum",
        "weight_decay": "weight_decay", "l1": "l1", "l2": "l2", "focal_gamma": "focal_gamma", "sam_rho": "sam_rho",
        "label_smoothing": "label_smoothing"}
#: Axis name -> its prefix in run names (``lr0.1_seed0_l1pen1e-05``).
_SHORT = {"lr": "lr", "seed": "seed", "batch_size": "bs", "momentum": "mom", "weight_decay": "wd", "l1": "l1pen",
          "l2": "l2pen", "focal_gamma": "focal", "sam_rho": "sam", "label_smoothing": "ls"}


def _fmt(value: Any) -> str:
    if value is None:  # sam_rho's "no SAM"
        return "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def plan_sweep(base: TrainConfig, axes: dict[str, Sequence[Any]], *, budget: str = "fixed",
               steps: int | None = None, n_train: int | None = None) -> list[tuple[str, TrainConfig, dict[str, Any]]]:
    """The runs of a sweep: ``(name, config, axis values)`` for every combination of ``axes``.

    Every config carries the sweep's :func:`distance_budget` and records at its early steps
    (:func:`early_record_steps`). ``n_train`` (the training split's size) is needed to count the steps of runs given
    in epochs; when it is None such a sweep builds its dataset once to learn it."""
    plan = _combinations(base, axes, budget=budget, steps=steps)
    if any(cfg.steps is None for _, cfg, _ in plan) and n_train is None:
        n_train = train_size(base)
    totals = [cfg.steps if cfg.steps is not None else plan_length(n_train, cfg)[2] for _, cfg, _ in plan]
    distance = distance_budget([cfg.lr for _, cfg, _ in plan], totals, budget=budget, steps=steps)
    return [(name, replace(cfg, distance_budget=distance,
                           record_steps=early_record_steps(distance, cfg.lr, total, cfg.early_fractions)).validate(),
             values) for (name, cfg, values), total in zip(plan, totals)]


def _combinations(base: TrainConfig, axes: dict[str, Sequence[Any]], *, budget: str,
                  steps: int | None) -> list[tuple[str, TrainConfig, dict[str, Any]]]:
    """The runs of :func:`plan_sweep` before their distance budget and early steps (checked, nothing built)."""
    unknown = sorted(set(axes) - set(AXES))
    if unknown:
        raise ProbeInputError(f"cannot sweep {', '.join(unknown)}; sweepable: {', '.join(AXES)}")
    if not axes.get("lr"):
        raise ProbeInputError("a sweep needs at least one learning rate (--lr)")
    for name, values in axes.items():
        if len(set(values)) != len(values):
            raise ProbeInputError(f"--{name.replace('_', '-')} lists a value twice: {list(values)}")
    if any(not lr > 0 for lr in axes["lr"]):
        raise ProbeInputError(f"every lr must be > 0, got {list(axes['lr'])}")
    if budget == "matched":
        if steps is None or steps < 1:
            raise ProbeInputError("--budget matched needs --steps S (steps of the largest rate)")
        base = replace(base, epochs=None, steps=steps)
    elif budget != "fixed":
        raise ProbeInputError(f"unknown budget {budget!r}; use fixed or matched")
    base = replace(base, record_steps=(), distance_budget=None).validate()
    max_lr = max(axes["lr"])
    names = [n for n in AXES if n in axes]
    plan = []
    for combo in itertools.product(*(axes[n] for n in names)):
        values = dict(zip(names, combo))
        cfg = replace(base, **{AXES[n]: v for n, v in values.items()}, budget=budget)
        if budget == "matched":
            cfg = replace(cfg, steps=max(1, int(round(max_lr * steps / values["lr"]))))
        cfg.validate()
        name = "_".join(f"{_SHORT[n]}{_fmt(v)}" for n, v in values.items())
        plan.append((name, cfg, values))
    return plan


def distance_budget(lrs: Sequence[float], total_steps: Sequence[int], *, budget: str,
                    steps: int | None = None) -> float:
    """The sweep's distance budget ``B`` (``lr x steps``) that early training is measured in: ``max(lrs) x steps``
    for a matched sweep (every run's ``lr x steps``, up to rounding its steps), else ``min_i lrs[i] x
    total_steps[i]``, the largest distance every run travels."""
    if budget == "matched":
        return float(max(lrs) * steps)
    return float(min(lr * total for lr, total in zip(lrs, total_steps)))


def early_record_steps(distance: float, lr: float, total_steps: int, fractions: Sequence[float]) -> tuple[int, ...]:
    """The steps at which a run of rate ``lr`` has travelled ``f x distance`` for each ``f`` in ``fractions``:
    ``round(f * distance / lr)``, kept in ``[1, total_steps]``, without repeats."""
    return tuple(sorted({min(total_steps, max(1, int(round(f * distance / lr)))) for f in fractions}))


_TRAIN_SIZES: dict[str, int] = {}


def train_size(cfg: TrainConfig) -> int:
    """Samples in the training split of ``cfg``'s dataset (built once per dataset and options)."""
    from probe.data import build_dataset

    key = json.dumps([cfg.dataset, cfg.dataset_options], sort_keys=True, default=str)
    if key not in _TRAIN_SIZES:
        _TRAIN_SIZES[key] = len(build_dataset(cfg.dataset, preflight=False, **cfg.dataset_options).train)
    return _TRAIN_SIZES[key]


def _train_one(args: tuple[TrainConfig, str, bool, bool, int | None]) -> tuple[str, str, dict[str, Any] | None]:
    cfg, out, resume, progress, threads = args
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    if resume and (Path(out) / "run.json").is_file():
        result = train(cfg, out, resume=True, progress=progress)
    elif resume:  # a leftover without run.json is replaced; a run another job started meanwhile is resumed instead
        try:
            result = train(cfg, out, overwrite="unstarted", progress=progress)
        except RunStartedError:
            result = train(cfg, out, resume=True, progress=progress)
    else:
        result = train(cfg, out, progress=progress)
    return out, result.status, result.diverged


def sweep_record(base: TrainConfig, name: str, axes: dict[str, Sequence[Any]], *, budget: str, steps: int | None,
                 plan: list[tuple[str, TrainConfig, dict[str, Any]]]) -> dict[str, Any]:
    """The content of ``sweep.json`` (without its creation time)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "axes": {k: list(v) for k, v in axes.items()},
        "budget": budget,
        "budget_steps": steps,
        "distance_budget": plan[0][1].distance_budget if plan else None,
        "early_fractions": list(base.early_fractions),
        "base_config": base.to_json(),
        "plugins": plugin_modules(base),
        "runs": [{"name": run, **values, "steps": cfg.steps, "epochs": cfg.epochs,
                  "record_steps": list(cfg.record_steps)} for run, cfg, values in plan],
    }


def stored_sweep(out: str | Path) -> dict[str, Any]:
    """``run_sweep``'s arguments as ``<out>/sweep.json`` records them: base, axes, budget, steps (for ``--resume``
    without repeating the command); the plugin modules it names are imported first."""
    stored = _read_sweep_json(Path(out))
    plugins = stored.get("plugins", [])
    if not isinstance(plugins, list) or not all(is_module_name(name) for name in plugins):
        raise RunDirectoryError(f"{Path(out) / SWEEP_JSON}: plugins must be a list of module names")
    import_plugins(plugins)
    return {"base": TrainConfig.from_json(stored["base_config"]), "axes": stored["axes"],
            "budget": stored.get("budget", "fixed"), "steps": stored.get("budget_steps")}


def sweep_differences(stored: dict[str, Any], asked: dict[str, Any]) -> list[str]:
    """What differs between the ``sweep.json`` of a sweep and the one a command asks for: axes, budget and every
    base-config field that is not swept (except :data:`~probe.train.config.RESULT_NEUTRAL_FIELDS`)."""
    swept = {AXES[a] for a in (*stored.get("axes", {}), *asked["axes"]) if a in AXES}
    differ = config_differences(TrainConfig.from_json(stored["base_config"]).to_json(), asked["base_config"],
                                source="sweep.json", ignore=RESULT_NEUTRAL_FIELDS | swept)
    for key in ("axes", "budget"):
        differ += config_differences({key: stored.get(key)}, {key: asked[key]}, source="sweep.json")
    differ += config_differences({"budget_steps": _budget_steps(stored)}, {"budget_steps": _budget_steps(asked)},
                                 source="sweep.json")
    return differ


def _budget_steps(record: dict[str, Any]) -> Any:
    """A sweep record's ``budget_steps``; of a fixed sweep without them, its base config's steps (the same runs)."""
    steps = record.get("budget_steps")
    if steps is None and record.get("budget", "fixed") == "fixed":
        return record.get("base_config", {}).get("steps")
    return steps


def check_sweep_resume(out: str | Path, base: TrainConfig, axes: dict[str, Sequence[Any]], *, budget: str = "fixed",
                       steps: int | None = None) -> None:
    """Raise :class:`ProbeInputError` listing the differences unless ``run_sweep(base, out, axes, ...)`` describes
    the sweep recorded in ``out/sweep.json``; :class:`RunDirectoryError` when there is none to resume."""
    out = Path(out)
    plan = _combinations(base, axes, budget=budget, steps=steps)  # the runs' early steps are not compared
    differ = sweep_differences(_read_sweep_json(out),
                               sweep_record(base, out.name, axes, budget=budget, steps=steps, plan=plan))
    if differ:
        raise ProbeInputError(f"{out}: --resume continues the sweep as sweep.json describes it; these options "
                              "differ: " + ", ".join(differ))


def _read_sweep_json(out: Path) -> dict[str, Any]:
    if not (out / SWEEP_JSON).is_file():
        raise RunDirectoryError(f"{out}: no {SWEEP_JSON} to resume")
    try:
        stored = read_json(out / SWEEP_JSON)
    except (OSError, ValueError) as err:
        raise RunDirectoryError(f"{out / SWEEP_JSON}: unreadable ({err})") from None
    if not isinstance(stored, dict) or not isinstance(stored.get("base_config"), dict) \
            or not isinstance(stored.get("axes"), dict):
        raise RunDirectoryError(f"{out / SWEEP_JSON}: not a sweep.json written by probe")
    try:
        TrainConfig.from_json(stored["base_config"])
    except ProbeInputError as err:
        raise RunDirectoryError(f"{out / SWEEP_JSON}: base_config: {err}") from None
    return stored


def run_sweep(base: TrainConfig, out: str | Path, axes: dict[str, Sequence[Any]], *, budget: str = "fixed",
              steps: int | None = None, jobs: int = 1, resume: bool = False, overwrite: bool = False,
              progress: bool = False, threads: int | None = None) -> list[tuple[str, str, dict[str, Any] | None]]:
    """Train every run of the sweep into ``out``; a diverged run does not stop the others.

    Returns ``(run_dir, status, diverged)`` per run. ``jobs > 1`` trains that many runs at once in separate processes,
    which die with this one; ``threads`` sets torch's CPU threads in each of them (default with ``jobs > 1``:
    :func:`threads_per_job`, the cores shared out). The sweep holds ``<out>/.lock``
    from start to end, so a second sweep into ``out`` (or an ``overwrite`` of it) is refused meanwhile.

    ``resume`` continues the sweep ``out/sweep.json`` describes and refuses other arguments (listing the
    differences); ``overwrite`` replaces only an inactive probe sweep directory (see :mod:`probe.store.ownership`).
    ``probe.sweep`` is this function.

    Example:
        >>> base = probe.TrainConfig(dataset="colored-mnist", model="mlp", lr=0.1, steps=2000)
        >>> probe.sweep(base, "checkpoints/sweep", {"lr": [0.01, 0.1, 1.0], "seed": [0, 1]})   # doctest: +SKIP
        >>> probe.sweep(base, "checkpoints/sweep_matched", {"lr": [0.1, 1.0]}, budget="matched",
        ...             steps=600)                                                              # doctest: +SKIP
    """
    out = Path(out)
    if jobs < 1:
        raise ProbeInputError(f"--jobs must be >= 1, got {jobs}")
    if resume and overwrite:
        raise ProbeInputError("--resume and --overwrite exclude each other")
    if resume:  # the differences first: the plan may build the dataset the arguments name
        check_sweep_resume(out, base, axes, budget=budget, steps=steps)
    plan = plan_sweep(base, axes, budget=budget, steps=steps)
    lock = DirectoryLock(out, "sweep")
    if resume:
        lock.acquire()
    else:
        take_directory(out, lock, overwrite=overwrite, kind="sweep")
        try:
            record = sweep_record(base, out.name, axes, budget=budget, steps=steps, plan=plan)
            atomic_write_json(out / SWEEP_JSON, {**record, "created": now_iso()})
        except BaseException:
            lock.release()
            raise
    try:
        return _train_all(out, plan, resume=resume, jobs=jobs, progress=progress, threads=threads)
    finally:
        lock.release()


def threads_per_job(jobs: int, cores: int | None = None) -> int:
    """torch's CPU threads in each of ``jobs`` runs trained at once: the cores shared out, at least 1. Left at torch's
    default (one per core) in every job, the jobs' threads outnumber the cores and spin-wait on each other: on 2 cores,
    two jobs of 2 threads each trained an MLP about 10x slower than two jobs of 1 thread."""
    return max(1, (cores or os.cpu_count() or 1) // jobs)


def _train_all(out: Path, plan: list[tuple[str, TrainConfig, dict[str, Any]]], *, resume: bool, jobs: int,
               progress: bool, threads: int | None) -> list[tuple[str, str, dict[str, Any] | None]]:
    if jobs > 1 and threads is None:
        threads = threads_per_job(jobs)
    tasks = [(cfg, str(out / name), resume, progress and jobs == 1, threads) for name, cfg, _ in plan]
    results: list[tuple[str, str, dict[str, Any] | None]] = []
    bar = _sweep_bar(len(tasks), progress)
    if jobs == 1:
        for task in tasks:
            results.append(_train_one(task))
            bar.update(1)
    else:
        plugins = plugin_modules(plan[0][1])
        with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"),
                                 initializer=_start_worker, initargs=(os.getpid(), plugins)) as pool:
            futures = [pool.submit(_train_one, task) for task in tasks]
            try:
                for future in futures:
                    results.append(future.result())
                    bar.update(1)
            except BaseException:
                for future in futures:  # runs not started yet are not started; running ones end on their own
                    future.cancel()
                raise
    bar.close()
    return results


def _start_worker(parent_pid: int, plugins: list[str]) -> None:
    """Initialise a sweep worker: it dies with the parent and imports the plugins that define the dataset and model."""
    die_with_parent(parent_pid)
    import_plugins(plugins)


def die_with_parent(parent_pid: int) -> None:
    """Make this process (a sweep worker) end when the process ``parent_pid`` that started it dies, even by SIGKILL.

    On Linux the kernel sends SIGKILL at the parent's death (``prctl(PR_SET_PDEATHSIG)``); the parent pid is checked
    afterwards, which closes the race of a parent that died before. Elsewhere a daemon thread polls the parent pid.
    """
    armed = sys.platform.startswith("linux") and _set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)
    if not armed:
        threading.Thread(target=_exit_when_orphaned, args=(parent_pid,), name="probe-parent-watch",
                         daemon=True).start()


def _set_parent_death_signal(signum: int) -> bool:
    import ctypes

    PR_SET_PDEATHSIG = 1
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _exit_when_orphaned(parent_pid: int, interval: float = 1.0) -> None:
    while os.getppid() == parent_pid:
        time.sleep(interval)
    os._exit(1)


def _sweep_bar(total: int, enabled: bool):
    from probe.progress import progress_bar

    return progress_bar(total, "sweep", "runs", enabled=enabled)



# -- a planned sweep, trained one run at a time (job arrays) ---------------------------------------------------------
def write_sweep_plan(base: TrainConfig, out: str | Path, axes: dict[str, Sequence[Any]], *, budget: str = "fixed",
                     steps: int | None = None,
                     overwrite: bool = False) -> list[tuple[str, TrainConfig, dict[str, Any]]]:
    """Write ``<out>/sweep.json`` with every planned run and train nothing; return the plan.

    Each run ``i`` of the plan (``sweep.json``'s ``runs[i]``) is then trained by :func:`train_planned_run` (``probe
    sweep run OUT --index i``), in any order and in separate processes, or all together by ``probe sweep --resume``.
    """
    out = Path(out)
    plan = plan_sweep(base, axes, budget=budget, steps=steps)
    lock = DirectoryLock(out, "sweep")
    take_directory(out, lock, overwrite=overwrite, kind="sweep")
    try:
        record = sweep_record(base, out.name, axes, budget=budget, steps=steps, plan=plan)
        atomic_write_json(out / SWEEP_JSON, {**record, "created": now_iso()})
    finally:
        lock.release()
    return plan


def stored_plan(out: str | Path) -> list[tuple[str, TrainConfig, dict[str, Any]]]:
    """The plan of the sweep ``<out>/sweep.json`` describes (its plugins imported), checked against the run names
    it lists."""
    out = Path(out)
    stored = stored_sweep(out)
    plan = plan_sweep(stored["base"], stored["axes"], budget=stored["budget"], steps=stored["steps"])
    listed = [entry.get("name") for entry in read_json(out / SWEEP_JSON).get("runs", [])]
    if listed != [name for name, _, _ in plan]:
        raise RunDirectoryError(f"{out / SWEEP_JSON}: its runs do not match the plan its axes give")
    return plan


def train_planned_run(out: str | Path, index: int, *, progress: bool = False,
                      threads: int | None = None) -> tuple[str, str, dict[str, Any] | None]:
    """Train run ``index`` of the sweep planned in ``out`` (``sweep.json``'s ``runs[index]``); return ``(run_dir,
    status, diverged)``.

    A run not started is trained; one started before (interrupted, preempted, requeued) resumes from its last
    committed epoch, so the result is bit-identical to an uninterrupted run; a finished run (``complete`` or
    ``diverged``) is left as it is, with status ``already complete`` / ``already diverged``. The run's own writer lock
    refuses a second process training the same run meanwhile (a requeued job beside a stale one), and a process
    writing the whole sweep (``probe sweep``) refuses this one."""
    from probe.store.lock import is_locked
    from probe.store.reader import RUN_JSON, Run

    out = Path(out)
    if not (out / SWEEP_JSON).is_file():
        raise RunDirectoryError(f"{out}: no {SWEEP_JSON} (plan the sweep first with probe sweep ... --plan-only)")
    if isinstance(index, bool) or not isinstance(index, int):
        raise ProbeInputError(f"--index must be an integer, got {index!r}")
    plan = stored_plan(out)
    if not 0 <= index < len(plan):
        raise ProbeInputError(f"--index {index}: the sweep {out} plans {len(plan)} runs (indices 0 to "
                              f"{len(plan) - 1})")
    if is_locked(out):
        raise RunDirectoryError(f"{out}: another process is writing this sweep (probe sweep); run {index} is left "
                                "to it")
    name, cfg, _ = plan[index]
    run_dir = out / name
    if (run_dir / RUN_JSON).is_file():
        run = Run(run_dir)
        if run.status in ("complete", "diverged"):
            return str(run_dir), f"already {run.status}", run.diverged
    return _train_one((cfg, str(run_dir), True, progress, threads))
