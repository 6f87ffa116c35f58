"""Hostile and damaged epoch files written with h5py, for the safety, integrity and fuzz tests."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from probe.store.atomic import sha256_file


def recommit(run_dir: Path, epoch: int) -> None:
    """Make ``manifest.json`` vouch for the epoch file as it is now (size and sha256), as a forger would."""
    manifest_path = Path(run_dir) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for entry in manifest["epochs"]:
        if entry["epoch"] == epoch:
            path = Path(run_dir) / entry["file"]
            entry["size"], entry["sha256"] = path.stat().st_size, sha256_file(path)
    manifest_path.write_text(json.dumps(manifest))


def recommit_resume(run_dir: Path) -> None:
    """Make ``manifest.json`` vouch for the resume file as it is now (size and sha256)."""
    manifest_path = Path(run_dir) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    path = Path(run_dir) / manifest["resume"]["file"]
    manifest["resume"]["size"], manifest["resume"]["sha256"] = path.stat().st_size, sha256_file(path)
    manifest_path.write_text(json.dumps(manifest))


def replace_dataset(path: Path, name: str, make) -> None:
    """Delete ``name`` from the HDF5 file ``path`` and let ``make(file, name)`` put something else there."""
    with h5py.File(path, "r+") as f:
        del f[name]
        make(f, name)


def external_link(target: str, target_name: str):
    def make(f, name):
        f[name] = h5py.ExternalLink(target, target_name)
    return make


def soft_link(target_name: str):
    def make(f, name):
        f[name] = h5py.SoftLink(target_name)
    return make


def external_storage(target: str, shape, dtype="f4"):
    def make(f, name):
        f.create_dataset(name, shape=shape, dtype=dtype, external=[(target, 0, h5py.h5f.UNLIMITED)])
    return make


def virtual_dataset(source_file: str, source_name: str, shape, dtype="f4"):
    def make(f, name):
        layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
        layout[...] = h5py.VirtualSource(source_file, source_name, shape=shape)
        f.create_virtual_dataset(name, layout)
    return make


def declared_only(shape, dtype="f4", **kwargs):
    """A dataset that declares ``shape`` and stores (next to) nothing: no data is ever written to it."""
    def make(f, name):
        f.create_dataset(name, shape=shape, dtype=dtype, **kwargs)
    return make


def array(values):
    def make(f, name):
        f.create_dataset(name, data=np.asarray(values))
    return make
