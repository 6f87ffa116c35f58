"""The run table's row of each run: who it is (run, sweep, lr, seed, budget), how it ended (``status``) and, for a
run that cannot be read, which file is damaged and why.

``status`` is ``ok``, ``diverged`` (a non-finite loss; ``diverged.json``), ``collapsed`` (final training accuracy
below 1.5x chance, :func:`probe.analyses.claims.classify_run`), ``incomplete`` (still running, interrupted or
failed), ``empty`` (nothing committed) or ``damaged`` (a file fails its checks); only ``ok`` runs enter the claims.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from probe.analyses.engine.plan import RunPlan, Source
from probe.errors import ProbeError
from probe.store.reader import Run


def identity(source: Source, name: str, lr: Any, seed: Any, many: bool) -> dict[str, Any]:
    """The identity columns of a run's rows: ``run`` (``<sweep>/<run>`` with several sources), sweep, lr, seed,
    budget."""
    return {"run": f"{source.label}/{name}" if many else name, "sweep": source.label, "lr": _number(lr, float),
            "seed": _number(seed, int), "budget": source.budget}


def _number(value: Any, kind: type) -> Any:
    try:
        return kind(value)
    except (TypeError, ValueError):
        return np.nan


def run_identity(source: Source, run: Run, many: bool) -> dict[str, Any]:
    try:
        config = run.config
    except Exception:  # noqa: BLE001 - a damaged run.json still gets a row
        config = {}
    return identity(source, run.name, config.get("lr"), config.get("seed"), many)


def run_row(plan: RunPlan, ident: dict[str, Any]) -> dict[str, Any]:
    """The run table row of an analysed run: configuration, status, final training accuracy, early and final
    epochs, the distance budget ``lr x steps`` and the early epoch's distance ``lr x early_step``."""
    run, committed, steps = plan.run, plan.committed, plan.steps
    early_step = dict(zip(committed, steps)).get(plan.early, np.nan) if plan.early is not None else np.nan
    status, final_acc = classify_run_status(run, committed)
    cfg = run.config
    div = run.diverged or {}
    return {
        **ident,
        "batch_size": cfg.get("batch_size"), "momentum": cfg.get("momentum"),
        "weight_decay": cfg.get("weight_decay"), "steps": plan.total_steps, "epochs_recorded": len(committed),
        "train_status": run.status, "status": status, "final_train_acc": final_acc,
        "diverged_epoch": div.get("epoch", np.nan), "diverged_step": div.get("step", np.nan),
        "early_epoch": plan.early if plan.early is not None else np.nan,
        "early_step": early_step,
        "final_epoch": committed[-1] if committed else np.nan,
        "final_step": steps[-1] if steps else np.nan,
        "damaged_file": None, "damage_reason": None,
        "distance_budget": plan.distance_budget, "early_distance": run.lr * early_step,
    }


def damaged_row(ident: dict[str, Any], error: Exception, run_dir: Path, file: Path | None = None) -> dict[str, Any]:
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


def final_train_acc(run: Run, epoch: int) -> float | None:
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


def classify_run_status(run: Run, committed: list[int]) -> tuple[str, float]:
    from probe.analyses.claims import classify_run

    if not committed:
        return "empty", float("nan")
    measured = final_train_acc(run, committed[-1])
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
