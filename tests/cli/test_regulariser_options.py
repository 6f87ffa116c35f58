"""``probe train`` / ``probe sweep`` regularisation options and ``--axis``: bad values exit 2 on one line naming the
option before anything is written; a sweep over regularisers is the product of its axes, names its runs by their
values, records its axes in sweep.json and resumes."""

from __future__ import annotations

import json

import pytest

import probe
from probe.cli import main
from probe.train.sweep import AXES
from tests.conftest import run_cli

DATA = ["--dataset", "parity", "--data-option", "n_train=64", "--data-option", "n_val=16", "--data-option",
        "n_test=16", "--model-option", "width=8", "--quiet"]


def _one_line_exit_2(args, out, capsys, message):
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("probe: error:") and message in err and "\n" not in err, err
    assert not out.exists()


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--l1", "-0.0001"], "l1 (--l1) must be a number >= 0"),
        (["--l2", "-0.1"], "l2 (--l2) must be a number >= 0"),
        (["--focal-gamma", "-1"], "focal_gamma (--focal-gamma) must be a number >= 0"),
        (["--sam-rho", "0"], "sam_rho (--sam-rho) must be a number > 0"),
        (["--sam-rho", "-0.05"], "sam_rho (--sam-rho) must be a number > 0"),
        (["--label-smoothing", "1"], "label_smoothing (--label-smoothing) must lie in [0, 1)"),
        (["--label-smoothing", "-0.1"], "label_smoothing (--label-smoothing) must lie in [0, 1)"),
        (["--sam-adaptive"], "sam_adaptive (--sam-adaptive) needs sam_rho (--sam-rho)"),
    ],
)
@pytest.mark.parametrize("command", ["train", "sweep"])
def test_bad_regulariser_values_exit_2_naming_the_option_before_any_write(tmp_path, capsys, command, option,
                                                                           message):
    _one_line_exit_2([command, *DATA, "--lr", "0.1", "--epochs", "1", *option], tmp_path / "out", capsys, message)


@pytest.mark.parametrize(
    ("axis", "message"),
    [
        (["--axis", "l1", "0", "-0.0001"], "l1 (--l1) must be a number >= 0"),
        (["--axis", "l2", "-1"], "l2 (--l2) must be a number >= 0"),
        (["--axis", "focal_gamma", "1", "-2"], "focal_gamma (--focal-gamma) must be a number >= 0"),
        (["--axis", "sam_rho", "off", "0"], "sam_rho (--sam-rho) must be a number > 0"),
        (["--axis", "label_smoothing", "0", "1"], "label_smoothing (--label-smoothing) must lie in [0, 1)"),
        (["--axis", "momentum", "0", "1"], "momentum must lie in [0, 1)"),
        (["--axis", "gamma", "0.5"], "--axis gamma: cannot sweep 'gamma'; sweepable: lr, seed, batch_size"),
        (["--axis", "seed", "1.5"], "--axis seed: '1.5' is not an integer"),
        (["--axis", "l1", "small"], "--axis l1: 'small' is not a number"),
        (["--axis", "l1"], "--axis l1 needs at least one value"),
        (["--axis", "l1", "0", "--axis", "l1", "1e-4"], "--axis l1 is given twice"),
        (["--axis", "l1", "0", "0"], "lists a value twice"),
        (["--axis", "lr", "0.2"], "--axis lr and --lr both give lr"),
        (["--l2", "0.1", "--axis", "l2", "0.2"], "--axis l2 and --l2 both give l2"),
        (["--seeds", "1", "--axis", "seed", "2"], "--axis seed and --seeds both give seed"),
    ],
)
def test_bad_axes_exit_2_on_one_line_before_any_write(tmp_path, capsys, axis, message):
    _one_line_exit_2(["sweep", *DATA, "--lr", "0.1", "--epochs", "1", *axis], tmp_path / "sweep", capsys, message)


def test_the_real_entry_points_refuse_bad_values_with_exit_2(tmp_path):
    for args in (["train", *DATA, "--lr", "0.1", "--epochs", "1", "--focal-gamma", "-1"],
                 ["sweep", *DATA, "--lr", "0.1", "--epochs", "1", "--axis", "sam_rho", "0.05", "0"]):
        out = tmp_path / args[0]
        done = run_cli(*args, "--out", str(out))
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and ("--focal-gamma" in lines[0] or "--sam-rho" in lines[0]), lines
        assert not out.exists()


