"""Read-only access to run and sweep directories.

A :class:`Run` sees only the epochs listed in ``manifest.json``; every epoch file is checked against the manifest's
size and sha256 before its first read, so a truncated or altered file raises :class:`CorruptEpochError` instead of
being read silently. Reading is safe while the run's writer is still training.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from probe.errors import CorruptEpochError, ProbeInputError, RunDirectoryError
from probe.store.atomic import read_json, sha256_file
from probe.store.epoch_file import RECORD_FIELDS, read_fields, read_model_state, read_optimizer
from probe.store.lock import is_locked
from probe.store.schema import check_schema
from probe.store.writer import DIVERGED_JSON, MANIFEST_JSON, RUN_JSON

SWEEP_JSON = "sweep.json"


@dataclass
class Records:
    """Per-sample records of one split at one epoch (or of the minibatches SGD saw, with ``step``)."""

    index: np.ndarray
    y: np.ndarray
    a: np.ndarray
    group: np.ndarray
    is_bc: np.ndarray
    logits: np.ndarray
    loss: np.ndarray
    step: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.y)

    @property
    def pred(self) -> np.ndarray:
        return self.logits.argmax(axis=1)


class Dynamics:
    """One split across every committed epoch: ``logits`` (E, n, K) and ``loss`` (E, n), read on first access.

    Sample order is the split's own order, identical in every epoch (checked on load through ``index``).
    """

    def __init__(self, run: Run, split: str, epochs: list[int]):
        self.run = run
        self.split = split
        self.epochs = np.asarray(epochs, dtype=np.int64)
        self.steps = np.asarray([run.step_of(e) for e in epochs], dtype=np.int64)
        first = run.records(split, epochs[0]) if epochs else None
        if first is None:
            raise RunDirectoryError(f"{run.path}: no committed epochs yet")
        self.index, self.y, self.a, self.group, self.is_bc = first.index, first.y, first.a, first.group, first.is_bc

    def _stack(self, name: str) -> np.ndarray:
        out = []
        for e in self.epochs:
            rec = self.run.records(self.split, int(e))
            if not np.array_equal(rec.index, self.index):
                raise CorruptEpochError(f"{self.run.path}: epoch {e} of split {self.split!r} has another sample order")
            out.append(getattr(rec, name))
        return np.stack(out)

    @cached_property
    def logits(self) -> np.ndarray:
        return self._stack("logits")

    @cached_property
    def loss(self) -> np.ndarray:
        return self._stack("loss")


class Run:
    """A run directory written by ``probe train``.

    Example:
        >>> run = probe.open_run("checkpoints/lr0.1")            # doctest: +SKIP
        >>> run.epochs, run.config["lr"]                         # doctest: +SKIP
        >>> run.dynamics("test").logits.shape                    # (epochs, n_test, K)   # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not (self.path / RUN_JSON).is_file():
            raise RunDirectoryError(f"{self.path}: not a run directory (no {RUN_JSON})")
        self._verified: dict[int, tuple[int, float]] = {}
        info = self.info_json
        check_schema(info.get("schema_version"), str(self.path / RUN_JSON))

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, lr={self.lr}, epochs={len(self.epochs)}, status={self.status!r})"

    # -- metadata ------------------------------------------------------------------------------------------------
    @property
    def info_json(self) -> dict[str, Any]:
        """``run.json`` as it is now (re-read on each access; the writer updates it)."""
        return read_json(self.path / RUN_JSON)

    @cached_property
    def config(self) -> dict[str, Any]:
        return self.info_json["config"]

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def lr(self) -> float:
        return float(self.config["lr"])

    @property
    def seed(self) -> int:
        return int(self.config["seed"])

    @property
    def num_classes(self) -> int:
        return int(self.info_json["dataset"]["num_classes"])

    @property
    def num_attrs(self) -> int:
        return int(self.info_json["dataset"]["num_attrs"])

    @property
    def status(self) -> str:
        """``running``, ``complete``, ``diverged``, ``failed`` (an error stopped training; ``run.json``'s ``error``
        says which) or ``interrupted`` (stopped by the user, or a ``running`` run whose writer is gone)."""
        status = self.info_json.get("status", "unknown")
        if status == "running" and not is_locked(self.path):
            return "interrupted"
        return status

    @property
    def diverged(self) -> dict[str, Any] | None:
        """``diverged.json`` (step, epoch, loss, lr) or None."""
        path = self.path / DIVERGED_JSON
        return read_json(path) if path.is_file() else None

    @property
    def manifest(self) -> dict[str, Any]:
        path = self.path / MANIFEST_JSON
        if not path.is_file():
            raise RunDirectoryError(f"{self.path}: no {MANIFEST_JSON}")
        manifest = read_json(path)
        check_schema(manifest.get("schema_version"), str(path))
        return manifest

    @property
    def epochs(self) -> list[int]:
        """Committed epochs, in order (re-read from the manifest on each access)."""
        return [e["epoch"] for e in self.manifest["epochs"]]

    def _entry(self, epoch: int) -> dict[str, Any]:
        for e in self.manifest["epochs"]:
            if e["epoch"] == epoch:
                return e
        raise ProbeInputError(f"{self.path}: epoch {epoch} is not committed; committed epochs: {self.epochs}")

    def step_of(self, epoch: int) -> int:
        return int(self._entry(epoch)["global_step"])

    @property
    def splits(self) -> list[str]:
        return list(self.info_json.get("recorded_splits", []))

    # -- epoch files ---------------------------------------------------------------------------------------------
    def epoch_path(self, epoch: int) -> Path:
        return self.path / self._entry(epoch)["file"]

    def verify(self, epoch: int) -> Path:
        """Check epoch ``epoch``'s file against the manifest (size, then sha256); returns its path."""
        entry = self._entry(epoch)
        path = self.path / entry["file"]
        try:
            st = path.stat()
        except FileNotFoundError:
            raise CorruptEpochError(f"{path}: listed in the manifest but missing") from None
        if self._verified.get(epoch) == (st.st_size, st.st_mtime):
            return path
        if st.st_size != entry["size"]:
            raise CorruptEpochError(f"{path}: {st.st_size} bytes, the manifest says {entry['size']} (truncated?)")
        if sha256_file(path) != entry["sha256"]:
            raise CorruptEpochError(f"{path}: sha256 differs from the manifest (file altered)")
        self._verified[epoch] = (st.st_size, st.st_mtime)
        return path

    def open_epoch(self, epoch: int) -> h5py.File:
        """The verified epoch file, open read-only (close it, or use it as a context manager)."""
        f = h5py.File(self.verify(epoch), "r")
        check_schema(f.attrs.get("schema_version"), f"{self.path}/{self._entry(epoch)['file']}")
        return f

    def records(self, split: str, epoch: int) -> Records:
        with self.open_epoch(epoch) as f:
            if split not in f["records"]:
                raise ProbeInputError(f"{self.path}: split {split!r} not recorded; recorded: {list(f['records'])}")
            return Records(**read_fields(f["records"][split], RECORD_FIELDS))

    def sgd_records(self, epoch: int) -> Records:
        """Every sample of every minibatch SGD trained on during ``epoch`` (losses and logits as seen in training)."""
        with self.open_epoch(epoch) as f:
            if "sgd" not in f:
                empty = np.zeros(0)
                return Records(empty.astype(np.int64), empty.astype(np.int64), empty.astype(np.int64),
                               empty.astype(np.int64), empty.astype(bool),
                               np.zeros((0, self.num_classes), np.float32), empty.astype(np.float32),
                               empty.astype(np.int64))
            return Records(**read_fields(f["sgd"], (*RECORD_FIELDS, "step")))

    def dynamics(self, split: str, epochs: list[int] | None = None) -> Dynamics:
        return Dynamics(self, split, list(self.epochs if epochs is None else epochs))

    def state_dict(self, epoch: int) -> dict[str, torch.Tensor]:
        with self.open_epoch(epoch) as f:
            return read_model_state(f)

    def optimizer_state(self, epoch: int) -> dict[str, Any] | None:
        with self.open_epoch(epoch) as f:
            return read_optimizer(f["optimizer"]) if "optimizer" in f else None

    def rng_states(self, epoch: int) -> dict[str, torch.Tensor]:
        with self.open_epoch(epoch) as f:
            return {k: torch.from_numpy(np.asarray(v[()])) for k, v in f["rng"].items()}

    def epoch_attrs(self, epoch: int) -> dict[str, Any]:
        with self.open_epoch(epoch) as f:
            return {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}

    # -- rebuilding ----------------------------------------------------------------------------------------------
    def dataset(self):
        """The run's dataset, rebuilt from ``run.json`` (deterministic given the recorded options)."""
        from probe.data import build_dataset

        return build_dataset(self.config["dataset"], **self.config.get("dataset_options", {}))

    def build_model(self) -> torch.nn.Module:
        """A freshly initialised model of this run's architecture (no weights loaded)."""
        from probe.models import build_model

        ds = self.info_json["dataset"]
        return build_model(self.config["model"], tuple(ds["input_shape"]), int(ds["num_classes"]),
                           **self.config.get("model_options", {}))

    def model(self, epoch: int | None = None) -> torch.nn.Module:
        """The model with ``epoch``'s weights (default: the last committed epoch), in eval mode on the CPU."""
        epoch = self.epochs[-1] if epoch is None else epoch
        model = self.build_model()
        model.load_state_dict(self.state_dict(epoch))
        return model.eval()

    def summary(self) -> dict[str, Any]:
        """Config, status, epochs, sizes and divergence, for ``probe info``."""
        manifest = self.manifest
        cfg = self.config
        return {
            "name": self.name,
            "path": str(self.path),
            "status": self.status,
            "dataset": cfg["dataset"],
            "model": cfg["model"],
            "optimizer": cfg.get("optimizer"),
            "lr": cfg["lr"],
            "seed": cfg["seed"],
            "batch_size": cfg.get("batch_size"),
            "epochs_committed": len(manifest["epochs"]),
            "last_epoch": manifest["epochs"][-1]["epoch"] if manifest["epochs"] else None,
            "last_step": manifest["epochs"][-1]["global_step"] if manifest["epochs"] else None,
            "bytes": sum(e["size"] for e in manifest["epochs"]),
            "diverged": self.diverged,
        }


