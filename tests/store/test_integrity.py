"""Readers verify every epoch file against the manifest and refuse newer schema majors."""

from __future__ import annotations

import json
import shutil

import h5py
import pytest

import probe
from probe.errors import CorruptEpochError, SchemaVersionError


@pytest.fixture
def run_copy(tiny_parity_run, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(tiny_parity_run, dst)
    return dst


def test_truncated_epoch_file_is_a_typed_error(run_copy):
    path = run_copy / "epoch_00002.h5"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    run = probe.open_run(run_copy)
    with pytest.raises(CorruptEpochError, match="truncated"):
        run.records("test", 2)
    assert len(run.records("test", 1)) == 128  # other epochs unaffected


def test_altered_epoch_file_is_a_typed_error(run_copy):
    path = run_copy / "epoch_00001.h5"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one bit pattern changed
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptEpochError, match="sha256"):
        probe.open_run(run_copy).state_dict(1)


def test_missing_epoch_file_is_a_typed_error(run_copy):
    (run_copy / "epoch_00003.h5").unlink()
    with pytest.raises(CorruptEpochError, match="missing"):
        probe.open_run(run_copy).records("train", 3)


def test_newer_schema_major_is_refused(run_copy):
    info = json.loads((run_copy / "run.json").read_text())
    info["schema_version"] = "2.0"
    (run_copy / "run.json").write_text(json.dumps(info))
    with pytest.raises(SchemaVersionError, match="2.0"):
        probe.open_run(run_copy)


def test_newer_schema_in_epoch_file_is_refused(run_copy):
    path = run_copy / "epoch_00001.h5"
    with h5py.File(path, "r+") as f:
        f.attrs["schema_version"] = "9.1"
    manifest = json.loads((run_copy / "manifest.json").read_text())
    from probe.store.atomic import sha256_file

    for e in manifest["epochs"]:
        if e["epoch"] == 1:
            e["size"], e["sha256"] = path.stat().st_size, sha256_file(path)
    (run_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SchemaVersionError):
        probe.open_run(run_copy).records("test", 1)


def test_epoch_files_hold_no_pickled_objects(tiny_parity_run):
    """Every dataset in an epoch file is a plain numeric array (no object dtype, no opaque blobs)."""
    bad = []
    with h5py.File(tiny_parity_run / "epoch_00001.h5", "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and obj.dtype.kind not in "biuf":
                bad.append((name, obj.dtype))
        f.visititems(visit)
    assert bad == []
