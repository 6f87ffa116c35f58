"""``probe attribute``: grids for a sweep (rows = learning rates) and a run (rows = epochs), and bad input."""

from __future__ import annotations

import argparse

import pandas as pd
import pytest
from PIL import Image

from probe.cli.attribute import register, spread_epochs
from probe.errors import ProbeInputError
from probe.train import TrainConfig, run_sweep


@pytest.fixture(scope="module")
def cnn_sweep(tmp_path_factory):
    """Double MNIST (embedded 8x8 digits: 1 x 8 x 16), a small CNN, lr {0.01, 0.1}, 8 steps each, test split only."""
    out = tmp_path_factory.mktemp("attr_sweep") / "dm"
    base = TrainConfig(dataset="double-mnist", model="cnn", model_options={"channels": 4, "width": 16}, lr=0.01,
                       steps=8, batch_size=64, seed=0, record_splits=["test"])
    run_sweep(base, out, {"lr": [0.01, 0.1]})
    return out


def probe_attribute(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="probe")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["attribute", *argv])
    return args.func(args)


def test_sweep_grids(cnn_sweep, tmp_path, capsys):
    out = tmp_path / "grids"
    assert probe_attribute(str(cnn_sweep), "--method", "ig", "gradcam", "--n", "5", "--n-steps", "8",
                           "--out", str(out), "--device", "cpu") == 0
    pngs = sorted(out.glob("*.png"))
    assert [p.name for p in pngs] == ["dm_gradcam_bc_test.png", "dm_ig_bc_test.png"]
    for p in pngs:
        with Image.open(p) as img:
            assert img.format == "PNG" and img.size[0] > img.size[1] / 2
    table = pd.read_csv(out / "dm_ig_bc_test.csv")
    assert list(table["lr"]) == [0.01, 0.1] and (table["n"] == 5).all()
    assert table["core_attr_share"].between(0, 1).all()
    assert (table["core_attr_share"] + table["spurious_attr_share"]).round(6).eq(1).all()
    assert str(pngs[0]) in capsys.readouterr().out


def test_run_grid_rows_are_epochs(tiny_parity_run, tmp_path):
    out = tmp_path / "run"
    assert probe_attribute(str(tiny_parity_run), "--method", "saliency", "--samples", "group:1", "--n", "4",
                           "--epochs", "0", "3", "--out", str(out), "--device", "cpu") == 0
    table = pd.read_csv(out / f"{tiny_parity_run.name}_saliency_group1_test.csv")
    assert list(table["epoch"]) == [0, 3]


def test_bad_input(tiny_parity_run, tmp_path):
    with pytest.raises(ProbeInputError, match="unknown attribution method"):
        probe_attribute(str(tiny_parity_run), "--method", "nope", "--out", str(tmp_path))
    with pytest.raises(ProbeInputError, match="bad sample choice"):
        probe_attribute(str(tiny_parity_run), "--samples", "xx", "--out", str(tmp_path), "--device", "cpu")
    with pytest.raises(ProbeInputError, match="does not apply"):
        probe_attribute(str(tiny_parity_run), "--method", "gradcam", "--out", str(tmp_path), "--device", "cpu")
    with pytest.raises(ProbeInputError):
        probe_attribute(str(tmp_path / "missing"), "--out", str(tmp_path))


def test_spread_epochs():
    assert spread_epochs([0, 1, 2]) == [0, 1, 2]
    picked = spread_epochs(list(range(20)), 6)
    assert picked[0] == 0 and picked[-1] == 19 and len(picked) == 6


def test_gradcam_layer_named_and_unknown(cnn_sweep, tmp_path, capsys):
    from probe.cli import main

    out = tmp_path / "layer"
    assert probe_attribute(str(cnn_sweep), "--method", "gradcam", "--layer", "conv.1", "--n", "3",
                           "--out", str(out), "--device", "cpu") == 0
    assert (out / "dm_gradcam_bc_test.png").is_file()
    capsys.readouterr()
    assert main(["attribute", str(cnn_sweep), "--method", "gradcam", "--layer", "conv.nope", "--n", "3",
                 "--out", str(tmp_path / "bad"), "--device", "cpu"]) == 2
    assert "gradcam layer 'conv.nope' is not a module" in capsys.readouterr().err
