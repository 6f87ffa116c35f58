"""Layout of the epoch files and of the resume file (HDF5). Everything is a plain array or a JSON string attribute;
nothing is pickled.

An epoch file (schema 2)::

    /                 attrs: schema_version, epoch, global_step, lr; data_pass, pass_complete, pass_batches_done
                      (where the record lies in the data: its pass, whether it ends it, the pass's batches done)
    /model/<name>     one dataset per state_dict entry (parameters and buffers); only at the epochs the
                      ``keep_weights`` schedule names
    /records/<split>  index, y, a, group, is_bc, loss (n,) float32, and the logits: logits (n, K) (float32 or
                      float16), or with ``record_logits topk:K`` the summary of :mod:`probe.store.logit_records`
    /sgd              the same fields and step: every sample of every minibatch SGD saw

The resume file ``resume_NNNNN.h5`` (one per run, replaced at each commit)::

    /                 attrs: schema_version, epoch, global_step
    /model/<name>     only when epoch NNNNN's file holds no weights
    /optimizer        attrs: param_groups (JSON), tensor_keys (JSON); /optimizer/state/<param id>/<key>
    /rng/<name>       uint8 generator states (shuffle, torch_cpu, cuda; shuffle_pass_start inside a pass)

Epoch files of schema 1 held the model, the optimizer and the RNG states at every epoch and there was no resume
file; the reader still reads them (:meth:`probe.store.Run.resume_state`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from probe.errors import DamagedFileError
from probe.store.atomic import atomic_write_bytes
from probe.store.schema import SCHEMA_VERSION

RECORD_FIELDS = ("index", "y", "a", "group", "is_bc", "logits", "loss")
#: the fields of a record group besides its logits, which are either ``logits`` or a top-k summary.
LABEL_FIELDS = ("index", "y", "a", "group", "is_bc", "loss")


@dataclass
class EpochPayload:
    """What one epoch file holds, as host arrays (``model_state`` None: the epoch keeps no weights)."""

    epoch: int
    global_step: int
    lr: float
    model_state: dict[str, torch.Tensor] | None
    records: dict[str, dict[str, np.ndarray]]
    sgd: dict[str, np.ndarray] | None = None
    extra_attrs: dict[str, Any] = field(default_factory=dict)
    #: the data pass (1-based; 0 before training) the record belongs to, whether it is the end of that pass, and
    #: how many of the pass's minibatches were trained on; None for a writer that does not say (then epoch = pass)
    data_pass: int | None = None
    pass_complete: bool | None = None
    pass_batches_done: int | None = None

    def position(self) -> dict[str, Any]:
        """``data_pass`` and ``pass_complete`` for the manifest entry (empty when not given)."""
        if self.data_pass is None:
            return {}
        return {"data_pass": int(self.data_pass), "pass_complete": bool(self.pass_complete)}


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        t = t.float()
    return t.contiguous().numpy()


#: growth step of the in-memory image (h5py's ``core`` driver); large steps mean few reallocations for big models.
IMAGE_INCREMENT = 4 << 20


def epoch_file_image(payload: EpochPayload) -> bytes:
    """The HDF5 epoch file of ``payload``, built in memory (nothing touches the disk)."""
    label = f"probe-epoch-{payload.epoch}-{id(payload)}.h5"  # names the in-memory file to HDF5; never created
    with h5py.File(label, "w", driver="core", backing_store=False, block_size=IMAGE_INCREMENT,
                   libver="latest") as f:
        f.attrs["schema_version"] = SCHEMA_VERSION
        f.attrs["epoch"] = payload.epoch
        f.attrs["global_step"] = payload.global_step
        f.attrs["lr"] = payload.lr
        if payload.data_pass is not None:
            f.attrs["data_pass"] = int(payload.data_pass)
            f.attrs["pass_complete"] = np.uint8(bool(payload.pass_complete))
            f.attrs["pass_batches_done"] = int(payload.pass_batches_done or 0)
        for k, v in payload.extra_attrs.items():
            f.attrs[k] = v
        if payload.model_state is not None:
            _write_tensors(f.create_group("model"), payload.model_state)
        g = f.create_group("records")
        for split, fields in payload.records.items():
            sg = g.create_group(split)
            for name, arr in fields.items():
                sg.create_dataset(name, data=arr)
        if payload.sgd is not None:
            sg = f.create_group("sgd")
            for name, arr in payload.sgd.items():
                sg.create_dataset(name, data=arr)
        f.flush()
        return f.id.get_file_image()


@dataclass
class ResumePayload:
    """What the resume file holds: the optimizer and RNG states after ``epoch``, and the model's weights when
    ``epoch``'s file does not hold them."""

    epoch: int
    global_step: int
    optimizer_state: dict[str, Any]
    rng_states: dict[str, torch.Tensor]
    model_state: dict[str, torch.Tensor] | None = None


