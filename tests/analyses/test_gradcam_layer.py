"""The Grad-CAM layer: the default (last residual stage, last 4-D map), a named layer, bad names, and equality
with Captum's LayerGradCam on that layer."""

from __future__ import annotations

import pytest
import torch
from captum.attr import LayerAttribution, LayerGradCam
from torch import nn

from probe.analyses.attribution_methods import attribute, gradcam_layer
from probe.errors import ProbeInputError
from probe.models import build_model


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    model = build_model("resnet50", (3, 64, 64), 10, width=8).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 64, 64, generator=g)
    return model, x, torch.tensor([3, 7])


def captum_gradcam(model, layer, x, y):
    """Captum called directly: ReLU'd Grad-CAM, bilinear upsampling, repeated over the input channels."""
    xr = x.clone().requires_grad_()
    cam = LayerGradCam(model, layer).attribute(xr, target=y, relu_attributions=True)
    cam = LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")
    return cam.expand(-1, x.shape[1], -1, -1).detach()


def test_resnet_default_is_last_stage_output(resnet):
    model, x, y = resnet
    layer = gradcam_layer(model, example=x)
    assert layer is model.stages[-1]
    assert layer is model.get_submodule("stages.3")
    # the block output after the residual add and ReLU: non-negative, 4-D
    seen = []
    handle = layer.register_forward_hook(lambda m, i, o: seen.append(o))
    with torch.no_grad():
        model(x)
    handle.remove()
    assert seen[0].dim() == 4 and bool((seen[0] >= 0).all())
    got = attribute(model, x, y, "gradcam")
    ref = captum_gradcam(model, layer, x, y)
    assert got.shape == x.shape
    assert float(ref.abs().max()) > 0
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-7)


def test_named_layer_matches_captum(resnet):
    model, x, y = resnet
    layer = model.get_submodule("stages.2.1")
    assert gradcam_layer(model, "stages.2.1", x) is layer
    got = attribute(model, x, y, "gradcam", layer="stages.2.1")
    torch.testing.assert_close(got, captum_gradcam(model, layer, x, y), rtol=1e-5, atol=1e-7)
    assert not torch.allclose(got, attribute(model, x, y, "gradcam"))


def test_bad_layer_names(resnet):
    model, x, y = resnet
    with pytest.raises(ProbeInputError, match="'stages.9' is not a module"):
        gradcam_layer(model, "stages.9", x)
    with pytest.raises(ProbeInputError, match="not a 4-D map"):
        gradcam_layer(model, "head", x)
    with pytest.raises(ProbeInputError, match="not a 4-D map"):
        attribute(model, x, y, "gradcam", layer="pool")


def test_small_cnn_default_is_relu_after_last_conv():
    torch.manual_seed(0)
    model = build_model("cnn", (1, 8, 16), 10, channels=4, width=8).eval()
    x = torch.rand(2, 1, 8, 16)
    assert gradcam_layer(model, example=x) is model.conv[4]
    assert isinstance(model.conv[3], nn.Conv2d) and isinstance(model.conv[4], nn.ReLU)
    with pytest.raises(ProbeInputError, match="needs an example input"):
        gradcam_layer(model)