class Sweep:
    """A sweep directory: ``sweep.json`` plus one run directory per combination of its axes."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not (self.path / SWEEP_JSON).is_file():
            raise RunDirectoryError(f"{self.path}: not a sweep directory (no {SWEEP_JSON})")
        self.config = read_json(self.path / SWEEP_JSON)
        check_schema(self.config.get("schema_version"), str(self.path / SWEEP_JSON))

    def __repr__(self) -> str:
        return f"Sweep({str(self.path)!r}, runs={len(self.config['runs'])})"

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def axes(self) -> dict[str, list[Any]]:
        return self.config["axes"]

    @property
    def budget(self) -> str:
        return self.config.get("budget", "fixed")

    @property
    def runs(self) -> list[Run]:
        """Runs that have started (a run directory with ``run.json``), in ``sweep.json`` order."""
        out = []
        for entry in self.config["runs"]:
            path = self.path / entry["name"]
            if (path / RUN_JSON).is_file():
                out.append(Run(path))
        return out

    def run_entries(self) -> list[dict[str, Any]]:
        """``sweep.json``'s per-run entries (name and axis values), including runs not started yet."""
        return list(self.config["runs"])


def open_run(path: str | os.PathLike) -> Run:
    """Open a run directory for reading."""
    return Run(path)


def open_sweep(path: str | os.PathLike) -> Sweep:
    """Open a sweep directory for reading."""
    return Sweep(path)


def open_path(path: str | os.PathLike) -> Run | Sweep:
    """A :class:`Sweep` if ``path`` holds ``sweep.json``, a :class:`Run` if it holds ``run.json``."""
    p = Path(path)
    if (p / SWEEP_JSON).is_file():
        return Sweep(p)
    if (p / RUN_JSON).is_file():
        return Run(p)
    if not p.exists():
        raise RunDirectoryError(f"{p}: no such directory")
    raise RunDirectoryError(f"{p}: neither a run directory (run.json) nor a sweep directory (sweep.json)")
