"""probe: learning-rate sweeps kept epoch by epoch, and analyses of spurious-feature reliance and compressibility.

The public API, loaded on first use (``import probe`` itself imports nothing heavy):

- :class:`TrainConfig`, :func:`train` (one run), :func:`sweep` (one run per combination of the swept axes);
- :func:`open_run`, :func:`open_sweep` (read run and sweep directories: :class:`Run`, :class:`Sweep`);
- :func:`analyze` (measure a run or sweep), :func:`load_analysis` (read an analysis folder back);
- :func:`register_dataset`, :func:`register_model` (datasets and models of your own, ``docs/plugins.md``).

Example:
    >>> import probe
    >>> cfg = probe.TrainConfig(dataset="parity", model="mlp", lr=0.1, epochs=3)
    >>> result = probe.train(cfg, "checkpoints/parity_lr0.1")                        # doctest: +SKIP
    >>> run = probe.open_run("checkpoints/parity_lr0.1")                             # doctest: +SKIP
    >>> run.dynamics("test").logits.shape            # (epochs, n_test, K)           # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from probe.lazy import lazy_attributes

#: The package version (setup.cfg reads it from here).
__version__ = "0.4.0"

#: public name -> (module, attribute in it); resolved on first access by :func:`__getattr__`.
_LAZY: dict[str, tuple[str, str]] = {
    "TrainConfig": ("probe.train.config", "TrainConfig"),
    "sweep": ("probe.train.sweep", "run_sweep"),
    "open_run": ("probe.store.reader", "open_run"),
    "open_sweep": ("probe.store.reader", "open_sweep"),
    "Run": ("probe.store.reader", "Run"),
    "Sweep": ("probe.store.reader", "Sweep"),
    "analyze": ("probe.analyses.engine.engine", "analyze"),
    "load_analysis": ("probe.analyses.engine.result", "load_analysis"),  # without torch: reading tables back is instant
    "register_dataset": ("probe.data.registry", "register_dataset"),
    "register_model": ("probe.models", "register_model"),
}

__all__ = ["Run", "Sweep", "TrainConfig", "__version__", "analyze", "load_analysis", "open_run", "open_sweep",
           "register_dataset", "register_model", "sweep", "train"]

if TYPE_CHECKING:  # what the lazy names are, for type checkers and editors
    from probe.analyses.engine.engine import analyze
    from probe.analyses.engine.result import load_analysis
    from probe.data.registry import register_dataset
    from probe.models import register_model
    from probe.store.reader import Run, Sweep, open_run, open_sweep
    from probe.train.config import TrainConfig
    from probe.train.sweep import run_sweep as sweep


_load = lazy_attributes(__name__, _LAZY)


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access (``probe.train`` is the training package, which is callable:
    ``probe.train(cfg, out)`` is :func:`probe.train.train`)."""
    if name == "train":
        return importlib.import_module("probe.train")
    return _load(name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
