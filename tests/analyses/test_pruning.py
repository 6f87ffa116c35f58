"""Pruning: masks against torch.nn.utils.prune, exact sparsity, untouched originals, summaries, norm compressibility."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from torch.nn.utils import prune

from probe.analyses.groups import group_accuracy_metrics
from probe.analyses.pruning import (
    MagnitudeMasks,
    global_magnitude_masks,
    max_sparsity_at,
    norm_compressibility,
    predict,
    prunable_parameters,
    prunable_weights,
    prune_curve,
    pruned_copy,
    retention,
)
from probe.data import build_dataset
from probe.errors import ProbeInputError
from probe.models import build_model


def _models():
    torch.manual_seed(0)
    return {
        "mlp": build_model("mlp", (20,), 2, width=32),
        "cnn": build_model("cnn", (3, 8, 8), 10, channels=4, width=16),
        "resnet18": build_model("resnet18", (3, 8, 8), 10, width=4),
    }


@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet18"])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.99])
def test_masks_equal_torch_global_unstructured_l1(name, sparsity):
    model = _models()[name]
    reference = copy.deepcopy(model)
    params = [(module, "weight") for _, module in prunable_weights(reference)]
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=sparsity)
    ours = global_magnitude_masks(model, sparsity)
    ref_masks = {n: m.weight_mask.bool() for n, m in prunable_weights(reference)}
    assert list(ours) == list(ref_masks)
    for layer, mask in ours.items():
        assert torch.equal(mask, ref_masks[layer]), layer
    total = sum(m.numel() for m in ours.values())
    pruned = sum(int((~m).sum()) for m in ours.values())
    assert pruned == round(sparsity * total)
    assert abs(pruned / total - sparsity) <= 0.5 / total


def test_prunable_weights_are_linear_and_conv_weights_only():
    model = _models()["resnet18"]
    names = [n for n, _ in prunable_weights(model)]
    assert "head" in names and "stem.0" in names
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for _, m in prunable_weights(model))
    n_conv_linear = sum(isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) for m in model.modules())
    assert len(names) == n_conv_linear


def test_pruned_copy_zeroes_masked_weights_and_leaves_the_original_alone():
    model = _models()["cnn"]
    saved = copy.deepcopy(model.state_dict())
    masks = global_magnitude_masks(model, 0.8)
    pruned = pruned_copy(model, 0.8)
    for name, module in prunable_weights(pruned):
        original = dict(model.named_modules())[name].weight
        assert torch.equal(module.weight[masks[name]], original[masks[name]])
        assert (module.weight[~masks[name]] == 0).all()
    for key, value in model.state_dict().items():
        assert torch.equal(value, saved[key]), key


def test_prune_curve_on_a_split():
    ds = build_dataset("parity", n_train=10, n_val=10, n_test=300)
    torch.manual_seed(0)
    model = build_model("mlp", (20,), 2, width=32)
    saved = copy.deepcopy(model.state_dict())
    test = ds.split("test")
    curve = prune_curve(model, test, (0.9, 0.5), batch_size=64)
    for key, value in model.state_dict().items():
        assert torch.equal(value, saved[key]), key
    assert curve["sparsity"].tolist() == [0.0, 0.5, 0.9]  # dense point added, sorted
    n = sum(m.weight.numel() for _, m in prunable_weights(model))
    assert curve["reached_sparsity"].tolist() == pytest.approx([0.0, round(0.5 * n) / n, round(0.9 * n) / n])
    y, a, bc = test.y.numpy(), test.a.numpy(), test.is_bc.numpy()
    for s, row in zip((0.0, 0.5, 0.9), curve.itertuples()):
        pred = pruned_copy(model, s)(test.x).argmax(1).numpy()
        expected = group_accuracy_metrics(pred, y, a, bc, 2, 2)
        assert row.acc == pytest.approx(np.mean(pred == y))
        assert (row.wga, row.unbiased_acc) == pytest.approx((expected["wga"], expected["unbiased_acc"]))
        assert row.n == len(y) == 300
    assert np.array_equal(predict(model, test.x, batch_size=7), model(test.x).argmax(1).numpy())


def test_prune_curve_wga_leaves_small_groups_out():
    ds = build_dataset("parity", n_train=10, n_val=10, n_test=300)
    torch.manual_seed(0)
    model = build_model("mlp", (20,), 2, width=32)
    test = ds.split("test")
    sizes = np.bincount(test.group.numpy(), minlength=4)
    big = int(sizes.max())
    curve = prune_curve(model, test, (0.5,), min_group_size=big)
    pred = predict(model, test)
    largest = test.group.numpy() == int(sizes.argmax())
    # only the largest group has >= big samples: wga of the dense model is its accuracy
    assert curve["wga"].iloc[0] == pytest.approx(np.mean(pred[largest] == test.y.numpy()[largest]))
    assert curve["wga"].isna().sum() == 0
    assert prune_curve(model, test, (0.5,), min_group_size=big + 1)["wga"].isna().all()


def test_retention_and_max_sparsity_on_a_constructed_curve():
    curve = pd.DataFrame({"sparsity": [0.0, 0.5, 0.7, 0.8, 0.9], "acc": [0.8, 0.8, 0.78, 0.7, 0.79]})
    assert retention(curve, 0.7) == pytest.approx(0.975)
    assert retention(curve, 0.0) == 1.0
    # 95% of 0.8 is 0.76: kept at 0.5, 0.7 and (again) 0.9; the largest kept sparsity is reported
    assert max_sparsity_at(curve, 0.95) == 0.9
    assert max_sparsity_at(curve.iloc[:4], 0.95) == 0.7
    with pytest.raises(ProbeInputError):
        retention(curve, 0.95)
    assert np.isnan(retention(pd.DataFrame({"sparsity": [0.0, 0.5], "acc": [0.0, 0.0]}), 0.5))


def test_norm_compressibility_of_a_constructed_state_dict():
    state = {
        "layer.weight": torch.tensor([[3.0, 4.0], [0.0, 0.0]]),
        "layer.bias": torch.tensor([100.0, 100.0]),  # biases are not weights
        "bn.weight": torch.tensor([100.0]),  # nor are 1-d normalisation scales
    }
    assert norm_compressibility(state, 0.25) == pytest.approx(1 - 3 / 5)  # keeps 4, drops 3
    assert norm_compressibility(state, 0.5) == pytest.approx(1.0)
    assert norm_compressibility(state, 0.0) == pytest.approx(0.0)
    with pytest.raises(ProbeInputError):
        norm_compressibility(state, 1.5)
    with pytest.raises(ProbeInputError):
        norm_compressibility({"layer.bias": torch.ones(3)}, 0.1)


@pytest.mark.parametrize("kappa", [0.01, 0.1, 0.37])
def test_norm_compressibility_matches_a_sort(kappa):
    model = _models()["cnn"]
    w = np.concatenate([m.weight.detach().double().numpy().reshape(-1) for _, m in prunable_weights(model)])
    k = round(kappa * w.size)
    order = np.argsort(-np.abs(w))
    residual = w.copy()
    residual[order[:k]] = 0.0
    expected = 1 - np.linalg.norm(residual) / np.linalg.norm(w)
    assert norm_compressibility(model, kappa) == pytest.approx(expected, rel=1e-9)
    assert norm_compressibility(model.state_dict(), kappa) == pytest.approx(expected, rel=1e-9)


def test_pruning_rejects_bad_sparsity():
    with pytest.raises(ProbeInputError):
        global_magnitude_masks(_models()["mlp"], 1.5)
    with pytest.raises(ProbeInputError):
        prune_curve(_models()["mlp"], torch.randn(4, 20))


class _Attention(torch.nn.Module):
    """torchvision ViT's encoder block in miniature: an nn.MultiheadAttention (its input projections are a raw
    parameter, not an nn.Linear), then a linear head."""

    def __init__(self):
        super().__init__()
        self.attention = torch.nn.MultiheadAttention(8, 2, batch_first=True)
        self.heads = torch.nn.Linear(8, 3)

    def forward(self, x):
        return self.heads(self.attention(x, x, x, need_weights=False)[0].mean(1))


@pytest.mark.parametrize("sparsity", [0.5, 0.9])
def test_attention_projections_are_pruned_with_the_linear_weights(sparsity):
    from probe.analyses.pruning import prunable_parameters

    torch.manual_seed(0)
    model = _Attention()
    keys = [k for k, _ in prunable_parameters(model)]
    assert keys == ["attention.in_proj_weight", "attention.out_proj", "heads"]
    reference = copy.deepcopy(model)
    prune.global_unstructured([(reference.attention, "in_proj_weight"), (reference.attention.out_proj, "weight"),
                               (reference.heads, "weight")], pruning_method=prune.L1Unstructured, amount=sparsity)
    ours = global_magnitude_masks(model, sparsity)
    assert torch.equal(ours["attention.in_proj_weight"], reference.attention.in_proj_weight_mask.bool())
    assert torch.equal(ours["heads"], reference.heads.weight_mask.bool())
    pruned = pruned_copy(model, sparsity)
    projections = model.attention.in_proj_weight
    assert torch.equal(pruned.attention.in_proj_weight, projections * ours["attention.in_proj_weight"])
    w = torch.cat([model.attention.in_proj_weight.reshape(-1), model.attention.out_proj.weight.reshape(-1),
                   model.heads.weight.reshape(-1)]).detach().double().numpy()
    kept = np.sort(np.abs(w))[::-1][: round(0.1 * w.size)]
    assert norm_compressibility(model, 0.1) == pytest.approx(1 - np.sqrt(np.sum(w**2) - np.sum(kept**2)) /
                                                             np.linalg.norm(w))


def _tied_mlp() -> torch.nn.Module:
    """An MLP whose weights take three magnitudes (ties everywhere), one of them NaN-free and signed both ways."""
    torch.manual_seed(1)
    model = build_model("mlp", (20,), 2, width=8)
    with torch.no_grad():
        for _, module in prunable_weights(model):
            w = module.weight
            w.copy_(torch.tensor([0.5, -0.5, 1.0, -2.0])[torch.randint(0, 4, w.shape)])
    return model


@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet18", "tied"])
def test_masks_from_one_sort_equal_the_topk_masks(name):
    """MagnitudeMasks (one sort, thresholds) gives global_magnitude_masks at every sparsity, ties straddling the
    threshold included (there it takes topk's own choice)."""
    model = _tied_mlp() if name == "tied" else _models()[name]
    masks_at = MagnitudeMasks(prunable_parameters(model))
    for s in (0.0, 0.1, 0.25, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 1.0):
        ours, reference = masks_at(s), global_magnitude_masks(model, s)
        assert list(ours) == list(reference)
        for layer, mask in ours.items():
            assert torch.equal(mask, reference[layer]), (s, layer)
        assert sum(int((~m).sum()) for m in ours.values()) == round(s * masks_at.total)


def test_prune_curve_restores_the_weights_bit_for_bit_and_takes_dense_predictions():
    ds = build_dataset("parity", n_train=10, n_val=10, n_test=200)
    torch.manual_seed(0)
    model = build_model("mlp", (20,), 2, width=32)
    test = ds.split("test")
    saved = copy.deepcopy(model.state_dict())
    plain = prune_curve(model, test, batch_size=64)
    dense = predict(model, test, batch_size=64)
    shared = prune_curve(model, test, batch_size=64, dense_predictions=dense)
    pd.testing.assert_frame_equal(plain, shared)
    for key, value in model.state_dict().items():
        assert torch.equal(value, saved[key]), key
    # an error inside the curve leaves the weights restored too
    with pytest.raises(ProbeInputError, match="dense_predictions"):
        prune_curve(model, test, dense_predictions=dense[:5])

    class Boom(RuntimeError):
        pass

    calls = []

    def failing_forward(module, inputs, output):
        calls.append(1)
        if len(calls) > 1:
            raise Boom

    handle = model.head.register_forward_hook(failing_forward)
    with pytest.raises(Boom):
        prune_curve(model, test, batch_size=512)
    handle.remove()
    for key, value in model.state_dict().items():
        assert torch.equal(value, saved[key]), key
