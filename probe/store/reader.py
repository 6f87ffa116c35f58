"""Read-only access to run and sweep directories.

A :class:`Run` sees only the epochs listed in ``manifest.json``. Every read of an epoch file reads the whole file once,
checks its size and sha256 against the manifest, and opens those very bytes in memory through
:mod:`probe.store.safe_h5` (no links, external storage or declared sizes the file cannot hold); records are checked
against ``run.json`` (lengths, dtypes, logit width). A truncated, altered or hostile file raises
:class:`~probe.errors.DamagedFileError` (:class:`~probe.errors.CorruptEpochError` for a size or hash mismatch) instead
of being read silently. ``run.json`` and ``manifest.json`` are validated on every read. Reading is safe while the
run's writer is still training.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from probe.errors import CorruptEpochError, DamagedFileError, ProbeError, ProbeInputError, RunDirectoryError
from probe.plugins import import_plugins, is_module_name
from probe.store.atomic import read_json
from probe.store.epoch_file import (
    LABEL_FIELDS,
    read_logit_summary,
    read_model_state,
    read_optimizer,
    read_records,
    require_group,
)
from probe.store.lock import is_locked
from probe.store.logit_records import LogitSummary
from probe.store.metadata import check_diverged, check_manifest, check_run_info, check_sweep_config
from probe.store.safe_h5 import damaged_as, open_image, read_verified
from probe.store.schema import check_schema, schema_major
from probe.store.writer import DIVERGED_JSON, MANIFEST_JSON, RUN_JSON

SWEEP_JSON = "sweep.json"


@dataclass
class Records:
    """Per-sample records of one split at one epoch (or of the minibatches SGD saw, with ``step``).

    ``logits`` is ``(n, K)``, or None for a run recorded with ``record_logits topk:K``: then ``summary`` holds the
    top-k summary (:class:`~probe.store.logit_records.LogitSummary`) and ``full_positions`` / ``full_logits`` the
    full logits of a fixed subset (:meth:`with_full_logits`). ``scores`` is whichever of the two the record-level
    metrics take.
    """

    index: np.ndarray
    y: np.ndarray
    a: np.ndarray
    group: np.ndarray
    is_bc: np.ndarray
    logits: np.ndarray | None
    loss: np.ndarray
    step: np.ndarray | None = None
    summary: LogitSummary | None = None
    full_positions: np.ndarray | None = None
    full_logits: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.y)

    @property
    def pred(self) -> np.ndarray:
        """``argmax_k z_k`` per sample."""
        if self.summary is not None:
            return self.summary.pred
        return self.logits.argmax(axis=1)

    @property
    def scores(self) -> np.ndarray | LogitSummary:
        """The full ``(n, K)`` logits, or the top-k summary where the run kept only that: what
        :func:`probe.analyses.logits.margins`, ``max_softmax``, ``logit_metrics`` and ``cmr`` accept."""
        return self.summary if self.summary is not None else self.logits

    def with_full_logits(self) -> Records:
        """These records where every logit is kept: all of them, or for a ``topk`` run the fixed subset with full
        logits (``full_positions``; :func:`~probe.store.logit_records.full_logits_subset`). Raises
        :class:`~probe.errors.ProbeInputError` when the records kept no full logits at all."""
        if self.logits is not None:
            return self
        if self.full_positions is None or self.full_logits is None:
            raise ProbeInputError("these records keep top-k logit summaries and no subset with full logits")
        p = self.full_positions
        return Records(self.index[p], self.y[p], self.a[p], self.group[p], self.is_bc[p], self.full_logits,
                       self.loss[p], None if self.step is None else self.step[p])


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
        self._first: Records | None = first

    @cached_property
    def _stacked(self) -> tuple[np.ndarray, np.ndarray]:
        """Logits and losses of every epoch, each epoch file read once."""
        logits, loss = [], []
        for e in self.epochs:
            first = self._first if e == self.epochs[0] else None
            rec = first if first is not None else self.run.records(self.split, int(e))
            if not np.array_equal(rec.index, self.index):
                raise CorruptEpochError(f"{self.run.path}: epoch {e} of split {self.split!r} has another sample order")
            if rec.logits is None:
                raise ProbeInputError(f"{self.run.path}: split {self.split!r} keeps top-k logit summaries "
                                      "(record_logits), not full logits; read run.records(split, epoch).scores")
            logits.append(rec.logits)
            loss.append(rec.loss)
        self._first = None
        return np.stack(logits), np.stack(loss)

    @property
    def logits(self) -> np.ndarray:
        return self._stacked[0]

    @property
    def loss(self) -> np.ndarray:
        return self._stacked[1]


@dataclass
class ResumeState:
    """The state training resumes from: the last committed ``epoch``'s ``model_state``, ``optimizer_state`` and
    ``rng`` (generator name -> uint8 state)."""

    epoch: int
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any]
    rng: dict[str, torch.Tensor]


def _optimizer(f: h5py.File, path: Path) -> dict[str, Any]:
    return read_optimizer(require_group(f, "optimizer", f"{path}: /optimizer"), f"{path}: /optimizer")


def _rng(f: h5py.File, path: Path) -> dict[str, torch.Tensor]:
    rng = require_group(f, "rng", f"{path}: /rng")
    out = {}
    for name, ds in rng.items():
        if not isinstance(ds, h5py.Dataset) or ds.dtype != np.uint8 or ds.ndim != 1:
            raise DamagedFileError(f"{path}: /rng/{name}: not a 1-d uint8 generator state")
        out[name] = torch.from_numpy(np.asarray(ds[()]))
    missing = [name for name in ("shuffle", "torch_cpu") if name not in out]
    if missing:
        raise DamagedFileError(f"{path}: /rng/{missing[0]} missing")
    return out


def _epoch_list(epochs: list[int], limit: int = 12) -> str:
    text = ", ".join(str(e) for e in epochs[:limit])
    return (text + f", ... ({len(epochs)} in all)") if len(epochs) > limit else (text or "none")


@dataclass
class _OpenEpoch:
    """An epoch file being read: the open file, its path, and ``run.json`` as read with it."""

    file: h5py.File
    path: Path
    info: dict[str, Any]


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
        self._checked_digests: set[str] = set()  # contents whose safety walk passed (see _open)
        self.info_json  # noqa: B018 - validates run.json now, so a damaged run fails to open

    def __repr__(self) -> str:
        try:
            return f"Run({str(self.path)!r}, lr={self.lr}, epochs={len(self.epochs)}, status={self.status!r})"
        except (ProbeInputError, OSError):
            return f"Run({str(self.path)!r}, damaged)"

    # -- metadata ------------------------------------------------------------------------------------------------
    @property
    def info_json(self) -> dict[str, Any]:
        """``run.json`` as it is now (re-read and validated on each access; the writer updates it)."""
        path = self.path / RUN_JSON
        return check_run_info(read_json(path), path)

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
        says which), ``interrupted`` (stopped by the user, or a ``running`` run whose writer is gone) or ``imported``
        (built by ``probe import`` from checkpoints trained elsewhere)."""
        status = self.info_json.get("status", "unknown")
        if status == "running" and not is_locked(self.path):
            return "interrupted"
        return status

    @property
    def diverged(self) -> dict[str, Any] | None:
        """``diverged.json`` (step, epoch, loss, lr) or None."""
        path = self.path / DIVERGED_JSON
        return check_diverged(read_json(path), path) if path.is_file() else None

    @property
    def manifest(self) -> dict[str, Any]:
        path = self.path / MANIFEST_JSON
        if not path.is_file():
            raise RunDirectoryError(f"{self.path}: no {MANIFEST_JSON}")
        return check_manifest(read_json(path), path)

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

    def data_pass_of(self, epoch: int) -> tuple[int, bool]:
        """``(data_pass, pass_complete)`` of committed epoch ``epoch``: the pass over the training data it was
        recorded in (0 before training) and whether it is that pass's end. Runs written before records inside a pass
        existed (no ``data_pass`` in the manifest) recorded only pass ends, numbered by pass: ``(epoch, True)``."""
        entry = self._entry(epoch)
        if "data_pass" not in entry:
            return epoch, True
        return int(entry["data_pass"]), bool(entry["pass_complete"])

    @property
    def planned_steps(self) -> int | None:
        """The run's planned optimiser steps (``run.json``'s ``plan.total_steps``); None for runs written before it
        was stored."""
        plan = self.info_json.get("plan")
        total = plan.get("total_steps") if isinstance(plan, dict) else None
        return int(total) if isinstance(total, int) and not isinstance(total, bool) and total >= 0 else None

    @property
    def distance_budget(self) -> float | None:
        """The distance budget ``lr x steps`` that early training is measured in (``run.json``'s
        ``plan.distance_budget``: the sweep's common budget, or the run's own ``lr x total steps``); None for runs
        written before it was stored."""
        plan = self.info_json.get("plan")
        budget = plan.get("distance_budget") if isinstance(plan, dict) else None
        ok = isinstance(budget, (int, float)) and not isinstance(budget, bool) and np.isfinite(budget) and budget > 0
        return float(budget) if ok else None

    @property
    def splits(self) -> list[str]:
        return self._splits(self.info_json)

    # -- epoch files ---------------------------------------------------------------------------------------------
    def epoch_path(self, epoch: int) -> Path:
        return self.path / self._entry(epoch)["file"]

    def verify_bytes(self, epoch: int) -> Path:
        """Re-hash epoch ``epoch``'s file against the manifest's size and sha256 (on every call) without parsing it,
        and return its path: what a cache of results computed from that file needs before it answers for it (every
        read checks the same, and :meth:`verify` checks the contents too). Raises :class:`CorruptEpochError`."""
        entry = self._entry(epoch)
        path = self.path / entry["file"]
        read_verified(path, entry["size"], entry["sha256"])
        return path

    def verify(self, epoch: int) -> Path:
        """Check epoch ``epoch`` completely and return its path: re-hash the file against the manifest (on every call),
        open it safely, and check its attributes, model state, optimizer state and every group of records against
        ``run.json``.

        Raises :class:`DamagedFileError` (:class:`CorruptEpochError` for size or hash) naming the file and the reason.
        """
        with self._reading(epoch) as ep:
            records = require_group(ep.file, "records", f"{ep.path}: /records")
            for split in self._splits(ep.info):
                if split not in records:
                    raise DamagedFileError(f"{ep.path}: /records/{split} missing; run.json lists it")
            for split in records:
                self._read_records(ep, f"records/{split}")
            if "sgd" in ep.file or epoch > 0:
                self._read_records(ep, "sgd", with_step=True)
            if self.has_weights(epoch):
                read_model_state(ep.file, f"{ep.path}: /model")
            if schema_major(ep.file.attrs["schema_version"]) == 1:  # schema 1 files hold the resume state too
                read_optimizer(require_group(ep.file, "optimizer", f"{ep.path}: /optimizer"),
                               f"{ep.path}: /optimizer")
                require_group(ep.file, "rng", f"{ep.path}: /rng")
        if self.manifest.get("resume", {}).get("epoch") == epoch:
            self.resume_state()
        return self.path / self._entry(epoch)["file"]

    def open_epoch(self, epoch: int) -> h5py.File:
        """Epoch ``epoch``'s file, verified against the manifest (every call) and checked by
        :func:`~probe.store.safe_h5.open_image`, open read-only in memory (close it, or use it as a context manager)."""
        return self._open(self._entry(epoch))

    def _open(self, entry: dict[str, Any]) -> h5py.File:
        path = self.path / entry["file"]
        data = read_verified(path, entry["size"], entry["sha256"])
        # the safety walk is a function of the bytes, which were just hashed: walk each distinct content once
        f = open_image(data, path, check=entry["sha256"] not in self._checked_digests)
        try:
            with damaged_as(path):
                check_schema(_attr(f, "schema_version", path), str(path))
                for key in ("epoch", "global_step"):
                    stored = _attr(f, key, path)
                    if not isinstance(stored, (int, np.integer)) or int(stored) != entry[key]:
                        raise DamagedFileError(f"{path}: root attribute {key} is {stored!r}, the manifest says "
                                               f"{entry[key]}")
        except BaseException:
            f.close()
            raise
        self._checked_digests.add(entry["sha256"])
        return f

    @contextmanager
    def _reading(self, epoch: int) -> Iterator[_OpenEpoch]:
        """The verified epoch file with the ``run.json`` it is checked against; HDF5 errors met while reading become
        :class:`DamagedFileError`. Inside :meth:`reading_epoch` of the same epoch, the session's verified file."""
        session = getattr(self, "_session", None)
        if session is not None and session[0] == epoch:
            with damaged_as(session[1].path):
                yield session[1]
            return
        entry = self._entry(epoch)
        path = self.path / entry["file"]
        with self._open(entry) as f, damaged_as(path):
            yield _OpenEpoch(f, path, self.info_json)

    @contextmanager
    def reading_epoch(self, epoch: int) -> Iterator[None]:
        """Read ``epoch`` once for many reads: inside the block, :meth:`records`, :meth:`sgd_records`,
        :meth:`state_dict` ... of this epoch use one file verified against the manifest when the block starts
        (hashed, walked and opened from the hashed bytes in memory, so it cannot change while it is read) and one
        ``run.json``, instead of verifying the file again for each read. Other epochs are read as usual.

        Example:
            >>> with run.reading_epoch(3):                                         # doctest: +SKIP
            ...     train, test = run.records("train", 3), run.records("test", 3)
        """
        entry = self._entry(epoch)
        path = self.path / entry["file"]
        previous = getattr(self, "_session", None)
        with self._open(entry) as f:  # errors of the caller's code pass through as they are
            with damaged_as(path):
                info = self.info_json
            self._session = (epoch, _OpenEpoch(f, path, info))
            try:
                yield
            finally:
                self._session = previous

    def _read_records(self, ep: _OpenEpoch, group: str, *, with_step: bool = False) -> Records:
        """The records of ``group``, with full logits or (``record_logits topk:K``) the top-k summary: whichever
        the group holds, checked against ``run.json``."""
        dataset, config = ep.info["dataset"], ep.info["config"]
        num_classes = dataset["num_classes"]
        widths = (num_classes,)
        if group == "sgd" and not config.get("sgd_logits", True):
            widths = (0,)
        where = f"{ep.path}: /{group}"
        g = ep.file.get(group)
        if not isinstance(g, h5py.Group):
            raise DamagedFileError(f"{where}: {'missing' if g is None else 'not a group'}")
        names = (*LABEL_FIELDS, "step") if with_step else LABEL_FIELDS
        summarized = "logits" not in g and "logit_top" in g and widths != (0,)
        if not summarized:
            names = (*names[:5], "logits", *names[5:])
        arrays = read_records(g, names, num_classes=num_classes, num_attrs=dataset["num_attrs"],
                              logits_widths=widths, where=where)
        if not summarized:
            return Records(**arrays)
        fields = read_logit_summary(g, len(arrays["y"]), num_classes=num_classes, where=where)
        summary = LogitSummary(fields["logit_true"], fields["logit_top"], fields["logit_top_class"],
                               fields["logit_lse"], fields["logit_norm"], num_classes)
        return Records(**arrays, logits=None, summary=summary, full_positions=fields.get("full_positions"),
                       full_logits=fields.get("full_logits"))

    @staticmethod
    def _splits(info: dict[str, Any]) -> list[str]:
        return list(info.get("recorded_splits", []))

    def records(self, split: str, epoch: int) -> Records:
        with self._reading(epoch) as ep:
            records = require_group(ep.file, "records", f"{ep.path}: /records")
            if split not in records:
                if split in self._splits(ep.info):
                    raise DamagedFileError(f"{ep.path}: /records/{split} missing; run.json lists it")
                raise ProbeInputError(f"{self.path}: split {split!r} not recorded; recorded: {list(records)}")
            return self._read_records(ep, f"records/{split}")

    def sgd_records(self, epoch: int) -> Records:
        """Every sample of every minibatch SGD trained on during ``epoch`` (losses and logits as seen in training);
        empty at epoch 0, before training (every later epoch file holds ``/sgd``), and at every epoch of an imported
        run (``run.json``'s ``imported``: checkpoints trained elsewhere, whose minibatches are unknown)."""
        with self._reading(epoch) as ep:
            if "sgd" not in ep.file and (epoch == 0 or "imported" in ep.info):
                empty = np.zeros(0)
                return Records(empty.astype(np.int64), empty.astype(np.int64), empty.astype(np.int64),
                               empty.astype(np.int64), empty.astype(bool),
                               np.zeros((0, ep.info["dataset"]["num_classes"]), np.float32),
                               empty.astype(np.float32), empty.astype(np.int64))
            return self._read_records(ep, "sgd", with_step=True)

    def dynamics(self, split: str, epochs: list[int] | None = None) -> Dynamics:
        return Dynamics(self, split, list(self.epochs if epochs is None else epochs))

    def has_weights(self, epoch: int) -> bool:
        """Whether epoch ``epoch``'s file holds the model's weights (the ``keep_weights`` schedule; always for runs
        of schema 1)."""
        return bool(self._entry(epoch).get("weights", True))

    @property
    def weight_epochs(self) -> list[int]:
        """Committed epochs whose file holds the model's weights, in order: the epochs model-level analyses can
        read."""
        return [e["epoch"] for e in self.manifest["epochs"] if e.get("weights", True)]

    def state_dict(self, epoch: int) -> dict[str, torch.Tensor]:
        """The model's ``state_dict`` at ``epoch``; :class:`ProbeInputError` naming the epochs that have weights when
        this one's file holds none."""
        if not self.has_weights(epoch):
            raise ProbeInputError(f"{self.path}: epoch {epoch} keeps no weights (keep_weights "
                                  f"{self.config.get('keep_weights', 'all')!r}); epochs with weights: "
                                  f"{_epoch_list(self.weight_epochs)}")
        with self._reading(epoch) as ep:
            return read_model_state(ep.file, f"{ep.path}: /model")

    def resume_state(self) -> ResumeState:
        """What resuming the run needs: the last committed epoch's weights, optimizer state and RNG states.

        Schema 2 keeps the optimizer and RNG states in the resume file the manifest names (verified against its
        size and sha256, and opened safely like an epoch file), with the weights from the epoch file or, when that
        keeps none, from the resume file. For a run of schema 1 (no resume file) they are read from its last epoch
        file, where that schema kept them."""
        manifest = self.manifest
        if not manifest["epochs"]:
            raise RunDirectoryError(f"{self.path}: no committed epochs; nothing to resume from")
        last = manifest["epochs"][-1]
        resume = manifest.get("resume")
        if resume is None:  # schema 1: the last epoch file holds everything
            with self._reading(last["epoch"]) as ep:
                if "optimizer" not in ep.file or "rng" not in ep.file:
                    raise DamagedFileError(f"{self.path}: {MANIFEST_JSON} names no resume file and {ep.path} holds "
                                           "no optimizer state; the run cannot be resumed")
                return ResumeState(last["epoch"], read_model_state(ep.file, f"{ep.path}: /model"),
                                   _optimizer(ep.file, ep.path), _rng(ep.file, ep.path))
        if resume["epoch"] != last["epoch"]:
            raise DamagedFileError(f"{self.path}: {MANIFEST_JSON} names the resume file of epoch {resume['epoch']}, "
                                   f"the last committed epoch is {last['epoch']}")
        path = self.path / resume["file"]
        data = read_verified(path, resume["size"], resume["sha256"])
        with open_image(data, path) as f, damaged_as(path):
            check_schema(_attr(f, "schema_version", path), str(path))
            if int(_attr(f, "epoch", path)) != resume["epoch"]:
                raise DamagedFileError(f"{path}: root attribute epoch is not {resume['epoch']}")
            optimizer, rng = _optimizer(f, path), _rng(f, path)
            model = read_model_state(f, f"{path}: /model") if "model" in f else None
        if model is None:
            model = self.state_dict(last["epoch"])
        return ResumeState(last["epoch"], model, optimizer, rng)

    # -- rebuilding ----------------------------------------------------------------------------------------------
    @property
    def plugins(self) -> list[str]:
        """The plugin modules that define the run's dataset and model (``run.json``'s ``plugins``; empty for the
        built-in ones)."""
        path = self.path / RUN_JSON
        plugins = self.info_json.get("plugins", [])
        if not isinstance(plugins, list) or not all(is_module_name(name) for name in plugins):
            raise DamagedFileError(f"{path}: plugins must be a list of module names, got {plugins!r}"[:300])
        return plugins

    def load_plugins(self) -> list[str]:
        """Import the run's plugin modules by name (:func:`probe.plugins.import_plugin`); a missing one is a
        :class:`~probe.plugins.PluginError` naming it."""
        return import_plugins(self.plugins)

    def dataset(self):
        """The run's dataset, rebuilt from ``run.json`` (deterministic given the recorded options); the run's
        plugins are imported first."""
        from probe.data import build_dataset

        self.load_plugins()
        return build_dataset(self.config["dataset"], **self.config.get("dataset_options", {}))

    def build_model(self) -> torch.nn.Module:
        """A freshly initialised model of this run's architecture (no weights loaded); the run's plugins are imported
        first. A run trained from pretrained weights (``config.weights``) gets the same input standardisation as in
        training; its weights file is not read (the epoch files hold the weights)."""
        from probe.models import build_model
        from probe.models.weights import pretrained_options

        self.load_plugins()
        ds = self.info_json["dataset"]
        options = pretrained_options(self.config.get("model_options") or {}, self.config.get("weights"),
                                     ds.get("options"))
        return build_model(self.config["model"], tuple(ds["input_shape"]), int(ds["num_classes"]), **options)

    def model(self, epoch: int | None = None) -> torch.nn.Module:
        """The model with ``epoch``'s weights (default: the last committed epoch that keeps weights), in eval mode on
        the CPU."""
        if epoch is None:
            with_weights = self.weight_epochs
            if not with_weights:
                raise ProbeInputError(f"{self.path}: no committed epoch keeps weights (keep_weights "
                                      f"{self.config.get('keep_weights', 'all')!r})")
            epoch = with_weights[-1]
        model = self.build_model()
        model.load_state_dict(self.state_dict(epoch))
        return model.eval()

    def summary(self) -> dict[str, Any]:
        """Config, status, epochs, sizes and divergence, for ``probe info``: ``bytes`` of the whole run (epoch files
        and resume file), ``bytes_per_epoch`` (mean epoch file) and ``bytes_resume``."""
        manifest = self.manifest
        cfg = self.config
        epoch_bytes = sum(e["size"] for e in manifest["epochs"])
        resume_bytes = manifest["resume"]["size"] if "resume" in manifest else 0
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
            "epochs_with_weights": sum(1 for e in manifest["epochs"] if e.get("weights", True)),
            "last_epoch": manifest["epochs"][-1]["epoch"] if manifest["epochs"] else None,
            "last_step": manifest["epochs"][-1]["global_step"] if manifest["epochs"] else None,
            "keep_weights": cfg.get("keep_weights", "all"),
            "record_logits": cfg.get("record_logits", "full"),
            "logits_dtype": cfg.get("logits_dtype", "float32"),
            "bytes": epoch_bytes + resume_bytes,
            "bytes_epoch_files": epoch_bytes,
            "bytes_per_epoch": epoch_bytes / len(manifest["epochs"]) if manifest["epochs"] else 0.0,
            "bytes_resume": resume_bytes,
            "diverged": self.diverged,
        }


