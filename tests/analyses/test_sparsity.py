"""Activation sparsity: constructed activations, a brute-force loop, and hooks against a manual forward pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probe.analyses.features import extract_features, relu_layers
from probe.analyses.sparsity import activation_sparsity, layer_activation_counts, layer_activation_sparsity
from probe.errors import ProbeInputError
from probe.models import build_model


def test_activation_sparsity_of_constructed_arrays():
    assert activation_sparsity(np.array([[0.0, 1.0], [0.0, 0.0]])) == 0.75
    assert activation_sparsity(torch.tensor([[0.0, 1.0], [0.0, 0.0]])) == 0.75
    assert activation_sparsity(np.array([1e-30, -0.0, 0.0, 2.0])) == 0.5  # tiny is not zero; -0.0 is
    with pytest.raises(ProbeInputError):
        activation_sparsity(np.zeros((0, 3)))


def test_activation_sparsity_matches_a_loop():
    rng = np.random.default_rng(0)
    x = np.maximum(rng.normal(size=(7, 3, 5)), 0)
    zeros = sum(1 for v in x.reshape(-1).tolist() if v == 0.0)
    assert activation_sparsity(x) == pytest.approx(zeros / x.size)
    assert activation_sparsity(torch.from_numpy(x)) == pytest.approx(zeros / x.size)


def test_layer_sparsity_of_a_constructed_mlp():
    model = build_model("mlp", (2,), 2, width=4, depth=2)
    with torch.no_grad():
        first, second = model.features[1], model.features[3]
        first.weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]))
        first.bias.zero_()
        second.weight.copy_(torch.eye(4))
        second.bias.fill_(-10.0)
    x = torch.rand(9, 2) + 0.1  # positive inputs: units 1 and 3 of the first layer are zero; the second is all zero
    out = layer_activation_sparsity(model, x, batch_size=4)
    assert out == {"features.2": 0.5, "features.4": 1.0}


@pytest.mark.parametrize("name,shape", [("mlp", (6,)), ("cnn", (3, 8, 8)), ("resnet18", (3, 8, 8))])
def test_layer_sparsity_equals_zero_count_of_the_kept_activations(name, shape):
    options = {"mlp": {"width": 16}, "cnn": {"channels": 4, "width": 8}, "resnet18": {"width": 4}}[name]
    torch.manual_seed(0)
    model = build_model(name, shape, 3, **options)
    x = torch.randn(10, *shape)
    layers = relu_layers(model)
    streamed = layer_activation_sparsity(model, x, batch_size=3)
    kept = extract_features(model, x, batch_size=10, layers=layers)
    assert list(streamed) == layers
    for layer in layers:
        assert streamed[layer] == pytest.approx(np.count_nonzero(kept[layer] == 0) / kept[layer].size)


def test_layer_sparsity_of_an_mlp_against_a_manual_forward():
    torch.manual_seed(1)
    model = build_model("mlp", (5,), 2, width=12, depth=2)
    x = torch.randn(40, 5)
    h1 = torch.relu(x @ model.features[1].weight.T + model.features[1].bias)
    h2 = torch.relu(h1 @ model.features[3].weight.T + model.features[3].bias)
    out = layer_activation_sparsity(model, x, batch_size=16)
    assert out["features.2"] == pytest.approx(float((h1 == 0).float().mean()))
    assert out["features.4"] == pytest.approx(float((h2 == 0).float().mean()))


@pytest.mark.parametrize("n,batch_size", [(40, 16), (7, 512), (33, 1)])
def test_layer_counts_give_the_sparsity_and_every_sample(n, batch_size):
    torch.manual_seed(2)
    model = build_model("mlp", (5,), 2, width=12, depth=2)
    x = torch.randn(n, 5)
    per_layer, n_samples = layer_activation_counts(model, x, batch_size=batch_size)
    assert n_samples == n
    assert per_layer == layer_activation_sparsity(model, x, batch_size=batch_size)


def test_layer_sparsity_rejects_a_model_without_relu():
    model = build_model("mlp", (5,), 2, width=4, depth=0)
    with pytest.raises(ProbeInputError):
        layer_activation_sparsity(model, torch.randn(3, 5))
