"""``probe info``: runs, sweeps and folders of sweeps, as text and JSON."""

from __future__ import annotations

import json

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
