"""Epoch files that point outside themselves or declare more than they hold are refused, even when the manifest
vouches for them (a forger updated its size and sha256): the one safe HDF5 open of ``probe/store/safe_h5.py``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import probe
from probe.cli import main
from probe.errors import DamagedFileError
from probe.store.verify import verify_run
from tests.conftest import REPO, run_cli
from tests.store.hostile import (
    array,
    declared_only,
    external_link,
    external_storage,
    recommit,
    replace_dataset,
    soft_link,
    virtual_dataset,
)

LOGITS = "records/test/logits"


def hostile_cases(other_epoch: str) -> dict[str, tuple]:
    """name -> (mutation of /records/test/logits, words the refusal must contain)."""
    return {
        "external link to another run's file": (external_link(other_epoch, "/" + LOGITS), "external link"),
        "external link to /etc/passwd": (external_link("/etc/passwd", "/x"), "external link"),
        "soft link": (soft_link("/records/train/logits"), "soft link"),
        "external storage in /etc/passwd": (external_storage("/etc/passwd", (128, 2)), "external file"),
        "virtual dataset over another run's file": (virtual_dataset(other_epoch, LOGITS, (128, 2)), "virtual"),
        "logits of width 3 for 2 classes": (array(np.zeros((128, 3), np.float32)), "3 columns"),
        "logits stored as strings": (array(np.array([b"x"] * 128)), "non-numeric"),
        "declared 3e8 x 10 float32": (declared_only((300_000_000, 10)), "declares 12000000000 bytes"),
        "declared 2^40 bytes": (declared_only((2**40,), "u1"), "declares 1099511627776 bytes"),
        "chunked, compressed, declared 3e8 x 10": (declared_only((300_000_000, 10), chunks=(1000, 10),
                                                                 compression="gzip"), "chunked"),
    }


CASES = list(hostile_cases("x"))
RECORD_CHECKS = {"logits of width 3 for 2 classes"}  # a well-formed file whose records do not fit run.json


@pytest.mark.parametrize("case", CASES)
def test_hostile_epoch_file_is_refused_with_the_file_and_object_named(case, run_copy, tiny_parity_run):
    other = str(tiny_parity_run / "epoch_00002.h5")  # another run's file, readable and valid
    mutation, words = hostile_cases(other)[case]
    path = run_copy / "epoch_00001.h5"
    replace_dataset(path, LOGITS, mutation)
    recommit(run_copy, 1)
    run = probe.open_run(run_copy)
    reads = [lambda: run.records("test", 1), lambda: run.verify(1), lambda: run.dynamics("test").logits]
    if case not in RECORD_CHECKS:  # refused by the safety walk: no read of the file gets through
        reads += [lambda: run.records("train", 1), lambda: run.state_dict(1)]
    for read in reads:
        with pytest.raises(DamagedFileError) as info:
            read()
        assert f"{path}: /records/test/logits" in str(info.value) and words in str(info.value)
    assert run.records("test", 2).logits.shape == (128, 2)  # the other epochs stay readable
    report = verify_run(run_copy)
    assert not report.ok and [p.file.name for p in report.problems] == ["epoch_00001.h5"]
    assert report.epochs == [0, 2, 3]


@pytest.mark.parametrize("listed", ["absolute", "relative"])
def test_manifest_naming_a_file_outside_the_run_is_refused(listed, run_copy, tiny_parity_run):
    manifest = json.loads((run_copy / "manifest.json").read_text())
    elsewhere = tiny_parity_run / "epoch_00001.h5"  # identical bytes: only the name gives it away
    manifest["epochs"][1]["file"] = str(elsewhere) if listed == "absolute" else "../../x/epoch_00001.h5"
    (run_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DamagedFileError, match=r"manifest.json: epochs\[1\].file must be 'epoch_00001.h5'"):
        probe.open_run(run_copy).records("test", 1)


def test_epoch_file_that_is_a_symlink_is_refused(run_copy, tiny_parity_run):
    path = run_copy / "epoch_00001.h5"
    path.unlink()
    path.symlink_to(tiny_parity_run / "epoch_00002.h5")
    recommit(run_copy, 1)
    with pytest.raises(DamagedFileError, match="symbolic link"):
        probe.open_run(run_copy).records("test", 1)


def test_probe_verify_names_every_hostile_run(tiny_parity_run, tmp_path):
    """One sweep of hostile copies of the tiny run: `probe verify` prints one line per run, exit code 1."""
    sweep = tmp_path / "sweep"
    other = str(tiny_parity_run / "epoch_00002.h5")
    names = ["intact", "extlink", "extstorage", "width"]
    mutations = {"extlink": external_link(other, "/" + LOGITS),
                 "extstorage": external_storage("/etc/passwd", (128, 2)),
                 "width": array(np.zeros((128, 3), np.float32))}
    for name in names:
        shutil.copytree(tiny_parity_run, sweep / name)
        if name in mutations:
            replace_dataset(sweep / name / "epoch_00003.h5", LOGITS, mutations[name])
            recommit(sweep / name, 3)
    (sweep / "sweep.json").write_text(json.dumps({
        "schema_version": "1.0", "axes": {"lr": [0.1]}, "base_config": {"dataset": "parity", "model": "mlp"},
        "runs": [{"name": n} for n in names]}))
    result = run_cli("verify", str(sweep))
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"{sweep / 'intact'}: ok"
    for line, words in zip(lines[1:], ["external link", "external file", "3 columns"]):
        assert line.startswith(f"{sweep}/") and ": damaged: epoch_00003.h5: /records/test/logits" in line
        assert words in line
    assert len(lines) == 4 and result.stderr == ""
    assert main(["verify", str(sweep / "intact")]) == 0


MEMORY_SCRIPT = """
import resource, sys
import probe
from probe.cli import main
from probe.errors import DamagedFileError
run = probe.open_run(sys.argv[1])
try:
    run.records("test", 1)
except DamagedFileError as err:
    print("refused:", err)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""
#: Linux keeps ru_maxrss across fork and exec, so the measured process is started by a small one (python -S), not
#: by pytest, whose own size would otherwise be reported.
SMALL_PARENT = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"


@pytest.mark.parametrize("shape,dtype", [((300_000_000, 10), "f4"), ((2**40,), "u1")])
def test_huge_declared_dataset_is_refused_without_allocating(shape, dtype, run_copy):
    path = run_copy / "epoch_00001.h5"
    replace_dataset(path, LOGITS, declared_only(shape, dtype))
    recommit(run_copy, 1)
    assert path.stat().st_size < 300_000  # a small file ...
    command = [sys.executable, "-S", "-c", SMALL_PARENT, sys.executable, "-c", MEMORY_SCRIPT, str(run_copy)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=dict(os.environ), timeout=120)
    assert result.returncode == 0, result.stderr
    refusal, peak_mb = result.stdout.splitlines()
    assert refusal.startswith("refused:") and "declares" in refusal  # ... declaring GBs to TBs is refused
    assert int(peak_mb) < 500, f"peak resident memory {peak_mb} MB"
