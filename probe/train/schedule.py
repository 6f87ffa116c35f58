"""Learning-rate schedules (pure functions of the global step, so resuming needs no scheduler state) and the
schedule of recorded data passes."""

from __future__ import annotations

import bisect
import math

import numpy as np

from probe.train.config import TrainConfig, parse_keep_weights, parse_record


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


def weight_epochs(final_epoch: int, keep_weights: str) -> set[int]:
    """Committed epoch numbers (``0..final_epoch``) whose file keeps the model's weights under the ``keep_weights``
    schedule: every one for ``all``; none for ``none``; else :func:`recorded_epochs` of the schedule over the epoch
    numbers (multiples of K, or about N log-spaced numbers; 0 and ``final_epoch`` always)."""
    kind, _ = parse_keep_weights(keep_weights)
    if kind == "none":
        return set()
    return set(recorded_epochs(final_epoch, keep_weights))


def final_epoch_number(num_passes: int, steps_per_pass: int, total_steps: int, record: str,
                       record_steps: tuple[int, ...]) -> int:
    """The number of the last epoch a run commits: its last data pass, or with ``record_steps`` the number of
    recorded points (pass ends of the ``record`` schedule and recorded steps, each step counted once)."""
    passes = recorded_epochs(num_passes, record)
    if not record_steps:
        return num_passes
    points = {min(p * steps_per_pass, total_steps) for p in passes if p > 0} | set(record_steps)
    return len(points)
