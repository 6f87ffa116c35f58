"""Any classifier as a feature model: probe-protocol modules as they are, timm models through TimmSplit, torchvision
classifier attributes (fc, classifier, heads) through HeadSplit, other modules split at their last nn.Linear."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from probe import models
from probe.errors import ProbeInputError
from probe.models import (
    HeadSplit,
    LastLinearSplit,
    TimmSplit,
    as_feature_model,
    build_model,
    register_model,
    replace_head,
)


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


class VggStyle(nn.Module):
    """torchvision's VGG / EfficientNet layout: ``features``, ``avgpool``, flatten, a ``classifier`` Sequential."""

    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.avgpool = nn.AdaptiveAvgPool2d(2)
        self.classifier = classifier

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class VitStyle(nn.Module):
    """torchvision's ViT layout: a ``heads`` Sequential with ``pre_logits``, ``act`` and ``head``."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Linear(6, 5)
        self.heads = nn.Sequential()
        self.heads.add_module("pre_logits", nn.Linear(5, 4))
        self.heads.add_module("act", nn.Tanh())
        self.heads.add_module("head", nn.Linear(4, 1000))

    def forward(self, x):
        return self.heads(self.encoder(x))


def test_torchvision_classifier_attributes_are_the_head_and_their_input_the_features():
    torch.manual_seed(0)
    vgg = VggStyle(nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3))).eval()
    model = as_feature_model(vgg)
    assert isinstance(model, HeadSplit) and model.head_name == "classifier" and model.head is vgg.classifier
    assert (model.num_features, model.num_classes) == (16, 3)
    x = torch.randn(5, 1, 6, 6)
    assert torch.equal(model.forward_features(x), vgg.avgpool(vgg.features(x)).flatten(1))
    assert torch.equal(model(x), vgg(x)) and list(model.state_dict()) == list(vgg.state_dict())

    vit = VitStyle()
    model = as_feature_model(vit)
    assert model.head_name == "heads" and model.num_classes == 1000
    x = torch.randn(3, 6)
    assert torch.equal(model.forward_features(x), vit.encoder(x))
    assert replace_head(vit, 2) is vit and vit.heads.head.out_features == 2 and vit.heads.pre_logits.out_features == 4
    kept = vit.heads.head
    assert replace_head(vit, 2).heads.head is kept  # already 2 classes: weights kept

    # ConvNeXt's classifier (LayerNorm2d, Flatten, Linear) acts on a map: split at the last linear layer instead
    convnext = VggStyle(nn.Sequential(nn.GroupNorm(1, 4), nn.Flatten(), nn.Linear(16, 3)))
    model = as_feature_model(convnext)
    assert isinstance(model, LastLinearSplit) and model.head_name == "classifier.2"
    # an `fc` that is a hidden layer, not the classifier
    hidden = nn.Sequential()
    hidden.fc, hidden.out = nn.Linear(4, 6), nn.Linear(6, 2)
    assert as_feature_model(hidden).head_name == "out"


def test_replace_head_swaps_fc_and_classifier_for_the_class_count():
    net = TimmStyle()  # no get_classifier: an `fc` attribute
    old = net.fc
    assert replace_head(net, 7).fc.out_features == 7 and net.fc.in_features == 5 and net.fc is not old
    vgg = VggStyle(nn.Sequential(nn.Dropout(0.2), nn.Linear(16, 1000)))
    assert replace_head(vgg, 4).classifier[1].out_features == 4 and isinstance(vgg.classifier[0], nn.Dropout)
    plain = plain_cnn(10)
    assert replace_head(plain, 2)[6].out_features == 2
    with pytest.raises(ValueError, match="positive int"):
        replace_head(plain, 0)


class TimmHeadless(nn.Module):
    """timm's convention with a classifier of ``num_classes`` outputs (none when 0)."""

    def __init__(self, num_classes: int = 5):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.reset_classifier(num_classes)

    def reset_classifier(self, num_classes):
        self.fc = nn.Linear(3, num_classes) if num_classes else nn.Identity()

    def get_classifier(self):
        return self.fc

    def forward_features(self, x):
        return self.conv(x)

    def forward_head(self, x, pre_logits: bool = False):
        x = x.mean((2, 3))
        return x if pre_logits else self.fc(x)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def test_timm_models_give_pooled_features_and_reset_their_classifier():
    net = TimmHeadless()
    model = as_feature_model(net)
    assert isinstance(model, TimmSplit) and model.head is net.fc and model.num_features == 3
    x = torch.randn(4, 1, 5, 5)
    assert torch.equal(model.forward_features(x), net.conv(x).mean((2, 3)))
    assert torch.equal(model(x), net(x)) and list(model.state_dict()) == ["conv.weight", "conv.bias", "fc.weight",
                                                                           "fc.bias"]
    assert replace_head(net, 2).fc.out_features == 2
    register_model("test-timm-headless")(lambda input_shape, num_classes: TimmHeadless(0))
    with pytest.raises(ProbeInputError, match=r"get_classifier\(\) has no nn.Linear"):
        build_model("test-timm-headless", (1, 5, 5), 2)
    register_model("test-timm")(lambda input_shape, num_classes: replace_head(TimmHeadless(), num_classes))
    assert build_model("test-timm", (1, 5, 5), 2).num_classes == 2


def test_wrapped_modules_are_found_by_their_own_names():
    from probe.analyses.attribution_methods import gradcam_layer

    net = TimmHeadless()
    model = as_feature_model(net)
    assert model.get_submodule("conv") is net.conv and model.get_submodule("module.conv") is net.conv
    assert gradcam_layer(model, "conv", torch.randn(2, 1, 5, 5)) is net.conv
    vgg = VggStyle(nn.Linear(16, 2))
    assert as_feature_model(vgg).get_submodule("features.0") is vgg.features[0]
    with pytest.raises(AttributeError):
        model.get_submodule("nope")
