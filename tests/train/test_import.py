"""``probe import``: checkpoints saved by a hand-written training loop become a run directory whose record-level
metrics equal an independent computation from the same weights; bad folders are refused with nothing written."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from scipy.special import log_softmax
from sklearn.metrics import accuracy_score

from probe.analyses.engine.engine import analyze
from probe.cli import main
from probe.data import build_dataset
from probe.models import build_model
from probe.store import open_run
from probe.train.importer import epoch_of

DATA = {"n_train": 320, "max_eval_digits": 100}
WIDTH = 32
ARGS = ["--dataset", "colored-mnist", "--data-option", "n_train=320", "--data-option", "max_eval_digits=100",
        "--model", "mlp", "--model-option", f"width={WIDTH}", "--lr", "0.5", "--batch-size", "32", "--quiet"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A colored-mnist MLP trained for 2 epochs by a plain SGD loop; its state dicts saved after each epoch (and
    before training) as ``pt/epoch_<e>.pt`` and ``st/ckpt-<eeee>.safetensors``."""
    root = tmp_path_factory.mktemp("checkpoints")
    ds = build_dataset("colored-mnist", **DATA)
    torch.manual_seed(1)
    model = build_model("mlp", ds.input_shape, ds.num_classes, width=WIDTH)
    (root / "pt").mkdir()
    (root / "st").mkdir()
    states = {}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = ds.train.x, ds.train.y
    for epoch in range(3):
        if epoch:
            order = torch.randperm(len(y))
            for i in range(0, len(y), 32):
                batch = order[i:i + 32]
                optimizer.zero_grad()
                F.cross_entropy(model(x[batch]), y[batch]).backward()
                optimizer.step()
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        states[epoch] = state
        torch.save(state, root / "pt" / f"epoch_{epoch}.pt")
        save_file(state, str(root / "st" / f"ckpt-{epoch:04d}.safetensors"))
    return root, ds, states


def hand_metrics(model: torch.nn.Module, split, min_group_size: int) -> dict[str, float]:
    """Record-level metrics from the model's logits with numpy, scipy and scikit-learn only."""
    model.eval()
    with torch.no_grad():
        z = model(split.x).numpy().astype(np.float64)
    y, group, is_bc = split.y.numpy(), split.group.numpy(), split.is_bc.numpy()
    pred = z.argmax(axis=1)
    ce = -log_softmax(z, axis=1)[np.arange(len(y)), y]
    out = {"acc": accuracy_score(y, pred), "acc_bc": accuracy_score(y[is_bc], pred[is_bc]),
           "acc_ba": accuracy_score(y[~is_bc], pred[~is_bc]), "loss_mean": ce.mean(),
           "bc_loss_share": ce[is_bc].sum() / ce.sum(), "logit_norm": np.sqrt((z ** 2).sum(axis=1)).mean()}
    margins = []
    for i in range(len(y)):
        others = [z[i, k] for k in range(z.shape[1]) if k != y[i]]
        margins.append(z[i, y[i]] - max(others))
    out["margin_mean"] = float(np.mean(margins))
    group_accs = {}
    for g in np.unique(group):
        members = group == g
        group_accs[g] = accuracy_score(y[members], pred[members])
        out[f"acc_group/{g}"] = group_accs[g]
    out["mean_group_acc"] = float(np.mean(list(group_accs.values())))
    out["wga"] = min(acc for g, acc in group_accs.items() if (group == g).sum() >= min_group_size)
    return out


def test_epoch_numbers_come_from_the_last_digits_of_the_name():
    assert epoch_of("epoch_3.pt") == 3
    assert epoch_of("ckpt-0012.safetensors") == 12
    assert epoch_of("model_v2_epoch10.pth") == 10
    assert epoch_of("final.pt") is None