def resume_file_image(payload: ResumePayload) -> bytes:
    """The HDF5 resume file of ``payload``, built in memory."""
    label = f"probe-resume-{payload.epoch}-{id(payload)}.h5"
    with h5py.File(label, "w", driver="core", backing_store=False, block_size=IMAGE_INCREMENT,
                   libver="latest") as f:
        f.attrs["schema_version"] = SCHEMA_VERSION
        f.attrs["epoch"] = payload.epoch
        f.attrs["global_step"] = payload.global_step
        if payload.model_state is not None:
            _write_tensors(f.create_group("model"), payload.model_state)
        _write_optimizer(f.create_group("optimizer"), payload.optimizer_state)
        _write_tensors(f.create_group("rng"), payload.rng_states)
        f.flush()
        return f.id.get_file_image()


def _write_tensors(g: h5py.Group, tensors: dict[str, torch.Tensor]) -> None:
    for name, tensor in tensors.items():
        g.create_dataset(name, data=_to_numpy(tensor))


def write_epoch_h5(path: Path, payload: EpochPayload, fault_hook: Callable[[str], None] | None = None) -> bytes:
    """Write ``payload`` to ``path`` atomically (:func:`~probe.store.atomic.atomic_write_bytes`); returns the bytes
    written. HDF5 never writes to the disk itself, so a full disk or a file-size limit is a plain ``OSError`` and
    leaves no temporary file behind."""
    image = epoch_file_image(payload)
    atomic_write_bytes(path, image, fault_hook=fault_hook)
    return image


def _write_optimizer(g: h5py.Group, state_dict: dict[str, Any]) -> None:
    g.attrs["param_groups"] = json.dumps(state_dict["param_groups"])
    tensor_keys: dict[str, dict[str, str]] = {}
    plain: dict[str, dict[str, Any]] = {}
    sg = g.create_group("state")
    for pid, entries in state_dict["state"].items():
        pg = sg.create_group(str(pid))
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                pg.create_dataset(key, data=_to_numpy(value))
                tensor_keys.setdefault(str(pid), {})[key] = str(value.dtype).removeprefix("torch.")
            else:
                plain.setdefault(str(pid), {})[key] = value
    g.attrs["tensor_keys"] = json.dumps(tensor_keys)
    g.attrs["plain_state"] = json.dumps(plain)


def read_optimizer(g: h5py.Group, where: str = "/optimizer") -> dict[str, Any]:
    """Rebuild an optimizer ``state_dict`` written by :func:`write_epoch_h5` (``where`` names it in errors)."""
    try:
        tensor_keys = json.loads(g.attrs["tensor_keys"])
        plain = json.loads(g.attrs["plain_state"])
        param_groups = json.loads(g.attrs["param_groups"])
        state: dict[int, dict[str, Any]] = {}
        for pid in set(tensor_keys) | set(plain):
            entry: dict[str, Any] = dict(plain.get(pid, {}))
            for key, dtype_name in tensor_keys.get(pid, {}).items():
                dtype = getattr(torch, str(dtype_name), None)
                if not isinstance(dtype, torch.dtype):
                    raise DamagedFileError(f"{where}: unknown tensor dtype {dtype_name!r}")
                entry[key] = torch.from_numpy(np.asarray(g["state"][pid][key][()])).to(dtype)
            state[int(pid)] = entry
    except (KeyError, ValueError, TypeError, AttributeError) as err:
        if isinstance(err, DamagedFileError):
            raise
        reason = f"{type(err).__name__}: {err}"
        raise DamagedFileError(f"{where}: optimizer state not as probe writes it ({reason})") from None
    return {"state": state, "param_groups": param_groups}


def read_model_state(f: h5py.File, where: str = "/model") -> dict[str, torch.Tensor]:
    """The model's ``state_dict`` (``where`` names the group in errors)."""
    return {name: torch.from_numpy(np.asarray(ds[()])) for name, ds in require_group(f, "model", where).items()}


def read_fields(g: h5py.Group, names=None) -> dict[str, np.ndarray]:
    return {name: np.asarray(g[name][()]) for name in (names or g.keys()) if name in g}


def require_group(parent: h5py.Group, name: str, where: str) -> h5py.Group:
    """``parent[name]``, which must be a group; :class:`DamagedFileError` naming ``where`` otherwise."""
    obj = parent.get(name)
    if not isinstance(obj, h5py.Group):
        raise DamagedFileError(f"{where}: {'missing' if obj is None else 'not a group'}")
    return obj


#: Numpy dtype kinds of the record fields, with their names for messages.
RECORD_KINDS = {"index": ("iu", "integer"), "y": ("iu", "integer"), "a": ("iu", "integer"),
                "group": ("iu", "integer"), "step": ("iu", "integer"), "is_bc": ("b", "bool"),
                "logits": ("f", "float"), "loss": ("f", "float"),
                "logit_true": ("f", "float"), "logit_top": ("f", "float"), "logit_top_class": ("iu", "integer"),
                "logit_lse": ("f", "float"), "logit_norm": ("f", "float"),
                "full_positions": ("iu", "integer"), "full_logits": ("f", "float")}
#: fields of shape (n, ...) that are 2-d.
_TWO_D = frozenset({"logits", "logit_top", "logit_top_class", "full_logits"})


