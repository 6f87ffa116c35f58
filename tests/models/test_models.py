"""Every model splits forward into forward_features and forward_head."""

from __future__ import annotations

import pytest
import torch

from probe.errors import ProbeInputError
from probe.models import build_model, model_names


@pytest.mark.parametrize(
    ("name", "shape", "options"),
    [
        ("mlp", (20,), {"width": 16, "depth": 3}),
        ("mlp", (3, 8, 8), {}),
        ("cnn", (3, 8, 8), {}),
        ("cnn", (1, 28, 56), {"channels": 8}),
        ("resnet18", (3, 16, 16), {"width": 8}),
        ("resnet50", (3, 16, 16), {"width": 8}),
        ("resnet18", (3, 96, 96), {"width": 8}),
        ("resnet101", (3, 16, 16), {"width": 4}),
        ("wide_resnet50_2", (3, 16, 16), {"width": 4}),
        ("wide_resnet101_2", (3, 72, 72), {"width": 4, "input_norm": "imagenet"}),
    ],
)
def test_forward_is_head_of_features(name, shape, options):
    torch.manual_seed(0)
    model = build_model(name, shape, 7, **options).eval()
    x = torch.randn(5, *shape)
    features = model.forward_features(x)
    assert features.shape == (5, model.num_features)
    logits = model(x)
    assert logits.shape == (5, 7)
    torch.testing.assert_close(model.forward_head(features), logits)


def test_resnet_stem_follows_image_size():
    assert build_model("resnet18", (3, 32, 32), 10, width=8).stem_kind == "cifar"
    assert build_model("resnet18", (3, 224, 224), 10, width=8).stem_kind == "imagenet"


def test_unknown_model_and_option():
    assert set(model_names()) == {"mlp", "cnn", "resnet18", "resnet50", "resnet101", "wide_resnet50_2",
                                  "wide_resnet101_2"}
    with pytest.raises(ProbeInputError, match="unknown model"):
        build_model("vit", (3, 8, 8), 10)
    with pytest.raises(ProbeInputError, match="takes no option heads"):
        build_model("mlp", (3, 8, 8), 10, heads=4)
    with pytest.raises(ProbeInputError, match="image inputs"):
        build_model("cnn", (20,), 2)
