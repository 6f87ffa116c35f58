"""Training: configuration, trainer loop, schedules, sweeps.

The package is callable: ``probe.train(cfg, out)`` is :func:`probe.train.train` (``import probe`` gives it as
``probe.train``, which is also this package's name).

Example:
    >>> import probe
    >>> cfg = probe.TrainConfig(dataset="parity", model="mlp", lr=0.1, epochs=3)
    >>> result = probe.train(cfg, "checkpoints/parity_lr0.1")                        # doctest: +SKIP
    >>> result.status                                                                # doctest: +SKIP
    'complete'
"""

import sys
import types

from probe.train.config import TrainConfig
from probe.train.sweep import plan_sweep, run_sweep
from probe.train.trainer import EXIT_DIVERGED, Trainer, TrainResult, train

__all__ = ["EXIT_DIVERGED", "TrainConfig", "TrainResult", "Trainer", "plan_sweep", "run_sweep", "train"]


class _CallablePackage(types.ModuleType):
    """This package's type: calling it calls :func:`train`."""

    def __call__(self, *args, **kwargs) -> TrainResult:
        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
