"""A full disk or a file-size limit mid-training: one line, exit code 1 (never a signal), no temporary file left,
every committed epoch intact, and ``--resume`` finishes the run once there is room. Real faults: a small tmpfs that
fills up, and RLIMIT_FSIZE (``ulimit -f``)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import probe
from probe.store.atomic import TEMP_PREFIX, atomic_write_json
from tests.conftest import REPO, run_cli
from tests.mounts import resize, tmpfs

EPOCHS = 5
#: a parity run whose epoch files are 38 kB (epoch 0) and 53 kB (the others), with a resume file of 16 kB: about
#: 330 kB in all.
TRAIN_ARGS = ["train", "--dataset", "parity", "--data-option", "n_train=256", "--data-option", "n_val=64",
              "--data-option", "n_test=64", "--data-option", "dim=12", "--model", "mlp", "--model-option",
              "width=32", "--lr", "0.1", "--batch-size", "32", "--epochs", str(EPOCHS), "--quiet"]


def assert_committed_epochs_intact(run_dir: Path) -> list[int]:
    """No temporary file is left, and every epoch the manifest lists has the recorded size and sha256."""
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith(TEMP_PREFIX)]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    for entry in manifest["epochs"]:
        data = (run_dir / entry["file"]).read_bytes()
        assert len(data) == entry["size"], entry["file"]
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["file"]
    epochs = [e["epoch"] for e in manifest["epochs"]]
    assert epochs == list(range(len(epochs)))
    return epochs


def assert_one_line_error(code: int, stderr: str, reason: str) -> None:
    assert code == 1, (code, stderr)  # a signal would be negative
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("probe: error: ") and reason in lines[0], stderr


def train_in_process(capsys, *args: str) -> tuple[int, str]:
    """``probe ARGS`` through :func:`probe.cli.main` in this process (no interpreter start-up): exit code, stderr."""
    from probe.cli import main

    capsys.readouterr()
    code = main(list(args))
    return code, capsys.readouterr().err


# The disk fills up at different points: 150k while epoch 2 is written, 180k while its resume file is written, 196k
# while manifest.json is replaced after epoch 2 (260k, in the next test, while epoch 4 is written from a fresh
# process).
@pytest.mark.parametrize("size", ["150k", "180k", "196k"])
def test_training_into_a_full_disk_stops_cleanly_and_resumes(tmp_path, capsys, size):
    with tmpfs(tmp_path / "disk", size) as disk:
        out = disk / "run"
        code, err = train_in_process(capsys, *TRAIN_ARGS, "--out", str(out))
        assert_one_line_error(code, err, "No space left on device")
        assert f"'{out}/" in err  # names the file that could not be written
        committed = assert_committed_epochs_intact(out)
        assert 1 <= len(committed) <= EPOCHS
        resize(disk, "1m")
        code, err = train_in_process(capsys, "train", "--resume", "--out", str(out), "--quiet")
        assert code == 0, err
        assert assert_committed_epochs_intact(out) == list(range(EPOCHS + 1))
        run = probe.open_run(out)
        assert run.status == "complete" and len(run.records("test", EPOCHS)) == 64


@pytest.mark.slow
def test_full_disk_exits_1_from_the_command_line(tmp_path):
    """The same in a fresh ``probe`` process: exit status 1, never a signal (HDF5 once segfaulted here)."""
    with tmpfs(tmp_path / "disk", "260k") as disk:
        res = run_cli(*TRAIN_ARGS, "--out", str(disk / "run"))
        assert_one_line_error(res.returncode, res.stderr, "No space left on device")
        assert len(assert_committed_epochs_intact(disk / "run")) >= 1


def _limit_file_size(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # as a shell leaves it: only probe itself may ignore it

    return apply


@pytest.mark.slow
def test_file_size_limit_is_an_error_not_a_signal(tmp_path):
    """Under ``ulimit -f`` below one epoch file the trainer stops with EFBIG: no SIGXFSZ, and no segfault of HDF5
    (which wrote the file itself before)."""
    out = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "probe.cli", *TRAIN_ARGS, "--out", str(out)], capture_output=True,
                         text=True, timeout=300, cwd=REPO, preexec_fn=_limit_file_size(45_000))
    assert_one_line_error(res.returncode, res.stderr, "File too large")
    assert assert_committed_epochs_intact(out) == [0]  # epoch 0 (38 kB) fits, epoch 1 (53 kB) does not


def test_json_replaced_on_a_full_disk_keeps_the_old_file(tmp_path):
    with tmpfs(tmp_path / "disk", "64k") as disk:
        target = disk / "manifest.json"
        atomic_write_json(target, {"epochs": [0]})
        before = target.read_bytes()
        fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            with pytest.raises(OSError) as full:  # take every free block
                while True:
                    os.write(fd, b"x" * 4096)
        finally:
            os.close(fd)
        assert full.value.errno == errno.ENOSPC
        with pytest.raises(OSError) as err:
            atomic_write_json(target, {"epochs": list(range(5000))})
        assert err.value.errno == errno.ENOSPC and err.value.filename == str(target)
        assert target.read_bytes() == before
        assert sorted(os.listdir(disk)) == ["filler", "manifest.json"]
