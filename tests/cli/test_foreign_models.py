"""Models written the way timm, torchvision and plain PyTorch write them (tests/models/foreign_plugin.py), through
``probe train``, ``probe analyze`` (features, probes, pruning, sparsity, attribution with Grad-CAM) and
``probe attribute``, in process."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import probe
from probe import models
from probe.analyses.features import extract_features
from probe.cli import main

PLUGIN = "tests.models.foreign_plugin"
WRAPPERS = {"foreign-plain-cnn": "LastLinearSplit", "foreign-timm-style": "TimmSplit",
            "foreign-torchvision-style": "HeadSplit"}
KAPPAS = (0.1, 0.05, 0.01)


@pytest.fixture(autouse=True)
def own_registry(monkeypatch):
    """The plugin's models are registered by each test's ``--plugin`` import and are gone after it."""
    monkeypatch.setattr(models, "_MODELS", dict(models._MODELS))
    monkeypatch.delitem(sys.modules, PLUGIN, raising=False)
    yield
    sys.modules.pop(PLUGIN, None)


def norm_compressibility(weights: list[torch.Tensor], kappa: float) -> float:
    """``1 - ||w - top_kappa(w)|| / ||w||`` by sorting, for the weights concatenated."""
    w = np.concatenate([t.detach().numpy().ravel() for t in weights]).astype(np.float64)
    kept = np.sort(np.abs(w))[::-1][: round(kappa * w.size)]
    return 1.0 - np.sqrt(max(np.sum(w**2) - np.sum(kept**2), 0.0)) / np.linalg.norm(w)


@pytest.mark.slow(seconds=10)
@pytest.mark.parametrize("name", sorted(WRAPPERS))
def test_a_foreign_model_is_trained_analysed_and_attributed(name, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["--plugin", PLUGIN, "train", "--dataset", "double-mnist", "--data-option", "n_train=256",
                 "--data-option", "max_eval_digits=64", "--model", name, "--lr", "0.05", "--epochs", "1",
                 "--batch-size", "64", "--threads", "1", "--quiet", "--out", str(run)]) == 0
    assert json.loads((run / "run.json").read_text())["plugins"] == [PLUGIN]

    reader = probe.open_run(run)
    model = reader.model()
    assert type(model).__name__ == WRAPPERS[name]
    bare = model.module
    assert list(model.state_dict()) == list(bare.state_dict())  # the module's own keys, no prefix
    x = reader.dataset().splits["test"].x[:16]
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (16, model.num_features)
        torch.testing.assert_close(features, sys.modules[PLUGIN].hand_features(name, bare, x))
        torch.testing.assert_close(model(x), bare(x))
        np.testing.assert_allclose(extract_features(model, x)["penultimate"], features.numpy(), rtol=1e-5, atol=1e-6)

    analysis = tmp_path / "analysis"
    assert main(["analyze", str(run), "--out", str(analysis), "--analyses", "geometry", "probes", "pruning",
                 "sparsity", "attribution", "--model-epochs", "last", "--option", "attr_methods=ig,gradcam",
                 "--option", "attr_n=16", "--no-report", "--quiet"]) == 0, capsys.readouterr().err
    assert json.loads((analysis / "metrics.json").read_text())["errors"] == []
    table = pd.read_csv(analysis / "epochs.csv")
    values = dict(zip(table["metric"], table["value"], strict=False))
    for metric in ("probe_core", "prune_acc@0.9", "core_attr_share@ig", "core_attr_share@gradcam"):
        assert np.isfinite(values[metric]), metric

    # pruning covered every conv kernel and weight matrix: its norm compressibility is that of all of them, which
    # the linear layers alone do not give
    kernels = [m.weight for m in bare.modules() if isinstance(m, nn.Conv2d)]
    matrices = [m.weight for m in bare.modules() if isinstance(m, nn.Linear)]
    assert kernels and sum(p.dim() >= 2 for p in bare.parameters()) == len(kernels) + len(matrices)
    for kappa in KAPPAS:
        assert values[f"norm_compressibility@{kappa}"] == pytest.approx(
            norm_compressibility(kernels + matrices, kappa), abs=1e-5)
    assert values["norm_compressibility@0.1"] != pytest.approx(norm_compressibility(matrices, 0.1), abs=1e-3)

    grids = tmp_path / "grids"
    assert main(["attribute", str(run), "--method", "ig", "gradcam", "--n", "4", "--n-steps", "8", "--out",
                 str(grids), "--device", "cpu"]) == 0
    assert {p.name for p in grids.glob("*.png")} == {"run_ig_bc_test.png", "run_gradcam_bc_test.png"}
