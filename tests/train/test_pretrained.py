"""Training from pretrained weights: ``--weights`` records the file's sha256 in ``run.json``, the model standardises
its inputs with ImageNet's statistics (once), ``Run.model()`` rebuilds the trainer's model without the weights file,
``--freeze features`` trains the head only, and bad weights options fail before anything is written."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

import probe
from probe.cli import main
from probe.data import build_dataset
from probe.errors import ProbeInputError
from probe.models import build_model
from probe.models.weights import load_pretrained, probe_to_torchvision_key
from probe.train import TrainConfig, Trainer

#: colored-mnist from the embedded digits at 72 px: over 64, so the ResNet takes the ImageNet stem
DATA = ["--dataset", "colored-mnist", "--image-size", "72", "--data-option", "n_train=12",
        "--data-option", "max_eval_digits=4"]


def args(weights, out, *extra):
    return ["train", *DATA, "--model", "resnet18", "--weights", str(weights), "--lr", "0.01", "--steps", "2",
            "--batch-size", "6", "--workers", "0", "--quiet", "--out", str(out), *extra]


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A resnet18 state dict in torchvision's layout (random values, 1000 classes), as a .pth file."""
    torch.manual_seed(5)
    model = build_model("resnet18", (3, 224, 224), 1000)
    state = {probe_to_torchvision_key(k): v for k, v in model.state_dict().items()}
    for k, v in state.items():
        if k.endswith("running_var"):
            v.uniform_(0.5, 1.5)
        elif k.endswith("running_mean"):
            v.normal_(0, 0.1)
    path = tmp_path_factory.mktemp("weights") / "resnet18_tv.pth"
    torch.save(state, path)
    return path


@pytest.mark.slow(seconds=10)
def test_a_run_from_weights_records_them_and_its_model_rebuilds(weights_file, tmp_path):
    out = tmp_path / "run"
    assert main(args(weights_file, out)) == 0
    info = json.loads((out / "run.json").read_text())
    assert info["config"]["weights"] == str(weights_file) and info["config"]["freeze"] is None
    assert info["weights"] == {"path": str(weights_file), "sha256": hashlib.sha256(weights_file.read_bytes())
                               .hexdigest(), "head": "replaced"}

    run = probe.open_run(out)
    moved = weights_file.rename(weights_file.with_suffix(".moved"))  # neither the reader nor --resume needs it
    try:
        model = run.model(0)
        assert main(["train", "--resume", "--quiet", "--out", str(out)]) == 0
    finally:
        moved.rename(weights_file)
    assert model.input_norm == "imagenet"  # colored-mnist is in [0, 1]: the model standardises

    # epoch 0 is the loaded weights (fresh head): the trainer's model, rebuilt here by hand, gives the same logits
    ds = build_dataset("colored-mnist", image_size=72, n_train=12, max_eval_digits=4)
    torch.manual_seed(0)
    by_hand = build_model("resnet18", ds.input_shape, ds.num_classes, input_norm="imagenet")
    assert load_pretrained(by_hand, torch.load(weights_file, weights_only=True)) == "replaced"
    x = ds.split("test").x[:4]
    with torch.no_grad():
        torch.testing.assert_close(model(x), by_hand.eval()(x), rtol=0, atol=0)
        stored = torch.from_numpy(run.records("test", 0).logits[:4])
        torch.testing.assert_close(model(x), stored, rtol=1e-5, atol=1e-5)
        last = run.model()
        torch.testing.assert_close(last(x), torch.from_numpy(run.records("test", run.epochs[-1]).logits[:4]),
                                   rtol=1e-5, atol=1e-5)


def test_frozen_features_train_only_the_head(weights_file, tmp_path):
    out = tmp_path / "frozen"
    assert main(args(weights_file, out, "--freeze", "features")) == 0
    run = probe.open_run(out)
    first, last = run.state_dict(0), run.state_dict(run.epochs[-1])
    changed = sorted(k for k in first if not torch.equal(first[k], last[k]))
    # the head learns; every feature tensor (BatchNorm statistics included) stays the weights'
    assert changed == ["head.bias", "head.weight"]
    assert json.loads((out / "run.json").read_text())["config"]["freeze"] == "features"


def test_a_dataset_that_standardises_already_is_not_standardised_twice(tmp_path, weights_file):
    from tests.data.probe_data_fixtures import write_waterbirds

    write_waterbirds(tmp_path / "data", h=80, w=80, segmentations=False)
    cfg = TrainConfig(dataset="waterbirds", model="resnet18", lr=0.01, steps=1, batch_size=4, workers=0,
                      dataset_options={"data_root": str(tmp_path / "data"), "image_size": 72},
                      weights=str(weights_file))
    trainer = Trainer(cfg, tmp_path / "wb")
    assert trainer.dataset.options["normalize"] is True
    assert trainer._fresh_model().input_norm == "none"
    cfg_raw = TrainConfig(**{**cfg.__dict__, "dataset_options": {**cfg.dataset_options, "normalize": False}})
    assert Trainer(cfg_raw, tmp_path / "wb2")._fresh_model().input_norm == "imagenet"


@pytest.mark.parametrize("change, expected", [
    (lambda w, tmp: ["--weights", str(tmp / "absent.pth")], "no such weights file"),
    (lambda w, tmp: ["--weights", str(tmp / "w.npz")], "weights must be a .safetensors, .pth or .pt"),
    (lambda w, tmp: ["--model", "mlp"], "model 'mlp' takes no pretrained weights"),
])
def test_bad_weights_options_fail_before_anything_is_written(weights_file, tmp_path, capsys, change, expected):
    (tmp_path / "w.npz").write_bytes(b"x")
    out = tmp_path / "run"
    assert main([*args(weights_file, out), *change(weights_file, tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("probe: error:") and err.count("\n") == 1
    assert expected in err
    assert not out.exists()


def test_freeze_other_than_features_is_refused(weights_file, tmp_path, capsys):
    assert main([*args(weights_file, tmp_path / "run"), "--freeze", "everything"]) == 2
    err = capsys.readouterr().err
    assert err == "probe: error: freeze (--freeze) must be 'features' or not given, got 'everything'\n"
    assert not (tmp_path / "run").exists()
    with pytest.raises(ProbeInputError, match=r"freeze \(--freeze\) must be 'features' or not given, got 'all'"):
        TrainConfig(dataset="parity", model="mlp", lr=0.1, epochs=1, freeze="all").validate()
    with pytest.raises(ProbeInputError, match="weights must be a"):
        TrainConfig(dataset="parity", model="mlp", lr=0.1, epochs=1, weights="w.bin").validate()


def test_sweep_takes_weights_and_freeze(weights_file, tmp_path, capsys):
    out = tmp_path / "sweep"
    code = main(["sweep", *DATA, "--model", "resnet18", "--weights", str(tmp_path / "absent.safetensors"),
                 "--freeze", "features", "--lr", "0.01", "--steps", "1", "--workers", "0", "--quiet",
                 "--out", str(out)])
    assert code == 2 and "no such weights file" in capsys.readouterr().err and not out.exists()
