"""Any classifier as a feature model: timm-style modules as they are, plain modules split at their last nn.Linear."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from probe import models
from probe.errors import ProbeInputError
from probe.models import LastLinearSplit, as_feature_model, build_model, register_model


@pytest.fixture(autouse=True)
def own_registry(monkeypatch):
    """Models registered by a test are gone after it."""
    monkeypatch.setattr(models, "_MODELS", dict(models._MODELS))


def plain_cnn(num_classes: int = 3) -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, num_classes))


class TimmStyle(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 5)
        self.fc = nn.Linear(5, 2)

    def forward_features(self, x):
        return self.body(x)

    def forward_head(self, f):
        return self.fc(f)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def test_a_plain_module_splits_at_its_last_linear_and_keeps_its_state_dict_keys():
    torch.manual_seed(0)
    net = plain_cnn()
    model = as_feature_model(net)
    assert isinstance(model, LastLinearSplit) and model.head is net[6]
    assert list(model.state_dict()) == list(net.state_dict())
    x = torch.randn(5, 1, 8, 8)
    features = model.forward_features(x)
    assert torch.equal(features, net[:6](x))
    assert torch.equal(model.forward_head(features), net(x)) and torch.equal(model(x), net(x))
    other = as_feature_model(plain_cnn())
    other.load_state_dict(net.state_dict())  # the weights a run stores load into the bare module's layout
    assert torch.equal(other(x), net(x))
    twin = copy.deepcopy(model)  # pruning works on a copy
    twin.head.weight.data.zero_()
    assert not torch.equal(twin(x), model(x))
    model.eval()
    assert not net.training


def test_a_module_with_forward_features_and_forward_head_is_used_as_it_is():
    module = TimmStyle()
    assert as_feature_model(module) is module


def test_plain_models_are_refused_when_they_cannot_be_split():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return 2 * self.fc(x)

    register_model("test-scaled")(lambda input_shape, num_classes: Scaled())
    register_model("test-no-linear")(lambda input_shape, num_classes: nn.Flatten())
    with pytest.raises(ProbeInputError, match=r"its output is not its classifier \('fc'\)"):
        build_model("test-scaled", (4,), 2)
    with pytest.raises(ProbeInputError, match="no nn.Linear layer"):
        build_model("test-no-linear", (4,), 2)


def test_registered_models_take_declared_or_any_options():
    from probe.models import Option, model_options

    register_model("test-any")(lambda input_shape, num_classes, width=8: plain_cnn(num_classes))
    assert isinstance(build_model("test-any", (1, 8, 8), 3, width=5), LastLinearSplit)
    with pytest.raises(ProbeInputError, match="model 'test-any': .*unexpected keyword argument 'depth'"):
        build_model("test-any", (1, 8, 8), 3, depth=2)
    register_model("test-declared", options=(Option("width", "int", 8, "hidden units", low=1),))(
        lambda input_shape, num_classes, width=8: plain_cnn(num_classes))
    assert model_options("test-declared") == {"width": 8}
    with pytest.raises(ProbeInputError, match="option width takes int >= 1"):
        build_model("test-declared", (1, 8, 8), 3, width=0)
    with pytest.raises(ValueError, match="registered already"):
        register_model("mlp")(lambda input_shape, num_classes: plain_cnn())
