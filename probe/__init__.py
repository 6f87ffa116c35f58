"""probe: learning-rate sweeps kept epoch by epoch, and analyses of spurious-feature reliance and compressibility."""

__version__ = "0.1.0"

from probe.store.reader import Run, Sweep, open_run, open_sweep  # noqa: E402

__all__ = ["Run", "Sweep", "__version__", "open_run", "open_sweep"]
