"""Training configurations: every bad field refused on one line before anything is written; a run's configuration
is the one --resume continues."""

from __future__ import annotations

import pytest

import probe
from probe.cli import main
from probe.errors import ProbeInputError
from probe.train import TrainConfig
from tests.conftest import PARITY_ARGS as PARITY


def cfg(**kw):
    return TrainConfig(dataset="parity", model="mlp", lr=1.0, epochs=1, **kw)


def test_config_validation_names_the_field():
    with pytest.raises(ProbeInputError, match="nesterov needs momentum"):
        cfg(nesterov=True).validate()
    with pytest.raises(ProbeInputError, match="exactly one of epochs or steps"):
        TrainConfig(dataset="parity", model="mlp", lr=0.1, epochs=2, steps=5).validate()
    with pytest.raises(ProbeInputError, match="unknown optimizer"):
        cfg(optimizer="lbfgs").validate()

def test_train_config_validates_seeds_for_the_python_api():
    with pytest.raises(ProbeInputError, match="seed must be"):
        TrainConfig(dataset="parity", model="mlp", lr=0.1, epochs=1, seed=-1).validate()
    with pytest.raises(ProbeInputError, match="dataset seed must be"):
        TrainConfig(dataset="parity", model="mlp", lr=0.1, epochs=1, dataset_options={"seed": 1.5}).validate()
    TrainConfig(dataset="parity", model="mlp", lr=0.1, epochs=1, seed=2**63 - 1).validate()

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
