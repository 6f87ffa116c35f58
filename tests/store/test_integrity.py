"""Readers verify every epoch file against the manifest on every read, validate the JSON files, and refuse newer
schema majors; ``probe info`` reports damage in one line with exit code 2."""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pytest

import probe
from probe.cli import main
from probe.errors import CorruptEpochError, DamagedFileError, RunDirectoryError, SchemaVersionError
from probe.store.atomic import read_json
from tests.conftest import run_cli
from tests.store.hostile import recommit


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
    info["schema_version"] = "3.0"
    (run_copy / "run.json").write_text(json.dumps(info))
    with pytest.raises(SchemaVersionError, match="3.0"):
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


def _flip_in_place(path, offset: int) -> None:
    """Change one byte of ``path`` where it lies, then put its timestamps back (bit rot leaves no trace in stat)."""
    st = os.stat(path)
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0x40]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_long_lived_run_notices_an_in_place_change(run_copy):
    """Every read re-hashes the bytes it reads: no cache keyed by size and mtime answers for a changed file."""
    run = probe.open_run(run_copy)
    before = run.records("test", 1).loss.copy()
    path = run_copy / "epoch_00001.h5"
    with h5py.File(path, "r") as f:
        offset = f["records/test/loss"].id.get_offset()  # the first loss value's bytes
    st = path.stat()
    _flip_in_place(path, offset + 3)
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    with pytest.raises(CorruptEpochError, match="sha256"):
        run.records("test", 1)
    with pytest.raises(CorruptEpochError, match="sha256"):
        run.dynamics("test").loss.sum()
    _flip_in_place(path, offset + 3)  # healed: the same Run reads the same values again
    np.testing.assert_array_equal(run.records("test", 1).loss, before)


@pytest.mark.parametrize("damage", ["truncated", "bit-flipped"])
def test_info_verify_reports_a_damaged_epoch(damage, run_copy, capsys):
    path = run_copy / "epoch_00002.h5"
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        data = data[: len(data) - 1000]
    else:
        data[len(data) // 3] ^= 0x01
    path.write_bytes(bytes(data))
    result = run_cli("info", "--verify", str(run_copy))
    reason = "truncated" if damage == "truncated" else "sha256 differs"
    assert result.returncode == 1  # read, and found damaged: as probe verify
    row = [line for line in result.stdout.splitlines() if line.strip().startswith("run ")][-1]
    assert "damaged" in row and "epoch_00002.h5" in row and reason in row and "complete" not in row
    assert result.stderr.splitlines() == [result.stderr.strip()]  # one line, no traceback
    assert result.stderr.startswith(f"probe: error: {run_copy}: damaged: epoch_00002.h5:") and reason in result.stderr
    assert main(["info", "--verify", "--json", str(run_copy)]) == 1
    as_json = json.loads(capsys.readouterr().out)
    assert as_json["runs"][0]["status"] == "damaged"
    assert as_json["runs"][0]["problems"][0]["file"] == str(path)


def _truncate(path, keep: int = 60) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def _set_lr(run_dir, value) -> None:
    info = json.loads((run_dir / "run.json").read_text())
    info["config"]["lr"] = value
    (run_dir / "run.json").write_text(json.dumps(info))


def _not_hdf5(run_dir) -> None:
    (run_dir / "epoch_00001.h5").write_bytes(b"this is not an HDF5 file\n" * 100)
    recommit(run_dir, 1)


def _no_records(run_dir) -> None:
    with h5py.File(run_dir / "epoch_00001.h5", "r+") as f:
        del f["records"]
    recommit(run_dir, 1)


DAMAGE = {
    # name: (how, damaged file, words of the reason, does plain `probe info` (JSON only) see it)
    "truncated manifest.json": (lambda d: _truncate(d / "manifest.json"), "manifest.json", "not valid JSON", True),
    "truncated run.json": (lambda d: _truncate(d / "run.json"), "run.json", "not valid JSON", True),
    "empty run.json": (lambda d: _truncate(d / "run.json", 0), "run.json", "empty", True),
    'lr "abc" in run.json': (lambda d: _set_lr(d, "abc"), "run.json", "config.lr must be a number", True),
    "lr -1 in run.json": (lambda d: _set_lr(d, -1), "run.json", "positive finite", True),
    "non-HDF5 epoch file": (_not_hdf5, "epoch_00001.h5", "unreadable HDF5", False),
    "missing /records group": (_no_records, "epoch_00001.h5", "/records: missing", False),
}


IN_A_FRESH_PROCESS = {"truncated run.json", "non-HDF5 epoch file"}  # the others call the CLI's main() in-process


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_run_files_give_a_typed_error_and_one_line(damage, run_copy, capsys):
    how, file, words, seen_by_info = DAMAGE[damage]
    how(run_copy)
    with pytest.raises(DamagedFileError) as info:
        run = probe.open_run(run_copy)
        run.records("test", 1)
    assert str(info.value).startswith(f"{run_copy / file}: ") and words in str(info.value)
    args = ["info", str(run_copy)] if seen_by_info else ["info", "--verify", str(run_copy)]
    if damage in IN_A_FRESH_PROCESS:
        result = run_cli(*args)
        code, stderr = result.returncode, result.stderr
    else:
        code, stderr = main(args), capsys.readouterr().err
    assert code == (2 if seen_by_info else 1)  # a run.json that cannot be read is bad input; damage found is 1
    assert len(stderr.splitlines()) == 1 and "Traceback" not in stderr
    assert stderr.startswith("probe: error: ") and file in stderr and words in stderr


def test_a_fifo_in_place_of_a_run_file_is_refused_without_blocking(run_copy):
    (run_copy / "epoch_00001.h5").unlink()
    os.mkfifo(run_copy / "epoch_00001.h5")
    with pytest.raises(CorruptEpochError, match="not a regular file"):
        probe.open_run(run_copy).records("test", 1)
    (run_copy / "run.json").unlink()
    os.mkfifo(run_copy / "run.json")
    with pytest.raises(RunDirectoryError, match="no run.json"):
        probe.open_run(run_copy)
    fifo = run_copy / "manifest.json"
    fifo.unlink()
    os.mkfifo(fifo)
    with pytest.raises(DamagedFileError, match="manifest.json: not a regular file"):
        read_json(fifo)
