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

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING

from probe.lazy import lazy_attributes

if TYPE_CHECKING:
    from probe.train.config import TrainConfig
    from probe.train.sweep import plan_sweep, run_sweep
    from probe.train.trainer import EXIT_DIVERGED, Trainer, TrainResult, train

#: public name -> defining module, imported on first access (importing a light submodule such as
#: ``probe.train.cluster`` for its declarations loads no torch)
_PUBLIC = {"TrainConfig": "probe.train.config", "plan_sweep": "probe.train.sweep", "run_sweep": "probe.train.sweep",
           "EXIT_DIVERGED": "probe.train.trainer", "Trainer": "probe.train.trainer",
           "TrainResult": "probe.train.trainer", "train": "probe.train.trainer"}
__all__ = ["EXIT_DIVERGED", "TrainConfig", "TrainResult", "Trainer", "plan_sweep", "run_sweep", "train"]
__getattr__ = lazy_attributes(__name__, _PUBLIC)


class _CallablePackage(types.ModuleType):
    """This package's type: calling it calls :func:`train`."""

    def __call__(self, *args, **kwargs) -> TrainResult:
        from probe.train.trainer import train

        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
