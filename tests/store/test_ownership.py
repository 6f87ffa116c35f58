"""``--overwrite`` replaces only an inactive run or sweep directory probe can prove it wrote; anything else exits 2
and stays byte-for-byte as it was."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

import probe
from probe.cli import main
from probe.errors import RunDirectoryError, RunLockedError
from probe.store.ownership import check_replaceable, directory_kind
from probe.train import run_sweep, train
from tests.conftest import tiny_parity_config
from tests.store.snapshot import tree_digest

PARITY = ["--dataset", "parity", "--data-option", "n_train=64", "--data-option", "n_val=16", "--data-option",
          "n_test=16", "--model-option", "width=8", "--epochs", "1", "--quiet"]


def users_folder(path):
    """A folder of someone's work that happens to be given as ``--out``."""
    path.mkdir()
    (path / "thesis.tex").write_text("\\documentclass{article}\n")
    (path / "sub").mkdir()
    (path / "sub" / "data.csv").write_text("a,b\n1,2\n")
    return path


@pytest.mark.parametrize("command", [["train", "--lr", "0.1"], ["sweep", "--lr", "0.1", "0.2"]])
def test_overwrite_refuses_a_folder_that_is_not_probes_and_leaves_it_byte_for_byte(tmp_path, capsys, command):
    folder = users_folder(tmp_path / "myfolder")
    before = tree_digest(folder)
    assert main([*command, *PARITY, "--out", str(folder), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("probe: error:") and err.count("\n") == 1
    assert "'sub' is not probe's" in err and "nothing was changed" in err
    assert tree_digest(folder) == before


def test_the_python_api_refuses_the_same_folders(tmp_path):
    folder = users_folder(tmp_path / "myfolder")
    before = tree_digest(folder)
    with pytest.raises(RunDirectoryError, match="not probe's"):
        train(tiny_parity_config(epochs=1), folder, overwrite=True)
    with pytest.raises(RunDirectoryError, match="not probe's"):
        run_sweep(tiny_parity_config(epochs=1), folder, {"lr": [0.1]}, overwrite=True)
    assert tree_digest(folder) == before


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda run: (run / "notes.txt").write_text("mine"), "'notes.txt' is not probe's"),
        (lambda run: (run / "epoch_00001.h5.bak").write_bytes(b"x"), "'epoch_00001.h5.bak' is not probe's"),
        (lambda run: (run / "run.json").write_text('{"title": "my experiment"}'), "run.json: not probe's"),
        (lambda run: (run / "manifest.json").write_text("{not json"), "manifest.json: not probe's"),
        (lambda run: (run / "run.json").unlink(), "no run.json"),
        (lambda run: (run / "manifest.json").unlink() or (run / "manifest.json").mkdir(),
         "'manifest.json' is not probe's"),
    ],
    ids=["extra-file", "extra-name", "foreign-run-json", "broken-manifest", "no-run-json", "directory-named-a-file"],
)
def test_a_run_with_anything_foreign_is_not_replaced(tiny_parity_run, tmp_path, mutate, message):
    run = tmp_path / "run"
    shutil.copytree(tiny_parity_run, run)
    mutate(run)
    before = tree_digest(run)
    with pytest.raises(RunDirectoryError, match=message):
        train(tiny_parity_config(epochs=1), run, overwrite=True)
    assert tree_digest(run) == before


