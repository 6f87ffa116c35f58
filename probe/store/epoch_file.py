"""Layout of one epoch file (HDF5). Everything is a plain array or a JSON string attribute; nothing is pickled.

::

    /                 attrs: schema_version, epoch, global_step, lr, wall_time
    /model/<name>     one dataset per state_dict entry (parameters and buffers)
    /optimizer        attrs: param_groups (JSON), tensor_keys (JSON); /optimizer/state/<param id>/<key>
    /rng/<name>       uint8 generator states (shuffle, torch_cpu, cuda_<i>)
    /records/<split>  index, y, a, group, is_bc, logits (n, K) float32, loss (n,) float32
    /sgd              index, y, a, group, is_bc, logits, loss, step: every sample of every minibatch SGD saw
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

from probe.store.atomic import atomic_write_bytes
from probe.store.schema import SCHEMA_VERSION

RECORD_FIELDS = ("index", "y", "a", "group", "is_bc", "logits", "loss")


@dataclass
class EpochPayload:
    """What one epoch file holds, as host arrays."""

    epoch: int
    global_step: int
    lr: float
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any] | None
    rng_states: dict[str, torch.Tensor]
    records: dict[str, dict[str, np.ndarray]]
    sgd: dict[str, np.ndarray] | None = None
    extra_attrs: dict[str, Any] = field(default_factory=dict)


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
        for k, v in payload.extra_attrs.items():
            f.attrs[k] = v
        g = f.create_group("model")
        for name, tensor in payload.model_state.items():
            g.create_dataset(name, data=_to_numpy(tensor))
        if payload.optimizer_state is not None:
            _write_optimizer(f.create_group("optimizer"), payload.optimizer_state)
        g = f.create_group("rng")
        for name, state in payload.rng_states.items():
            g.create_dataset(name, data=_to_numpy(state))
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


def read_optimizer(g: h5py.Group) -> dict[str, Any]:
    """Rebuild an optimizer ``state_dict`` written by :func:`write_epoch_h5`."""
    tensor_keys = json.loads(g.attrs["tensor_keys"])
    plain = json.loads(g.attrs["plain_state"])
    state: dict[int, dict[str, Any]] = {}
    for pid in set(tensor_keys) | set(plain):
        entry: dict[str, Any] = dict(plain.get(pid, {}))
        for key, dtype in tensor_keys.get(pid, {}).items():
            entry[key] = torch.from_numpy(np.asarray(g["state"][pid][key][()])).to(getattr(torch, dtype))
        state[int(pid)] = entry
    return {"state": state, "param_groups": json.loads(g.attrs["param_groups"])}


def read_model_state(f: h5py.File) -> dict[str, torch.Tensor]:
    return {name: torch.from_numpy(np.asarray(ds[()])) for name, ds in f["model"].items()}


def read_fields(g: h5py.Group, names=None) -> dict[str, np.ndarray]:
    return {name: np.asarray(g[name][()]) for name in (names or g.keys()) if name in g}


def file_size(path: Path) -> int:
    return os.stat(path).st_size
