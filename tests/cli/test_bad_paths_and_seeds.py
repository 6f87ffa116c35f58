"""Output paths that cannot hold a run, and negative seeds: one line, exit 2, nothing written."""

from __future__ import annotations

import pytest

from probe.cli import main
from probe.errors import ProbeInputError
from tests.conftest import PARITY_ARGS
from tests.mounts import tmpfs

PARITY = ["--dataset", "parity", "--data-option", "n_train=64", "--data-option", "n_val=16", "--data-option",
          "n_test=16", "--model-option", "width=8", "--epochs", "1", "--quiet"]


def assert_one_line_error(capsys, *fragments: str) -> None:
    err = capsys.readouterr().err
    assert err.startswith("probe: error:") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, err


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["train", "--lr", "0.1", "--seed", "-1"], "seed must be an integer in [0, 2**63), got -1"),
        (["train", "--lr", "0.1", "--data-seed", "-1"], "dataset seed must be an integer in [0, 2**63), got -1"),
        (["train", "--lr", "0.1", "--data-option", "seed=-4"], "dataset seed must be an integer"),
        (["sweep", "--lr", "0.1", "--seeds", "0", "-1"], "seed must be an integer in [0, 2**63), got -1"),
        (["sweep", "--lr", "0.1", "--data-seed", "-2"], "dataset seed must be an integer"),
    ],
)
def test_negative_seeds_are_refused(tmp_path, capsys, command, message):
    out = tmp_path / "out"
    assert main([*command, *PARITY, "--out", str(out)]) == 2
    assert_one_line_error(capsys, message)
    assert not out.exists()


@pytest.mark.parametrize("command", [["train", "--lr", "0.1"], ["sweep", "--lr", "0.1", "0.2"]])
def test_a_path_that_cannot_hold_a_directory_is_refused(tmp_path, capsys, command):
    assert main([*command, *PARITY, "--out", "/proc/x"]) == 2
    assert_one_line_error(capsys, "/proc/x: cannot create the directory")
    assert main([*command, *PARITY, "--out", "/proc/self/x/run"]) == 2
    assert_one_line_error(capsys, "/proc/self/x/run")

    blocker = tmp_path / "notes.txt"
    blocker.write_text("mine")
    assert main([*command, *PARITY, "--out", str(blocker / "run")]) == 2
    assert_one_line_error(capsys, "notes.txt: is a file")
    assert main([*command, *PARITY, "--out", str(blocker)]) == 2
    assert_one_line_error(capsys, "notes.txt: exists and is not a directory")
    assert blocker.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_read_only_mount_is_refused(tmp_path, capsys):
    with tmpfs(tmp_path / "ro", "1m", read_only=True) as mount:
        assert main(["train", "--lr", "0.1", *PARITY, "--out", str(mount / "deep" / "run")]) == 2
        assert_one_line_error(capsys, str(mount / "deep" / "run"))
        assert list(mount.iterdir()) == []


def test_a_failed_mkdir_removes_the_directories_it_created(tmp_path):
    """``make_directory`` creates missing parents one by one; when a later one fails the earlier ones go again."""
    from probe.store.ownership import make_directory

    parent = tmp_path / "a"
    with pytest.raises(ProbeInputError, match="cannot create the directory"):
        make_directory(parent / ("x" * 300) / "run")  # the over-long name fails after "a" was created
    assert not parent.exists()


def test_unwritable_output_is_refused(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["train", *PARITY_ARGS, "--lr", "0.1", "--epochs", "1", "--out", str(blocker / "run")]) == 2
    assert "file" in capsys.readouterr().err
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        import os

        if os.geteuid() != 0:  # root ignores permission bits
            assert main(["train", *PARITY_ARGS, "--lr", "0.1", "--epochs", "1", "--out", str(locked / "run")]) == 2
            assert "not writable" in capsys.readouterr().err
    finally:
        locked.chmod(0o700)
