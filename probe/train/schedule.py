"""Learning-rate schedules (pure functions of the global step, so resuming needs no scheduler state) and the
schedule of recorded data passes."""

from __future__ import annotations

import bisect
import math

import numpy as np

from probe.train.config import TrainConfig, parse_record


def lr_at(step: int, total_steps: int, cfg: TrainConfig) -> float:
    """Learning rate for optimiser step ``step`` (0-based) of ``total_steps``.

    warm-up: ``lr * (step + 1) / warmup_steps`` for ``step < warmup_steps``; then
    constant ``lr``; cosine ``lr * (1 + cos(pi * t)) / 2`` with ``t`` the fraction of post-warm-up steps done;
    step ``lr * gamma ** (number of milestones passed)``.
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    span = max(total_steps - cfg.warmup_steps, 1)
    t = (step - cfg.warmup_steps) / span
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * t))
    passed = bisect.bisect_right(sorted(cfg.milestones), t)
    return cfg.lr * cfg.gamma**passed


def recorded_epochs(num_epochs: int, record: str) -> list[int]:
    """Data passes whose end is written to disk: 0 (before training), the last, and those the ``record`` schedule
    names (``TrainConfig.record_steps`` add records inside passes; then the store numbers recorded points instead)."""
    kind, k = parse_record(record)
    if kind == "all":
        chosen = set(range(num_epochs + 1))
    elif kind == "every":
        chosen = set(range(0, num_epochs + 1, k))
    else:
        chosen = {int(round(v)) for v in np.geomspace(1, max(num_epochs, 1), num=k)}
    return sorted(chosen | {0, num_epochs})
