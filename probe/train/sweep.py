"""Learning-rate sweeps: one run directory per combination of the swept axes, plus ``sweep.json``.

With ``budget="matched"`` every rate trains for ``round(max(lrs) * steps / lr)`` steps, so that ``lr x steps`` is the
same for every run (the matched-budget control of SPEC section 5).
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from probe.errors import ProbeInputError, RunDirectoryError
from probe.store.atomic import atomic_write_json, read_json
from probe.store.reader import SWEEP_JSON
from probe.store.schema import SCHEMA_VERSION
from probe.store.writer import check_new_run_dir, now_iso
from probe.train.config import TrainConfig
from probe.train.trainer import TrainResult, train

#: Swept axis name -> TrainConfig field.
AXES = {"lr": "lr", "seed": "seed", "batch_size": "batch_size", "momentum": "momentum",
        "weight_decay": "weight_decay"}
_SHORT = {"lr": "lr", "seed": "seed", "batch_size": "bs", "momentum": "mom", "weight_decay": "wd"}


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def plan_sweep(base: TrainConfig, axes: dict[str, Sequence[Any]], *, budget: str = "fixed",
               steps: int | None = None) -> list[tuple[str, TrainConfig, dict[str, Any]]]:
    """The runs of a sweep: ``(name, config, axis values)`` for every combination of ``axes``."""
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


def _train_one(args: tuple[TrainConfig, str, bool, bool, int | None]) -> tuple[str, str, dict[str, Any] | None]:
    cfg, out, resume, progress, threads = args
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    if resume and (Path(out) / "run.json").is_file():
        result = train(cfg, out, resume=True, progress=progress)
    else:
        result = train(cfg, out, overwrite=resume, progress=progress)
    return out, result.status, result.diverged


def run_sweep(base: TrainConfig, out: str | Path, axes: dict[str, Sequence[Any]], *, budget: str = "fixed",
              steps: int | None = None, jobs: int = 1, resume: bool = False, overwrite: bool = False,
              progress: bool = False, threads: int | None = None) -> list[tuple[str, str, dict[str, Any] | None]]:
    """Train every run of the sweep into ``out``; a diverged run does not stop the others.

    Returns ``(run_dir, status, diverged)`` per run. ``jobs > 1`` trains that many runs at once in separate processes;
    ``threads`` sets torch's CPU threads in each of them.
    """
    out = Path(out)
    plan = plan_sweep(base, axes, budget=budget, steps=steps)
    if jobs < 1:
        raise ProbeInputError(f"--jobs must be >= 1, got {jobs}")
    if resume:
        if not (out / SWEEP_JSON).is_file():
            raise RunDirectoryError(f"{out}: no sweep.json to resume")
        stored = read_json(out / SWEEP_JSON)
        if [r["name"] for r in stored["runs"]] != [name for name, _, _ in plan]:
            raise ProbeInputError(f"{out}: the sweep asked for differs from the one in sweep.json; resume it as it was")
    else:
        check_new_run_dir(out, overwrite=overwrite)
        if overwrite and out.exists():
            import shutil

            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / SWEEP_JSON, {
            "schema_version": SCHEMA_VERSION,
            "name": out.name,
            "created": now_iso(),
            "axes": {k: list(v) for k, v in axes.items()},
            "budget": budget,
            "budget_steps": steps,
            "base_config": base.to_json(),
            "runs": [{"name": name, **values, "steps": cfg.steps, "epochs": cfg.epochs} for name, cfg, values in plan],
        })
    tasks = [(cfg, str(out / name), resume, progress and jobs == 1, threads) for name, cfg, _ in plan]
    results: list[tuple[str, str, dict[str, Any] | None]] = []
    bar = _sweep_bar(len(tasks), progress)
    if jobs == 1:
        for task in tasks:
            results.append(_train_one(task))
            bar.update(1)
    else:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
            for res in pool.map(_train_one, tasks):
                results.append(res)
                bar.update(1)
    bar.close()
    return results


def _sweep_bar(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="sweep", unit="run", disable=None if enabled else True, dynamic_ncols=True)


def train_result_line(result: TrainResult) -> str:
    return f"{result.run_dir}: {result.status} after {result.global_step} steps"