class Sweep:
    """A sweep directory: ``sweep.json`` plus one run directory per combination of its axes.

    Example:
        >>> sweep = probe.open_sweep("checkpoints/sweep")                        # doctest: +SKIP
        >>> sweep.axes, sweep.budget, [run.lr for run in sweep.runs]             # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not (self.path / SWEEP_JSON).is_file():
            raise RunDirectoryError(f"{self.path}: not a sweep directory (no {SWEEP_JSON})")
        self.config = check_sweep_config(read_json(self.path / SWEEP_JSON), self.path / SWEEP_JSON)

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
        """Runs that have started (a run directory with ``run.json``), in ``sweep.json`` order. A damaged run raises
        :class:`DamagedFileError`; :meth:`run_dirs` lists the folders without opening them."""
        return [Run(path) for path in self.run_dirs()]

    def run_dirs(self) -> list[Path]:
        """Folders of the runs that have started (they hold ``run.json``), in ``sweep.json`` order."""
        return [self.path / e["name"] for e in self.config["runs"] if (self.path / e["name"] / RUN_JSON).is_file()]


def _attr(f: h5py.File, name: str, path: Path) -> Any:
    if name not in f.attrs:
        raise DamagedFileError(f"{path}: root attribute {name!r} missing")
    return f.attrs[name]


def open_run(path: str | os.PathLike) -> Run:
    """Open a run directory for reading.

    Example:
        >>> run = probe.open_run("checkpoints/parity_lr0.1")                     # doctest: +SKIP
        >>> run.status, run.epochs[-1], run.records("test", run.epochs[-1]).pred   # doctest: +SKIP
        >>> model = run.model()            # the last epoch's weights in the rebuilt model    # doctest: +SKIP
    """
    return Run(path)


#: Run-config fields that are axes of a collection when its runs differ in them (``lr`` and ``seed`` always are).
COLLECTION_AXES = ("lr", "seed", "batch_size", "momentum", "weight_decay")


def folder_members(path: str | os.PathLike) -> tuple[list[Path], list[Path]]:
    """``(sweeps, runs)``: the sub-folders of ``path`` that hold ``sweep.json`` and those that hold ``run.json``
    (and no ``sweep.json``), each sorted by name. How ``probe analyze``, ``probe info`` and :func:`open_sweep` read a
    folder that is neither a run nor a sweep."""
    p = Path(path)
    children = sorted(c for c in p.iterdir() if c.is_dir()) if p.is_dir() else []
    sweeps = [c for c in children if (c / SWEEP_JSON).is_file()]
    runs = [c for c in children if (c / RUN_JSON).is_file() and not (c / SWEEP_JSON).is_file()]
    return sweeps, runs


class Collection(Sweep):
    """A folder of separately trained runs (no ``sweep.json``), read like a sweep: ``runs``, ``run_dirs()``,
    ``axes`` (``lr`` and ``seed``, and the other :data:`COLLECTION_AXES` in which its runs differ, each the sorted
    distinct values), ``budget`` (the runs' own when they share it, else ``mixed``). ``config`` is what a
    ``sweep.json`` would say: ``runs`` (name and axis values; only the name for a run whose ``run.json`` cannot be
    read), ``axes``, ``budget``, ``collection: true``. Only the runs directly inside the folder belong to it."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        _, run_dirs = folder_members(self.path)
        if not run_dirs:
            if not self.path.exists():
                raise RunDirectoryError(f"{self.path}: no such directory")
            raise RunDirectoryError(f"{self.path}: neither a sweep directory ({SWEEP_JSON}) nor a folder of runs "
                                    f"(no sub-folder holds {RUN_JSON})")
        configs: dict[str, dict[str, Any]] = {}
        for run_dir in run_dirs:
            try:
                configs[run_dir.name] = Run(run_dir).config
            except (ProbeError, OSError, ValueError):  # a damaged run.json: listed by name, its values unknown
                pass
        axes = {}
        for key in COLLECTION_AXES:
            values = sorted({c[key] for c in configs.values() if c.get(key) is not None}, key=_sort_key)
            if key in ("lr", "seed") or len(values) > 1:
                axes[key] = values
        budgets = sorted({str(c.get("budget", "fixed")) for c in configs.values()})
        self.config = {
            "collection": True,
            "name": self.path.name,
            "axes": axes,
            "budget": budgets[0] if len(budgets) == 1 else "mixed",
            "datasets": sorted({str(c.get("dataset")) for c in configs.values()}),
            "models": sorted({str(c.get("model")) for c in configs.values()}),
            "runs": [{"name": d.name, **{k: configs[d.name].get(k) for k in axes if d.name in configs}}
                     for d in run_dirs],
        }

    def __repr__(self) -> str:
        return f"Collection({str(self.path)!r}, runs={len(self.config['runs'])})"


def _sort_key(value: Any) -> tuple[str, Any]:
    return (type(value).__name__, value)


def open_sweep(path: str | os.PathLike) -> Sweep:
    """Open a sweep directory for reading, or a folder of separately trained runs as a :class:`Collection` (the
    runs directly inside it; a folder that holds sweeps besides runs is refused: open each sweep).

    Example:
        >>> sweep = probe.open_sweep("checkpoints/sweep")                        # doctest: +SKIP
        >>> [(run.lr, run.seed, run.status) for run in sweep.runs]               # doctest: +SKIP
        >>> runs = probe.open_sweep("checkpoints")      # a folder of runs trained one by one    # doctest: +SKIP
    """
    p = Path(path)
    if (p / SWEEP_JSON).is_file():
        return Sweep(p)
    if (p / RUN_JSON).is_file():
        raise RunDirectoryError(f"{p}: a run directory, not a sweep or a folder of runs (open it with open_run)")
    sweeps, _ = folder_members(p)
    if sweeps:
        raise RunDirectoryError(f"{p}: holds sweeps ({', '.join(s.name for s in sweeps)}); open each with open_sweep")
    return Collection(p)


def open_path(path: str | os.PathLike) -> Run | Sweep:
    """A :class:`Sweep` if ``path`` holds ``sweep.json``, a :class:`Run` if it holds ``run.json``, a
    :class:`Collection` if it is a folder of separately trained runs (as :func:`open_sweep`: a folder that holds
    sweeps besides runs is refused)."""
    p = Path(path)
    if (p / SWEEP_JSON).is_file():
        return Sweep(p)
    if (p / RUN_JSON).is_file():
        return Run(p)
    if not p.exists():
        raise RunDirectoryError(f"{p}: no such directory")
    sweeps, runs = folder_members(p)
    if sweeps:
        raise RunDirectoryError(f"{p}: holds sweeps ({', '.join(s.name for s in sweeps)}); name one of them")
    if runs:
        return Collection(p)
    raise RunDirectoryError(f"{p}: neither a run directory (run.json), a sweep directory (sweep.json) nor a folder of "
                            f"runs")
