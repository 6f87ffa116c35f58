"""Training: configuration, trainer loop, schedules, sweeps."""

from probe.train.config import TrainConfig
from probe.train.sweep import plan_sweep, run_sweep
from probe.train.trainer import EXIT_DIVERGED, Trainer, TrainResult, train

__all__ = ["EXIT_DIVERGED", "TrainConfig", "TrainResult", "Trainer", "plan_sweep", "run_sweep", "train"]
