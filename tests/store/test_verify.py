"""``probe verify`` and ``verify_run``: every file of every run re-checked, one line per run, exit 0 / 1."""

from __future__ import annotations

import shutil

import pytest

import probe
from probe.cli import main
from probe.errors import RunDirectoryError
from probe.store.verify import verify_path, verify_run
from tests.conftest import run_cli


@pytest.fixture
def sweeps(tiny_colored_sweep, tmp_path):
    """A folder holding a copy of the tiny colored sweep, whose second run has a truncated last epoch."""
    folder = tmp_path / "sweeps"
    shutil.copytree(tiny_colored_sweep, folder / "colored")
    runs = sorted(p for p in (folder / "colored").iterdir() if p.is_dir())
    last = probe.open_run(runs[1]).epoch_path(probe.open_run(runs[1]).epochs[-1])
    last.write_bytes(last.read_bytes()[:-100])
    return folder, runs


def last_file(run_dir) -> str:
    """The name of the last committed epoch file of ``run_dir``."""
    run = probe.open_run(run_dir)
    return run.epoch_path(run.epochs[-1]).name


def test_verify_run_reports_each_damaged_epoch(sweeps):
    _, runs = sweeps
    intact, damaged = verify_run(runs[0]), verify_run(runs[1])
    committed = probe.open_run(runs[1]).epochs
    assert intact.ok and intact.epochs == probe.open_run(runs[0]).epochs and intact.line() == f"{runs[0]}: ok"
    assert not damaged.ok and damaged.status == "damaged" and damaged.epochs == committed[:-1]
    (problem,) = damaged.problems
    assert problem.file == runs[1] / last_file(runs[1]) and "the manifest says" in problem.reason
    assert damaged.line() == f"{runs[1]}: damaged: {last_file(runs[1])}: {problem.reason}"


def test_probe_verify_on_a_run_a_sweep_and_a_folder_of_sweeps(sweeps, capsys):
    folder, runs = sweeps
    expected = [f"{runs[0]}: ok", f"{runs[1]}: damaged: {last_file(runs[1])}: "]
    result = run_cli("verify", str(folder / "colored"))
    assert result.returncode == 1 and result.stderr == ""
    assert main(["verify", str(folder)]) == 1
    assert capsys.readouterr().out == result.stdout  # a folder of sweeps: the same lines
    lines = result.stdout.splitlines()
    assert len(lines) == len(runs) == 4
    assert lines[0] == expected[0] and lines[1].startswith(expected[1]) and "truncated" in lines[1]
    assert all(line.endswith(": ok") for line in lines[2:])
    assert main(["verify", str(runs[0])]) == 0 and capsys.readouterr().out == f"{runs[0]}: ok\n"
    assert main(["verify", str(folder / "nothing")]) == 2
    assert capsys.readouterr().err.strip() == f"probe: error: {folder / 'nothing'}: no such directory"


def test_a_damaged_sweep_json_is_one_damaged_line(sweeps, capsys):
    folder, _ = sweeps
    (folder / "colored" / "sweep.json").write_text('{"schema_version": "1.0", "axes": {')
    (report,) = verify_path(folder / "colored")
    assert report.path == folder / "colored" and str(report.problems[0]).startswith("sweep.json: not valid JSON")
    assert main(["verify", str(folder)]) == 1
    assert capsys.readouterr().out.startswith(f"{folder / 'colored'}: damaged: sweep.json: ")
    with pytest.raises(RunDirectoryError):
        verify_path(folder / "colored" / "nothing")


def test_info_shows_a_run_with_damaged_json_in_a_sweep(sweeps, capsys):
    folder, runs = sweeps
    (runs[2] / "run.json").write_text("{")
    assert main(["info", str(folder / "colored")]) == 1
    out, err = capsys.readouterr()
    row = next(line for line in out.splitlines() if line.strip().startswith(runs[2].name))
    assert "damaged" in row and "run.json: not valid JSON" in row
    assert err.startswith(f"probe: error: {runs[2]}: damaged: run.json: not valid JSON")
    assert len(err.splitlines()) == 1  # the truncated epoch of runs[1] is seen only with --verify
    assert main(["info", "--verify", str(folder / "colored")]) == 1
    assert len(capsys.readouterr().err.splitlines()) == 2