def test_sweep_help_names_every_axis_and_train_help_every_option(capsys):
    for command in ("sweep", "train"):
        assert main([command, "--help"]) == 0
        text = " ".join(capsys.readouterr().out.split())
        for option in ("--l1", "--l2", "--focal-gamma", "--label-smoothing", "--sam-rho", "--sam-adaptive"):
            assert option in text, (command, option)
        if command == "sweep":
            assert "--axis NAME [V ...]" in text
            for name in AXES:
                assert name in text.split("--axis NAME [V ...]")[-1].split("recording and hardware")[0], name


def test_a_train_run_records_its_regularisers_in_run_json(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *DATA, "--lr", "0.1", "--epochs", "1", "--l1", "1e-4", "--l2", "0.01", "--focal-gamma", "2",
                 "--label-smoothing", "0.1", "--sam-rho", "0.05", "--sam-adaptive", "--out", str(out)]) == 0
    config = probe.open_run(out).config
    assert {k: config[k] for k in ("l1", "l2", "focal_gamma", "label_smoothing", "sam_rho", "sam_adaptive")} == \
        {"l1": 1e-4, "l2": 0.01, "focal_gamma": 2.0, "label_smoothing": 0.1, "sam_rho": 0.05, "sam_adaptive": True}
    capsys.readouterr()
    assert main(["info", str(out)]) == 0  # probe info lists the regularisers in use
    lines = capsys.readouterr().out.splitlines()
    shown = dict(line.split(None, 1) for line in lines[1:lines.index(next(x for x in lines if x.startswith("  run ")))])
    assert {k: shown.get(k) for k in ("l1", "l2", "focal_gamma", "sam_rho", "sam_adaptive")} == \
        {"l1": "0.0001", "l2": "0.01", "focal_gamma": "2.0", "sam_rho": "0.05", "sam_adaptive": "True"}


def test_a_regulariser_sweep_is_the_product_of_its_axes_and_resumes(tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["sweep", *DATA, "--lr", "0.1", "0.2", "--axis", "l1", "0", "1e-4", "--axis", "sam_rho", "off", "0.05",
            "--focal-gamma", "1", "--epochs", "1", "--out", str(out)]
    assert main(args) == 0
    stored = json.loads((out / "sweep.json").read_text())
    assert stored["axes"] == {"lr": [0.1, 0.2], "seed": [0], "l1": [0.0, 1e-4], "sam_rho": [None, 0.05]}
    assert stored["base_config"]["focal_gamma"] == 1.0
    runs = {r.path.name: r.config for r in probe.open_sweep(out).runs}
    expected = {f"lr{lr}_seed0_l1pen{l1}_sam{sam}": (float(lr), float(l1), None if sam == "off" else float(sam))
                for lr in ("0.1", "0.2") for l1 in ("0", "0.0001") for sam in ("off", "0.05")}
    assert sorted(runs) == sorted(expected)
    for name, (lr, l1, rho) in expected.items():
        config = runs[name]
        assert (config["lr"], config["l1"], config["sam_rho"], config["focal_gamma"]) == (lr, l1, rho, 1.0), name
    capsys.readouterr()
    assert main(["sweep", "--resume", "--out", str(out), "--quiet"]) == 0
    assert main([*args, "--resume"]) == 0
    changed = [a if a != "1e-4" else "1e-3" for a in args]
    assert main([*changed, "--resume"]) == 2
    assert "these options differ: axes" in capsys.readouterr().err
    assert [r.status for r in probe.open_sweep(out).runs] == ["complete"] * 8


def test_an_axis_with_one_value_is_an_axis_and_seed_and_lr_can_be_given_as_axes(tmp_path):
    out = tmp_path / "sweep"
    assert main(["sweep", *DATA, "--axis", "lr", "0.1", "--axis", "seed", "0", "1", "--axis", "label_smoothing",
                 "0.1", "--epochs", "1", "--out", str(out)]) == 0
    assert json.loads((out / "sweep.json").read_text())["axes"] == {"lr": [0.1], "seed": [0, 1],
                                                                    "label_smoothing": [0.1]}
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["lr0.1_seed0_ls0.1", "lr0.1_seed1_ls0.1"]
