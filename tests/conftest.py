"""Shared fixtures: tiny runs trained once per test session (seconds on 2 CPU cores)."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from probe.train import TrainConfig, run_sweep, train

REPO = Path(__file__).resolve().parents[1]

#: Environment variables that cap the CPU threads of torch (OpenMP) and numpy's BLAS in the processes tests start.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _xdist_worker() -> bool:
    return bool(os.environ.get("PYTEST_XDIST_WORKER"))


def pytest_configure(config):
    """In pytest-xdist's controller: the test files go to the workers in the order of
    :func:`pytest_collection_modifyitems` (xdist would otherwise hand out the files with the most tests first, and the
    longest tests, alone in their files, would start last). In a worker: one CPU thread for torch and BLAS, here and
    (through the environment) in the processes the tests start, unless the environment already says otherwise. The
    workers share the cores: each at several threads oversubscribes them, and small tensors run several times slower
    (their threads wait on each other)."""
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False
    if not _xdist_worker():
        return
    for name in THREAD_VARIABLES:
        os.environ.setdefault(name, "1")
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn's dependency; without it numpy's BLAS keeps its threads
        return
    threadpool_limits(int(os.environ["OPENBLAS_NUM_THREADS"]))


#: ``probe train`` / ``probe sweep`` arguments of a tiny parity run (MLP width 16, 128 training samples).
PARITY_ARGS = ["--dataset", "parity", "--data-option", "n_train=128", "--data-option", "n_val=32",
               "--data-option", "n_test=32", "--model", "mlp", "--model-option", "width=16", "--quiet"]


def tiny_parity_config(**overrides) -> TrainConfig:
    base = dict(dataset="parity", dataset_options={"n_train": 256, "n_val": 128, "n_test": 128, "dim": 12},
                model="mlp", model_options={"width": 32}, lr=0.1, epochs=3, batch_size=32, seed=0)
    base.update(overrides)
    return TrainConfig(**base)


@pytest.fixture(scope="session")
def tiny_parity_run(tmp_path_factory) -> Path:
    """A complete parity run directory: MLP width 32, 3 epochs (epochs 0..3 recorded)."""
    out = tmp_path_factory.mktemp("runs") / "parity_lr0.1"
    train(tiny_parity_config(), out)
    return out


@pytest.fixture(scope="session")
def tiny_colored_sweep(tmp_path_factory) -> Path:
    """A colored-mnist MLP sweep (960 training samples, 400 digits per evaluation split) over lr {0.01, 0.3}, seeds
    {0, 1}, 2 epochs each, recorded at the pass ends only (no early fractions: its epochs 0, 1, 2 are data passes)."""
    out = tmp_path_factory.mktemp("sweeps") / "colored"
    base = TrainConfig(dataset="colored-mnist", dataset_options={"n_train": 960, "max_eval_digits": 400},
                       model="mlp", model_options={"width": 64}, lr=0.01, epochs=2, batch_size=64, early_fractions=())
    run_sweep(base, out, {"lr": [0.01, 0.3], "seed": [0, 1]})
    return out


@pytest.fixture(autouse=True)
def _worker_torch_threads():
    """In a pytest-xdist worker, torch's threads back to the worker's setting after each test (some tests, like the
    command line's ``--threads``, set them and leave them)."""
    yield
    torch = sys.modules.get("torch")
    if _xdist_worker() and torch is not None:
        threads = int(os.environ["OMP_NUM_THREADS"])
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


@contextmanager
def torch_threads(n: int):
    """torch's CPU threads set to ``n`` inside the block, restored after it."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def run_cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m probe.cli ARGS`` in a fresh process."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "probe.cli", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=REPO)


def pytest_collection_modifyitems(config, items):
    """The files with the longest tests first, the others in their order: with several workers (pytest-xdist's
    ``--dist loadfile`` hands out one file at a time, in this order) the long files start early and the workers end
    together. A test's expected length is its ``slow`` marker's ``seconds`` (``@pytest.mark.slow(seconds=80)``; 5 when
    not given, 0 without the marker)."""
    def seconds(item) -> float:
        marker = item.get_closest_marker("slow")
        return 0.0 if marker is None else float(marker.kwargs.get("seconds", 5))

    longest: dict = {}
    for item in items:
        longest[item.path] = max(longest.get(item.path, 0.0), seconds(item))
    items.sort(key=lambda item: -longest[item.path])  # stable: a file's tests stay together and in order