def test_a_sweep_with_a_foreign_entry_anywhere_is_not_replaced(tiny_colored_sweep, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    shutil.copytree(tiny_colored_sweep, sweep)
    assert directory_kind(sweep) == "sweep"
    (sweep / "lr0.3_seed1" / "plot.png").write_bytes(b"\x89PNG")
    (sweep / "lr0.3_seed0" / "epoch_00001.h5").unlink()  # a damaged run is still probe's: not the reason
    before = tree_digest(sweep)
    assert main(["sweep", *PARITY, "--lr", "0.1", "--out", str(sweep), "--overwrite"]) == 2
    assert "lr0.3_seed1: not a probe run directory ('plot.png' is not probe's)" in capsys.readouterr().err
    assert tree_digest(sweep) == before
    (sweep / "lr0.3_seed1" / "plot.png").unlink()
    (sweep / "lr0.5_seed0").mkdir()  # a run sweep.json does not list
    with pytest.raises(RunDirectoryError, match="'lr0.5_seed0' is not probe's"):
        check_replaceable(sweep, kind="sweep")


def test_overwrite_of_probes_own_runs_and_sweeps_replaces_them(tiny_parity_run, tiny_colored_sweep, tmp_path):
    run, sweep = tmp_path / "run", tmp_path / "sweep"
    shutil.copytree(tiny_parity_run, run)
    shutil.copytree(tiny_colored_sweep, sweep)
    (run / ".tmp-epoch_00004.h5.12345").write_bytes(b"leftover of a crash")
    (run / "diverged.json").write_text("{}")
    train(tiny_parity_config(epochs=1, lr=0.2), run, overwrite=True)
    assert probe.open_run(run).lr == 0.2 and sorted(p.name for p in run.iterdir()) == [
        ".lock", "epoch_00000.h5", "epoch_00001.h5", "manifest.json", "resume_00001.h5", "run.json"]
    run_sweep(tiny_parity_config(epochs=1), sweep, {"lr": [0.1]}, overwrite=True)
    assert sorted(p.name for p in sweep.iterdir()) == [".lock", "lr0.1", "sweep.json"]  # old runs are gone
    with pytest.raises(RunDirectoryError, match="is a probe sweep directory, not a run"):
        train(tiny_parity_config(epochs=1), sweep, overwrite=True)


def test_overwrite_into_a_new_folder_creates_the_run_or_sweep(tmp_path):
    """``overwrite=True`` where nothing exists yet (a notebook cell run for the first time) just creates it."""
    run_sweep(tiny_parity_config(epochs=1), tmp_path / "sweep", {"lr": [0.1]}, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir()) == [".lock", "lr0.1", "sweep.json"]
    train(tiny_parity_config(epochs=1), tmp_path / "run", overwrite=True)
    assert probe.open_run(tmp_path / "run").epochs == [0, 1]
    (tmp_path / "failed_start").mkdir()
    (tmp_path / "failed_start" / ".lock").touch()  # a start that failed before run.json was written
    assert directory_kind(tmp_path / "failed_start") == "empty"


def test_resume_removes_only_what_a_crashed_writer_leaves(tiny_parity_run, tmp_path):
    """Resume deletes temp files of probe's own names and epoch files the manifest does not list, nothing else."""
    from probe.store.writer import RunWriter

    run = shutil.copytree(tiny_parity_run, tmp_path / "run")
    leftovers = [run / ".tmp-epoch_00009.h5.4242", run / ".tmp-manifest.json.4242", run / "epoch_00009.h5"]
    users = [run / ".tmp-notes.txt", run / "epoch_notes.h5", run / "my.csv"]
    for path in leftovers + users:
        path.write_bytes(b"x")
    (run / ".tmp-folder").mkdir()
    RunWriter.resume(run).close()
    assert [p.exists() for p in leftovers] == [False] * 3
    assert [p.exists() for p in users] == [True] * 3 and (run / ".tmp-folder").is_dir()
    assert probe.open_run(run).epochs == probe.open_run(tiny_parity_run).epochs


HOLD_LOCK = (
    "import fcntl, os, sys, time\n"
    "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
    "fcntl.flock(fd, fcntl.LOCK_EX)\n"
    "print('locked', flush=True)\n"
    "time.sleep(120)\n"
)


def hold_lock(lock_file):
    """A second process holding ``lock_file``'s flock, as a writer of that run or sweep does."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(lock_file)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


@pytest.mark.parametrize("locked", ["sweep", "run"])
def test_overwrite_of_an_active_sweep_exits_2_and_changes_nothing(tiny_colored_sweep, tmp_path, capsys, locked):
    sweep = tmp_path / "sweep"
    shutil.copytree(tiny_colored_sweep, sweep)
    holder = hold_lock(sweep / ".lock" if locked == "sweep" else sweep / "lr0.3_seed0" / ".lock")
    try:
        before = tree_digest(sweep)
        assert main(["sweep", *PARITY, "--lr", "0.1", "--out", str(sweep), "--overwrite"]) == 2
        err = capsys.readouterr().err
        assert "another process is writing this " + locked in err and err.count("\n") == 1
        with pytest.raises(RunLockedError):
            run_sweep(tiny_parity_config(epochs=1), sweep, {"lr": [0.1]}, overwrite=True)
        assert tree_digest(sweep) == before
    finally:
        holder.kill()
        holder.wait()
    run_sweep(tiny_parity_config(epochs=1), sweep, {"lr": [0.1]}, overwrite=True)  # free again: replaced
    assert json.loads((sweep / "sweep.json").read_text())["axes"] == {"lr": [0.1]}


def test_overwrite_of_an_active_run_exits_2_and_changes_nothing(tiny_parity_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_parity_run, run)
    holder = hold_lock(run / ".lock")
    try:
        before = tree_digest(run)
        assert main(["train", *PARITY, "--lr", "0.1", "--out", str(run), "--overwrite"]) == 2
        assert "another process is writing this run" in capsys.readouterr().err
        assert tree_digest(run) == before
    finally:
        holder.kill()
        holder.wait()
