"""``probe train``, ``probe sweep`` and ``probe info`` from the command line, including bad input."""

from __future__ import annotations

import json

import pytest

import probe
from probe.cli import main
from probe.train import EXIT_DIVERGED

PARITY = ["--dataset", "parity", "--data-option", "n_train=128", "--data-option", "n_val=32",
          "--data-option", "n_test=32", "--model", "mlp", "--model-option", "width=16", "--quiet"]


def test_acceptance_sweep_colored_mnist_cnn(tmp_path, capsys):
    out = tmp_path / "sweep"
    code = main(["sweep", "--dataset", "colored-mnist", "--model", "cnn", "--lr", "0.01", "0.1", "--epochs", "3",
                 "--out", str(out), "--quiet"])
    assert code == 0
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "lr0.01_seed0" in text and "lr0.1_seed0" in text and "complete" in text
    sweep = probe.open_sweep(out)
    assert [r.lr for r in sweep.runs] == [0.01, 0.1]
    n_test = len(sweep.runs[0].records("test", 0))
    for run in sweep.runs:
        assert run.dynamics("test").logits.shape == (4, n_test, 10)


def test_divergence_is_recorded_and_the_sweep_goes_on(tmp_path, capsys):
    out = tmp_path / "sweep"
    code = main(["sweep", *PARITY, "--lr", "0.1", "1e12", "--epochs", "3", "--out", str(out)])
    assert code == 0
    sweep = probe.open_sweep(out)
    ok, bad = sweep.runs
    assert ok.status == "complete" and ok.epochs == [0, 1, 2, 3]
    assert bad.status == "diverged"
    d = bad.diverged
    assert set(d) >= {"step", "epoch", "loss", "lr"} and d["lr"] == 1e12
    assert d["loss"] in ("nan", "inf")
    assert bad.epochs == list(range(d["last_committed_epoch"] + 1))
    assert bad.records("test", bad.epochs[-1]).logits.shape == (32, 2)  # still analysable
    assert (out / bad.name / "diverged.json").is_file()
    main(["info", str(out)])
    assert "diverged" in capsys.readouterr().out


def test_train_exits_with_its_own_code_on_divergence(tmp_path):
    out = tmp_path / "run"
    assert main(["train", *PARITY, "--lr", "1e12", "--epochs", "2", "--out", str(out)]) == EXIT_DIVERGED
    assert json.loads((out / "diverged.json").read_text())["epoch"] >= 1


def test_training_length_in_steps_ends_inside_an_epoch(tmp_path):
    out = tmp_path / "run"
    assert main(["train", *PARITY, "--lr", "0.1", "--steps", "10", "--batch-size", "32", "--out", str(out)]) == 0
    run = probe.open_run(out)
    assert run.epochs == [0, 1, 2, 3] and run.step_of(3) == 10  # 4 steps per epoch, the last epoch has 2


def test_record_schedule_every_k_keeps_the_last_epoch(tmp_path):
    out = tmp_path / "run"
    assert main(["train", *PARITY, "--lr", "0.1", "--epochs", "7", "--record", "every:3", "--out", str(out)]) == 0
    assert probe.open_run(out).epochs == [0, 3, 6, 7]