@pytest.mark.slow(seconds=30)
@pytest.mark.parametrize("variant", ["pt", "st"])
def test_imported_metrics_equal_a_hand_computation(trained, tmp_path, variant, capsys):
    root, ds, states = trained
    run_dir = tmp_path / "run"
    assert main(["import", str(root / variant), "--out", str(run_dir), *ARGS]) == 0
    run = open_run(run_dir)
    assert run.status == "imported" and run.epochs == [0, 1, 2]
    assert run.step_of(2) == 2 * 10  # 320 samples, batch 32
    assert len(run.sgd_records(1)) == 0  # no minibatch records are invented

    out = tmp_path / "analysis"
    analyze(run_dir, out, analyses=["groups", "logits", "losses"], options={"min_group_size": 5},
            model_epochs="none", progress=False)
    table = pd.read_csv(out / "epochs.csv")
    assert "sgd" not in set(table["split"])  # the minibatch metrics are not measured
    values = table.set_index(["epoch", "split", "metric"])["value"]
    model = build_model("mlp", ds.input_shape, ds.num_classes, width=WIDTH)
    for epoch, state in states.items():
        model.load_state_dict(state)
        for split in ("train", "val", "test"):
            expected = hand_metrics(model, ds.split(split), min_group_size=5)
            rec = run.records(split, epoch)
            assert rec.loss.mean() == pytest.approx(expected.pop("loss_mean"), rel=1e-5)
            for metric, value in expected.items():
                assert values[(epoch, split, metric)] == pytest.approx(value, rel=1e-5, abs=1e-6), (epoch, split,
                                                                                                   metric)
    assert main(["info", str(run_dir)]) == 0
    assert "imported" in capsys.readouterr().out


def _refused(args: list[str], out: Path, capsys, needle: str) -> None:
    assert main([*args, "--out", str(out), *ARGS]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_bad_folders_exit_2_naming_the_file_and_write_nothing(trained, tmp_path, capsys):
    root, _, states = trained
    no_number = tmp_path / "no_number"
    no_number.mkdir()
    torch.save(states[0], no_number / "final.pt")
    _refused(["import", str(no_number)], tmp_path / "a", capsys, "final.pt: no epoch number")

    narrow = tmp_path / "narrow"
    narrow.mkdir()
    ds = build_dataset("colored-mnist", **DATA)
    torch.save(build_model("mlp", ds.input_shape, ds.num_classes, width=8).state_dict(), narrow / "epoch_0.pt")
    _refused(["import", str(narrow)], tmp_path / "b", capsys, "epoch_0.pt")

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    torch.save(states[0], pickled / "epoch_0.pt")
    torch.save({**states[1], "args": argparse.Namespace(lr=0.5)}, pickled / "epoch_1.pth")
    _refused(["import", str(pickled)], tmp_path / "c", capsys, "epoch_1.pth: refused")

    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    assert main(["import", str(root / "pt"), "--out", str(taken), *ARGS]) == 2
    assert "taken" in capsys.readouterr().err and sorted(p.name for p in taken.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_config_file_fields_and_command_line_overrides(tmp_path, suffix):
    from probe.cli import build_parser
    from probe.cli.import_ import import_values

    fields = {"dataset": "parity", "dataset_options": {"n_train": 64}, "model_options": {"width": 8}, "lr": 0.1,
              "batch_size": 16}
    config = tmp_path / f"import{suffix}"
    if suffix == ".json":
        config.write_text(json.dumps(fields))
    else:
        config.write_text("dataset: parity\ndataset_options: {n_train: 64}\nmodel_options: {width: 8}\nlr: 0.1\n"
                          "batch_size: 16\n")
    args = build_parser().parse_args(["import", "src", "--out", "o", "--config", str(config), "--lr", "0.3",
                                      "--data-option", "n_val=32"])
    values = import_values(args)
    assert values == {**fields, "lr": 0.3, "dataset_options": {"n_train": 64, "n_val": 32}, "model": "mlp"}


def test_a_config_file_with_an_unknown_field_exits_2(tmp_path, capsys):
    config = tmp_path / "import.json"
    config.write_text(json.dumps({"dataset": "parity", "lr": 0.1, "learning_rate": 0.1}))
    src = tmp_path / "src"
    src.mkdir()
    (src / "epoch_0.pt").write_bytes(b"")
    assert main(["import", str(src), "--out", str(tmp_path / "o"), "--config", str(config)]) == 2
    assert "learning_rate" in capsys.readouterr().err and not (tmp_path / "o").exists()
