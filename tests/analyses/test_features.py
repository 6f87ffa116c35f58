"""Feature extraction, the feature cache, and every registered representation / compressibility analysis on a run."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import probe
import probe.analyses.probes  # noqa: F401  (registers "probes")
from probe.analyses import geometry, pruning, sparsity
from probe.analyses.base import EPOCH_ANALYSES, AnalysisContext
from probe.analyses.features import (
    PENULTIMATE,
    EpochFeatures,
    cached_features,
    extract_features,
    feature_cache_path,
    model_epoch,
    relu_layers,
    split_outputs,
)
from probe.data import build_dataset
from probe.errors import ProbeInputError
from probe.models import build_model


def test_relu_layers_names_every_relu_module():
    assert relu_layers(build_model("mlp", (5,), 2, width=4, depth=3)) == ["features.2", "features.4", "features.6"]
    assert relu_layers(build_model("cnn", (3, 8, 8), 2, channels=4, width=8)) == ["conv.1", "conv.4", "fc.1"]
    resnet = build_model("resnet18", (3, 8, 8), 2, width=4)
    assert len(relu_layers(resnet)) == 1 + 8  # the stem's, then one per basic block (applied twice in it)


def test_penultimate_features_equal_one_forward_pass_in_eval_mode():
    torch.manual_seed(0)
    model = build_model("resnet18", (3, 8, 8), 3, width=4)
    model.train()
    x = torch.randn(11, 3, 8, 8)
    out = extract_features(model, x, batch_size=4)
    assert model.training  # the training flag is restored
    with torch.no_grad():
        expected = model.eval().forward_features(x)
    assert out[PENULTIMATE].dtype == np.float32
    np.testing.assert_allclose(out[PENULTIMATE], expected.numpy(), rtol=1e-5, atol=1e-6)


def test_layer_outputs_equal_a_manual_forward_and_split_input_equals_tensor_input():
    ds = build_dataset("parity", n_train=10, n_val=10, n_test=37)
    torch.manual_seed(0)
    model = build_model("mlp", (20,), 2, width=8)
    test = ds.split("test")
    from_split = extract_features(model, test, batch_size=5, layers=["features.2"])
    from_tensor = extract_features(model, test.x, batch_size=37, layers=["features.2"])
    first = model.features[1]
    manual = torch.relu(test.x @ first.weight.T + first.bias).detach().numpy()
    np.testing.assert_allclose(from_split["features.2"], manual, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(from_split[PENULTIMATE], from_tensor[PENULTIMATE], rtol=1e-5, atol=1e-6)


def test_a_module_called_twice_reports_both_calls():
    model = build_model("resnet18", (3, 8, 8), 2, width=4)
    out = extract_features(model, torch.randn(2, 3, 8, 8), layers=["stages.0.0.relu"])
    assert out["stages.0.0.relu"].shape == (2, 2 * 4 * 8 * 8)


def test_extract_features_rejects_bad_input():
    model = build_model("mlp", (5,), 2, width=4)
    with pytest.raises(ProbeInputError):
        extract_features(model, torch.randn(3, 5), layers=["nope"])
    with pytest.raises(ProbeInputError):
        extract_features(model, torch.randn(3, 5), batch_size=0)
    with pytest.raises(ProbeInputError):
        extract_features(model, torch.randn(5))


# -- on a trained run --------------------------------------------------------------------------------------------


@pytest.fixture
def ctx(tiny_parity_run, tmp_path):
    return AnalysisContext(probe.open_run(tiny_parity_run), cache_dir=tmp_path / "cache")


def test_cached_features_are_written_once_and_reused(ctx, monkeypatch):
    epoch = ctx.run.epochs[-1]
    first = cached_features(ctx, epoch, "test")
    path = feature_cache_path(ctx.cache_dir, ctx.run.name, epoch, "test")
    assert path.name == f"epoch_{epoch:05d}_test.npy" and path.is_file()
    np.testing.assert_array_equal(np.load(path, allow_pickle=False), first)
    direct = extract_features(ctx.run.model(epoch), ctx.dataset.split("test"))[PENULTIMATE]
    np.testing.assert_allclose(first, direct, rtol=1e-6)

    def no_model(_epoch):
        raise AssertionError("the model was loaded although the cache holds the features")

    monkeypatch.setattr(ctx.run, "model", no_model)
    np.testing.assert_array_equal(cached_features(ctx, epoch, "test"), first)
    np.testing.assert_array_equal(EpochFeatures(ctx, epoch)["test"], first)
    # a cache entry whose key no longer matches (e.g. the epoch file changed) is recomputed
    sidecar = path.with_suffix(".json")
    key = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**key, "epoch_sha256": "0" * 64}))
    with pytest.raises(AssertionError, match="model was loaded"):
        cached_features(ctx, epoch, "test")


def test_every_registered_analysis_runs_on_a_trained_run(ctx):
    epoch = ctx.run.epochs[-1]
    names = ("probes", "geometry", "sparsity", "pruning")
    assert all(EPOCH_ANALYSES[name].needs_model for name in names)
    results = {name: EPOCH_ANALYSES[name].fn(ctx, epoch) for name in names}

    val = results["probes"]["val"]
    assert set(val) == {"probe_core", "probe_spurious", "probe_gap", "n_probe_eval"}
    assert val["probe_gap"] == pytest.approx(val["probe_core"] - val["probe_spurious"])
    assert all(0 <= val[k] <= 1 for k in ("probe_core", "probe_spurious"))
    dfr = results["probes"]["test"]
    assert set(dfr) == {"dfr_wga", "dfr_min_group_n", "dfr_groups_excluded"}
    val_split, test_groups = ctx.dataset.split("val"), ctx.dataset.split("test").group.numpy()
    _, score_idx = probe.analyses.probes.balanced_probe_split(val_split.y.numpy(), val_split.a.numpy(), 0)
    assert val["n_probe_eval"] == len(score_idx) > 0
    sizes = np.bincount(test_groups)
    if (sizes >= 20).any():
        assert 0 <= dfr["dfr_wga"] <= 1 and dfr["dfr_min_group_n"] == sizes[sizes >= 20].min()
    else:
        assert math.isnan(dfr["dfr_wga"]) and math.isnan(dfr["dfr_min_group_n"])
    assert dfr["dfr_groups_excluded"] == np.count_nonzero((sizes > 0) & (sizes < 20))

    model = ctx.run.model(epoch)
    test = ctx.dataset.split("test")
    feats = extract_features(model, test)[PENULTIMATE]
    y, a = test.y.numpy(), test.a.numpy()
    geo = results["geometry"]["test"]
    assert geo["class_separation"] == pytest.approx(geometry.class_separation(feats, y), rel=1e-5)
    assert geo["attr_separation"] == pytest.approx(geometry.attr_separation(feats, a), rel=1e-5)
    assert geo["class_selectivity"] == pytest.approx(geometry.class_selectivity(feats, y), rel=1e-5)
    assert geo["attr_selectivity"] == pytest.approx(geometry.attr_selectivity(feats, a), rel=1e-5)
    assert geo["n_features"] == np.count_nonzero(np.abs(feats).sum(axis=1) > 0)

    sp = results["sparsity"]["test"]
    layers = relu_layers(model)
    assert set(sp) == {f"activation_sparsity/{n}" for n in layers} | {"activation_sparsity", "n_sparsity"}
    assert sp["n_sparsity"] == len(test)
    assert sp["activation_sparsity"] == pytest.approx(np.mean([sp[f"activation_sparsity/{n}"] for n in layers]))
    assert sp[f"activation_sparsity/{layers[-1]}"] == pytest.approx(sparsity.activation_sparsity(feats))

    pr = results["pruning"]
    for s in ("0", "0.5", "0.7", "0.8", "0.9", "0.95", "0.98", "0.99"):
        for metric in ("retention", "prune_acc", "prune_unbiased_acc"):
            assert math.isfinite(pr["test"][f"{metric}@{s}"])
        assert math.isfinite(pr["test"][f"prune_wga@{s}"]) == (sizes >= 20).any()
    assert pr["test"]["n_pruning"] == len(test)
    assert pr["test"]["retention@0"] == 1.0
    assert pr["test"]["retention@0.9"] == pytest.approx(pr["test"]["prune_acc@0.9"] / pr["test"]["prune_acc@0"])
    assert pr["test"]["max_sparsity@0.95"] in {0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99}
    for kappa in ("0.1", "0.05", "0.01"):
        expected = pruning.norm_compressibility(ctx.run.state_dict(epoch), float(kappa))
        assert pr["model"][f"norm_compressibility@{kappa}"] == pytest.approx(expected)
    # the checkpoint is untouched: a fresh load gives the same weights as before the analyses
    for key, value in ctx.run.state_dict(epoch).items():
        assert torch.equal(value, model.state_dict()[key])


def test_probes_without_a_validation_split_use_the_test_split(ctx):
    dataset = ctx.dataset
    dataset.splits = {name: s for name, s in dataset.splits.items() if name != "val"}
    out = EPOCH_ANALYSES["probes"].fn(ctx, ctx.run.epochs[-1])
    assert set(out) == {"test"}
    assert set(out["test"]) == {"probe_core", "probe_spurious", "probe_gap", "n_probe_eval"}


@pytest.mark.parametrize("name,shape", [("mlp", (20,)), ("resnet18", (3, 8, 8))])
def test_one_forward_pass_gives_features_predictions_and_zero_counts(name, shape):
    """split_outputs equals extract_features, the argmax of a plain forward and layer_activation_counts."""
    torch.manual_seed(0)
    model = build_model(name, shape, 3, width=8)
    x = torch.randn(37, *shape)
    out = split_outputs(model, x, batch_size=10)
    np.testing.assert_array_equal(out.features, extract_features(model, x, batch_size=10)[PENULTIMATE])
    np.testing.assert_array_equal(out.predictions, pruning.predict(model, x, batch_size=10))
    fractions, n = sparsity.layer_activation_counts(model, x, batch_size=10)
    assert out.n == n == 37 and list(out.relu_zeros) == relu_layers(model) == list(fractions)
    for layer, fraction in fractions.items():
        assert out.relu_zeros[layer] / out.relu_sizes[layer] == fraction


def test_the_model_level_analyses_share_one_model_load_and_one_forward_pass(ctx, monkeypatch):
    """geometry, sparsity, pruning and attribution on one context load the model once and run one forward pass
    over the test split (pruning's sparsity-0 point included); a later epoch gets a fresh model."""
    import probe.analyses.attribution  # noqa: F401  (registers "attribution")
    from probe.analyses import features

    loads, passes = [], []
    real_model, real_outputs = ctx.model, features.split_outputs
    monkeypatch.setattr(ctx, "model", lambda epoch: loads.append(epoch) or real_model(epoch))
    monkeypatch.setattr(features, "split_outputs", lambda *a, **k: passes.append(1) or real_outputs(*a, **k))
    predicted = []
    real_predict = pruning.predict
    monkeypatch.setattr(pruning, "predict", lambda *a, **k: predicted.append(1) or real_predict(*a, **k))
    last = ctx.run.epochs[-1]
    results = {name: EPOCH_ANALYSES[name].fn(ctx, last) for name in ("geometry", "sparsity", "pruning", "attribution")}
    assert loads == [last] and len(passes) == 1
    assert len(predicted) == len(pruning.DEFAULT_SPARSITIES) - 1  # the dense point comes from the shared pass
    # the numbers are those of separate computations
    model, test = real_model(last), ctx.dataset.split("test")
    assert results["pruning"]["test"]["prune_acc@0"] == pytest.approx(
        float(np.mean(pruning.predict(model, test) == test.y.numpy())), abs=0)
    fractions, _ = sparsity.layer_activation_counts(model, test)
    for layer, fraction in fractions.items():
        assert results["sparsity"]["test"][f"activation_sparsity/{layer}"] == fraction
    feats = extract_features(model, test)[PENULTIMATE]
    assert results["geometry"]["test"]["class_separation"] == geometry.class_separation(feats, test.y.numpy())
    for key, value in ctx.run.state_dict(last).items():  # the shared model was left as it was loaded
        assert torch.equal(value, model_epoch(ctx, last).model.state_dict()[key]), key
    EPOCH_ANALYSES["sparsity"].fn(ctx, ctx.run.epochs[0])
    assert loads == [last, ctx.run.epochs[0]] and len(passes) == 2