def test_matched_budget_sweep_holds_rate_times_steps(tmp_path):
    out = tmp_path / "sweep"
    assert main(["sweep", *PARITY, "--lr", "0.05", "0.1", "0.2", "--budget", "matched", "--steps", "6",
                 "--out", str(out)]) == 0
    sweep = probe.open_sweep(out)
    assert sweep.budget == "matched"
    steps = {r.lr: r.step_of(r.epochs[-1]) for r in sweep.runs}
    assert steps == {0.05: 24, 0.1: 12, 0.2: 6}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "nope", "--lr", "0.1", "--epochs", "1"], "unknown dataset 'nope'"),
        ([*PARITY, "--model", "transformer", "--lr", "0.1", "--epochs", "1"], "unknown model 'transformer'"),
        ([*PARITY, "--lr", "0", "--epochs", "1"], "lr must be a positive number"),
        ([*PARITY, "--lr", "-1", "--epochs", "1"], "lr must be a positive number"),
        ([*PARITY, "--lr", "0.1", "--epochs", "0"], "epochs must be >= 1"),
        ([*PARITY, "--lr", "0.1"], "--epochs or --steps"),
        ([*PARITY, "--lr", "0.1", "--epochs", "1", "--data-option", "colour=3"], "takes no option colour"),
        ([*PARITY, "--lr", "0.1", "--epochs", "1", "--rho", "1.5"], "rho must lie in [0, 1]"),
        ([*PARITY, "--lr", "0.1", "--epochs", "1", "--record", "sometimes"], "record schedule"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    assert main(["train", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("probe: error:") and message in err and "\n" not in err
    assert not out.exists()


def test_existing_run_needs_resume_or_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *PARITY, "--lr", "0.1", "--epochs", "1", "--out", str(out)]) == 0
    before = sorted(p.name for p in out.iterdir())
    manifest = (out / "manifest.json").read_bytes()
    assert main(["train", *PARITY, "--lr", "0.1", "--epochs", "1", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == before and (out / "manifest.json").read_bytes() == manifest
    assert main(["train", *PARITY, "--lr", "0.2", "--epochs", "1", "--out", str(out), "--resume"]) == 2
    assert "lr (run.json 0.1, asked 0.2)" in capsys.readouterr().err
    assert main(["train", *PARITY, "--lr", "0.2", "--epochs", "1", "--out", str(out), "--overwrite"]) == 0
    assert probe.open_run(out).lr == 0.2


def test_unwritable_output_is_refused(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["train", *PARITY, "--lr", "0.1", "--epochs", "1", "--out", str(blocker / "run")]) == 2
    assert "file" in capsys.readouterr().err
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        import os

        if os.geteuid() != 0:  # root ignores permission bits
            assert main(["train", *PARITY, "--lr", "0.1", "--epochs", "1", "--out", str(locked / "run")]) == 2
            assert "not writable" in capsys.readouterr().err
    finally:
        locked.chmod(0o700)


def test_info_json_and_missing_path(tmp_path, capsys, tiny_parity_run):
    assert main(["info", str(tiny_parity_run), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["runs"][0]["epochs_committed"] == 4
    assert main(["info", str(tmp_path / "nothing")]) == 2
    assert "no such directory" in capsys.readouterr().err


def test_parallel_jobs_and_extra_axes_give_the_same_runs_as_one_at_a_time(tmp_path):
    """--jobs 2 trains in separate processes; batch size is swept as its own axis; results equal a serial sweep."""
    import numpy as np

    common = [*PARITY, "--lr", "0.05", "0.2", "--batch-size", "16", "32", "--epochs", "2"]
    assert main(["sweep", *common, "--jobs", "2", "--out", str(tmp_path / "par")]) == 0
    assert main(["sweep", *common, "--out", str(tmp_path / "ser")]) == 0
    par, ser = probe.open_sweep(tmp_path / "par"), probe.open_sweep(tmp_path / "ser")
    assert par.axes["batch_size"] == [16, 32]
    assert sorted(r.name for r in par.runs) == sorted(
        f"lr{lr}_seed0_bs{bs}" for lr in ("0.05", "0.2") for bs in (16, 32))
    for a, b in zip(par.runs, ser.runs):
        assert a.name == b.name and a.config["batch_size"] == b.config["batch_size"]
        assert np.array_equal(a.records("test", 2).logits, b.records("test", 2).logits)


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


def test_record_splits_and_no_sgd_logits_shrink_the_epoch_files(tmp_path):
    full, lean = tmp_path / "full", tmp_path / "lean"
    assert main(["train", *PARITY, "--lr", "0.1", "--epochs", "2", "--out", str(full)]) == 0
    assert main(["train", *PARITY, "--lr", "0.1", "--epochs", "2", "--record-splits", "test",
                 "--no-sgd-logits", "--out", str(lean)]) == 0
    a, b = probe.open_run(full), probe.open_run(lean)
    assert b.splits == ["test"]
    with pytest.raises(probe.errors.ProbeInputError, match="not recorded"):
        b.records("train", 1)
    assert b.sgd_records(1).logits.shape == (128, 0)
    import numpy as np

    assert np.array_equal(a.sgd_records(1).loss, b.sgd_records(1).loss)  # training itself is unchanged
    assert np.array_equal(a.records("test", 2).logits, b.records("test", 2).logits)
    assert b.summary()["bytes"] < a.summary()["bytes"]
