"""``--preset`` on ``probe train`` and ``probe sweep``: a run records its preset and the preset's values (the given
options winning), ``probe info`` shows it, ``--resume`` accepts the original command, and a missing ``--weights``, an
unknown preset or a contradicting ``--dataset`` exit 2 before anything is written."""

from __future__ import annotations

import json

import pytest
import torch

from probe.cli import main
from probe.models import build_model
from probe.models.weights import probe_to_torchvision_key
from probe.train.presets import PRESETS
from tests.data.probe_data_fixtures import write_waterbirds


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A generated Waterbirds release and a resnet18 state dict in torchvision's layout (random values)."""
    base = tmp_path_factory.mktemp("presets")
    write_waterbirds(base / "wb", segmentations=False)
    torch.manual_seed(3)
    model = build_model("resnet18", (3, 224, 224), 1000)
    state = {probe_to_torchvision_key(k): v for k, v in model.state_dict().items()}
    weights = base / "resnet18_tv.pth"
    torch.save(state, weights)
    return base / "wb", weights


def small(data_root, weights, out, *extra):
    """A preset command shrunk to seconds: resnet18 with the ImageNet stem at 32 px, one epoch."""
    return ["--preset", "waterbirds-erm", "--weights", str(weights), "--data-root", str(data_root),
            "--image-size", "32", "--model", "resnet18", "--model-option", "stem=imagenet", "--epochs", "1",
            "--batch-size", "8", "--workers", "0", "--threads", "1", "--device", "cpu", "--quiet", "--out", str(out),
            *extra]


@pytest.mark.slow(seconds=8)
def test_train_with_a_preset_records_it_and_its_values(files, tmp_path, capsys):
    data_root, weights = files
    out = tmp_path / "run"
    command = ["train", *small(data_root, weights, out)]
    assert main(command) == 0
    cfg = json.loads((out / "run.json").read_text())["config"]
    assert cfg["preset"] == "waterbirds-erm"
    assert cfg["dataset"] == "waterbirds"
    assert cfg["dataset_options"]["transform"] == "reference" and cfg["dataset_options"]["augment"] is False
    assert cfg["dataset_options"]["image_size"] == 32  # given: wins over the preset's 224
    assert (cfg["model"], cfg["batch_size"], cfg["epochs"]) == ("resnet18", 8, 1)  # given
    assert (cfg["lr"], cfg["momentum"], cfg["weight_decay"], cfg["optimizer"], cfg["schedule"]) == \
        (1e-3, 0.9, 1e-4, "sgd", "constant")  # the preset's
    assert cfg["weights"] == str(weights)

    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    assert "preset           waterbirds-erm" in capsys.readouterr().out

    assert main([*command, "--resume"]) == 0  # the original command is accepted with --resume
    assert main(["train", "--resume", "--quiet", "--out", str(out)]) == 0
    differ = main(["train", *small(data_root, weights, out, "--lr", "0.01"), "--resume"])
    assert differ == 2 and "lr (run.json 0.001, asked 0.01)" in capsys.readouterr().err


@pytest.mark.slow(seconds=10)
def test_sweep_with_a_preset_records_it_and_resumes(files, tmp_path, capsys):
    data_root, weights = files
    out = tmp_path / "sweep"
    command = ["sweep", *small(data_root, weights, out), "--lr", "0.001", "0.01"]
    assert main(command) == 0
    stored = json.loads((out / "sweep.json").read_text())
    assert stored["base_config"]["preset"] == "waterbirds-erm"
    assert stored["axes"]["lr"] == [0.001, 0.01]
    for name in ("lr0.001_seed0", "lr0.01_seed0"):
        cfg = json.loads((out / name / "run.json").read_text())["config"]
        assert cfg["preset"] == "waterbirds-erm" and cfg["momentum"] == 0.9 and cfg["weight_decay"] == 1e-4
        assert cfg["dataset_options"]["transform"] == "reference"
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    assert "preset=waterbirds-erm" in capsys.readouterr().out
    assert main([*command, "--resume"]) == 0
    assert main(["sweep", "--resume", "--quiet", "--out", str(out)]) == 0


@pytest.mark.parametrize("extra, message", [
    (["--preset", "imagenet-erm", "--weights", "W"], "unknown preset 'imagenet-erm'; presets: waterbirds-erm, "
                                                     "celeba-erm"),
    (["--preset", "waterbirds-erm"], "--preset waterbirds-erm trains from ImageNet weights: give them with "
                                     "--weights FILE"),
    (["--preset", "celeba-erm", "--weights", "W", "--dataset", "waterbirds"],
     "--preset celeba-erm trains celeba; --dataset waterbirds contradicts it"),
])
@pytest.mark.parametrize("command", ["train", "sweep"])
def test_bad_preset_use_exits_2_before_writing(files, tmp_path, capsys, command, extra, message):
    data_root, weights = files
    out = tmp_path / "out"
    argv = [command, *[str(weights) if a == "W" else a for a in extra], "--data-root", str(data_root),
            "--lr", "0.01", "--out", str(out), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


def test_the_help_names_every_preset(capsys):
    with pytest.raises(SystemExit):
        from probe.cli import build_parser

        build_parser().parse_args(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(name in text for name in PRESETS)
