"""``probe info``: runs, sweeps, folders of runs (collections) and folders of sweeps, as text and JSON;
``probe.open_sweep`` on a collection."""

from __future__ import annotations

import json
import re

import pytest

from probe.cli import main
from tests.conftest import PARITY_ARGS as PARITY


def test_info_json_and_missing_path(tmp_path, capsys, tiny_parity_run):
    assert main(["info", str(tiny_parity_run), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["runs"][0]["epochs_committed"] == 4
    assert main(["info", str(tmp_path / "nothing")]) == 2
    assert "no such directory" in capsys.readouterr().err

def test_info_on_a_folder_of_sweeps(tmp_path, capsys):
    for budget in ("fixed", "matched"):
        assert main(["sweep", *PARITY, "--lr", "0.1", "0.2", "--budget", budget, "--steps", "4",
                     "--out", str(tmp_path / "pair" / budget)]) == 0
    capsys.readouterr()
    assert main(["info", str(tmp_path / "pair")]) == 0
    text = capsys.readouterr().out
    assert "budget=fixed" in text and "budget=matched" in text
    assert main(["info", str(tmp_path / "pair"), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert [s["sweep"]["budget"] for s in payload["sweeps"]] == ["fixed", "matched"]
    assert [len(s["runs"]) for s in payload["sweeps"]] == [2, 2]


def _train(out, lr: str, seed: str, *extra: str) -> None:
    assert main(["train", *PARITY, "--lr", lr, "--seed", seed, "--steps", "4", "--quiet", "--out", str(out),
                 *extra]) == 0


@pytest.mark.slow(seconds=8)
def test_info_and_open_sweep_on_a_collection_of_separately_trained_runs(tmp_path, capsys):
    """A folder of runs trained one by one (no sweep.json) reads like a sweep: its runs in name order, axes lr and
    seed (and batch size, which differs between its runs) with their distinct values, the budget they share."""
    import probe
    from probe.store.reader import Collection

    folder = tmp_path / "runs"
    _train(folder / "b_lr0.2", "0.2", "1")
    _train(folder / "a_lr0.1", "0.1", "0", "--batch-size", "16")
    _train(folder / "c_lr0.1", "0.1", "1")
    (folder / "notes").mkdir()  # neither a run nor a sweep: not part of it
    capsys.readouterr()
    collection = probe.open_sweep(folder)
    assert isinstance(collection, Collection) and collection.budget == "fixed"
    assert [r.name for r in collection.runs] == ["a_lr0.1", "b_lr0.2", "c_lr0.1"]
    assert [(r.lr, r.seed) for r in collection.runs] == [(0.1, 0), (0.2, 1), (0.1, 1)]
    assert collection.axes == {"lr": [0.1, 0.2], "seed": [0, 1], "batch_size": [16, 64]}
    assert collection.config["runs"][0] == {"name": "a_lr0.1", "lr": 0.1, "seed": 0, "batch_size": 16}
    assert main(["info", str(folder), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in payload["runs"]] == ["a_lr0.1", "b_lr0.2", "c_lr0.1"]
    assert [r["status"] for r in payload["runs"]] == ["complete"] * 3
    assert payload["collection"]["axes"] == collection.axes and payload["collection"]["path"] == str(folder)
    assert main(["info", str(folder)]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"collection {folder}  3 runs") and "b_lr0.2" in text
    # the commands that take a run or a sweep take the folder too: every run's weights, each run's attributions
    assert main(["export", str(folder), "--weights", str(tmp_path / "weights")]) == 0
    for run in collection.runs:
        exported = sorted(p.name for p in (tmp_path / "weights" / run.name).iterdir())
        assert exported == [f"epoch_{e:05d}.safetensors" for e in run.weight_epochs]
    capsys.readouterr()
    assert main(["attribute", str(folder), "--method", "saliency", "--n", "4", "--out", str(tmp_path / "attr")]) == 0
    table = next((tmp_path / "attr").glob("*.csv")).read_text().splitlines()
    assert [line.split(",")[0] for line in table[1:]] == ["a_lr0.1", "c_lr0.1", "b_lr0.2"]  # by (lr, seed)
    _train(folder / "d_other_data", "0.1", "2", "--data-seed", "7")  # another draw of the data: not comparable
    assert main(["attribute", str(folder), "--method", "saliency", "--n", "4", "--out", str(tmp_path / "a2")]) == 2
    assert "trained on different datasets" in capsys.readouterr().err and not (tmp_path / "a2").exists()


@pytest.mark.slow(seconds=8)
def test_a_folder_of_sweeps_and_runs_and_what_open_sweep_refuses(tmp_path, capsys):
    import probe
    from probe.errors import RunDirectoryError
    from probe.store.reader import folder_members

    mixed = tmp_path / "mixed"
    assert main(["sweep", *PARITY, "--lr", "0.1", "0.2", "--steps", "4", "--quiet", "--out", str(mixed / "s")]) == 0
    _train(mixed / "single", "0.3", "0")
    assert folder_members(mixed) == ([mixed / "s"], [mixed / "single"])
    capsys.readouterr()
    assert main(["info", str(mixed), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert [len(s["runs"]) for s in payload["sweeps"]] == [2]
    assert [r["name"] for r in payload["collection"]["runs"]] == ["single"]
    for path, message in ((mixed, "holds sweeps (s)"), (mixed / "single", "a run directory"),
                          (tmp_path / "empty", "no such directory")):
        with pytest.raises(RunDirectoryError, match=re.escape(message)):
            probe.open_sweep(path)
    (tmp_path / "nothing").mkdir()
    assert main(["info", str(tmp_path / "nothing")]) == 2
    assert "neither a run directory" in capsys.readouterr().err