def read_records(g: h5py.Group, names: tuple[str, ...], *, num_classes: int, num_attrs: int,
                 logits_widths: tuple[int, ...], where: str) -> dict[str, np.ndarray]:
    """The record fields ``names`` of group ``g``, checked: every field present with its kind, one length ``n`` for
    all, ``logits`` of shape ``(n, K)`` with ``K`` in ``logits_widths``, ``0 <= y < num_classes``,
    ``0 <= a < num_attrs``, ``group == y * num_attrs + a``, ``index`` and ``step`` non-negative.

    Raises :class:`DamagedFileError` naming ``where/<field>`` (``where``: the file and group).
    """
    out = {name: _read_field(g, name, where) for name in names}
    n = len(out[names[0]]) if out[names[0]].ndim else -1
    for name, arr in out.items():
        ndim = 2 if name in _TWO_D else 1
        if arr.ndim != ndim or arr.shape[0] != n:
            raise DamagedFileError(f"{where}/{name}: shape {arr.shape}, expected {'(n, K)' if ndim == 2 else '(n,)'} "
                                   f"with n = {n} (the length of {names[0]})")
    if "logits" in out and out["logits"].dtype != np.float32:
        out["logits"] = out["logits"].astype(np.float32)  # float16 records (``--logits-dtype float16``)
    if "logits" in out and out["logits"].shape[1] not in logits_widths:
        raise DamagedFileError(f"{where}/logits: {out['logits'].shape[1]} columns, the run has {num_classes} classes")
    _check_range(out, "y", num_classes, where)
    _check_range(out, "a", num_attrs, where)
    _check_range(out, "index", None, where)
    _check_range(out, "step", None, where)
    if {"y", "a", "group"} <= out.keys() and not np.array_equal(out["group"], out["y"] * num_attrs + out["a"]):
        raise DamagedFileError(f"{where}/group: not y * {num_attrs} + a")
    return out


def _read_field(g: h5py.Group, name: str, where: str) -> np.ndarray:
    ds = g.get(name)
    if not isinstance(ds, h5py.Dataset):
        raise DamagedFileError(f"{where}/{name}: {'missing' if ds is None else 'not a dataset'}")
    kinds, kind_name = RECORD_KINDS[name]
    if ds.dtype.kind not in kinds:
        raise DamagedFileError(f"{where}/{name}: dtype {ds.dtype}, expected {kind_name}")
    return np.asarray(ds[()])


def read_logit_summary(g: h5py.Group, n: int, *, num_classes: int, where: str) -> dict[str, np.ndarray]:
    """The top-k summary fields of a record group of ``n`` samples (and its full-logits subset when present),
    checked: shapes ``(n,)`` / ``(n, K)`` with ``1 <= K <= num_classes``, classes in ``[0, num_classes)``, subset
    positions strictly increasing in ``[0, n)`` with one row of ``num_classes`` logits each."""
    out = {name: _read_field(g, name, where) for name in
           ("logit_true", "logit_top", "logit_top_class", "logit_lse", "logit_norm")}
    for name, arr in out.items():
        ndim = 2 if name in _TWO_D else 1
        if arr.ndim != ndim or arr.shape[0] != n:
            raise DamagedFileError(f"{where}/{name}: shape {arr.shape}, expected {'(n, K)' if ndim == 2 else '(n,)'} "
                                   f"with n = {n}")
    k = out["logit_top"].shape[1]
    if out["logit_top_class"].shape != out["logit_top"].shape or not 1 <= k <= num_classes:
        raise DamagedFileError(f"{where}/logit_top: shape {out['logit_top'].shape} with classes of shape "
                               f"{out['logit_top_class'].shape}; expected (n, K) for both with 1 <= K <= {num_classes}")
    _check_range(out, "logit_top_class", num_classes, where)
    if "full_positions" in g or "full_logits" in g:
        positions = _read_field(g, "full_positions", where)
        full = _read_field(g, "full_logits", where)
        if positions.ndim != 1 or full.shape != (len(positions), num_classes):
            raise DamagedFileError(f"{where}/full_logits: shape {full.shape}, expected ({len(positions)}, "
                                   f"{num_classes}) for {positions.shape} positions")
        if positions.size and (positions.min() < 0 or positions.max() >= n or np.any(np.diff(positions) <= 0)):
            raise DamagedFileError(f"{where}/full_positions: not strictly increasing positions in [0, {n})")
        out["full_positions"] = positions.astype(np.int64)
        out["full_logits"] = full.astype(np.float32, copy=False)
    return out


def _check_range(fields: dict[str, np.ndarray], name: str, stop: int | None, where: str) -> None:
    arr = fields.get(name)
    if arr is None or not arr.size:
        return
    low, high = int(arr.min()), int(arr.max())
    if low < 0 or (stop is not None and high >= stop):
        bound = f"in [0, {stop})" if stop is not None else ">= 0"
        raise DamagedFileError(f"{where}/{name}: values in [{low}, {high}], expected {bound}")


def file_size(path: Path) -> int:
    return os.stat(path).st_size
