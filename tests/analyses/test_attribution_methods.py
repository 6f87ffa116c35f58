"""Attribution methods: known answers on constructed models, equality with Captum, batching invariance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import (
    DeepLift,
    GradientShap,
    InputXGradient,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    NoiseTunnel,
    Saliency,
)
from torch import nn

from probe.analyses.attribution import attr_shares
from probe.analyses.attribution_methods import METHODS, attribute, last_conv_layer, method_applies
from probe.data.parity import parity
from probe.errors import ProbeInputError

H, W = 28, 56


class HalfReader(nn.Module):
    """A CNN on (1, 28, 56) Double-MNIST-shaped inputs that reads only one half: the input is multiplied by a fixed
    0/1 mask of that half, and so are the pooled features before the last (1x1, bias-free) conv, so the other half
    has no path to the logits and the Grad-CAM layer's activations vanish there too."""

    def __init__(self, side: str = "left", num_classes: int = 10, channels: int = 4):
        super().__init__()
        mask = torch.zeros(1, 1, H, W)
        if side == "left":
            mask[..., : W // 2] = 1
        else:
            mask[..., W // 2 :] = 1
        self.register_buffer("mask", mask)
        self.register_buffer("pooled_mask", mask[..., ::2, ::2].clone())
        self.conv1 = nn.Sequential(nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.conv2 = nn.Sequential(nn.Conv2d(channels, channels, 1, bias=False), nn.ReLU())
        self.fc = nn.Linear(channels * (H // 2) * (W // 2), num_classes)

    def forward(self, x):
        return self.fc(self.conv2(self.conv1(x * self.mask) * self.pooled_mask).flatten(1))


def halves(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    left = torch.zeros(n, H, W, dtype=torch.bool)
    left[..., : W // 2] = True
    return left, ~left


def linear_on(bits: torch.Tensor, dim: int) -> nn.Module:
    """A linear model on parity features whose weights are non-zero only on ``bits``."""
    g = torch.Generator().manual_seed(1)
    model = nn.Linear(dim, 2)
    with torch.no_grad():
        model.weight.copy_(torch.randn(2, dim, generator=g) * bits.float())
        model.bias.zero_()
    return model


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(0)
    return torch.rand(4, 1, H, W, generator=g), torch.randint(0, 10, (4,), generator=g)


@pytest.mark.parametrize("smoothgrad", [None, 0.1])
@pytest.mark.parametrize("method", METHODS)
def test_half_reader_core_share_known(images, method, smoothgrad):
    torch.manual_seed(0)
    x, y = images
    left, right = halves(len(x))
    for side, expect_core in (("left", 1.0), ("right", 0.0)):
        model = HalfReader(side)
        a = attribute(model, x, y, method, n_steps=4, shap_samples=4, smoothgrad=smoothgrad, nt_samples=2)
        assert a.shape == x.shape
        s = attr_shares(a, left, right)
        # Gradient methods give exactly zero mass off the read half; Grad-CAM leaks a little at the boundary
        # through the bilinear upsampling of its coarse map.
        tol = 0.05 if method == "gradcam" else 1e-6
        assert abs(s["core_attr_share"] - expect_core) <= tol
        assert abs(s["core_attr_share"] + s["spurious_attr_share"] - 1) < 1e-6
        assert s["pointing_game"] == expect_core


@pytest.mark.parametrize("method", [m for m in METHODS if m != "gradcam"])
def test_parity_linear_core_share_known(method):
    ds = parity(rho=0.9, dim=12, n_train=8, n_val=8, n_test=64)
    test = ds.split("test")
    core, spur = test.core_mask, test.spurious_mask
    for bits, expect_core, expect_spur in ((core[0], 1.0, 0.0), (spur[0], 0.0, 1.0)):
        model = linear_on(bits, 12)
        a = attribute(model, test.x, test.y, method, n_steps=8, shap_samples=4)
        s = attr_shares(a, core, spur)
        assert s["core_attr_share"] == pytest.approx(expect_core, abs=1e-6)
        assert s["spurious_attr_share"] == pytest.approx(expect_spur, abs=1e-6)
        assert s["pointing_game"] == expect_core


def test_gradcam_does_not_apply_without_conv():
    model = linear_on(torch.ones(12, dtype=torch.bool), 12)
    assert last_conv_layer(model) is None
    assert not method_applies(model, "gradcam")
    assert method_applies(model, "ig")
    with pytest.raises(ProbeInputError, match="gradcam does not apply"):
        attribute(model, torch.ones(2, 12), torch.tensor([0, 1]), "gradcam")


def captum_reference(model, x, y, method):
    """Captum called directly with the arguments the wrapper documents."""
    zero = torch.zeros_like(x[:1])
    xr = x.clone().requires_grad_()
    if method == "ig":
        return IntegratedGradients(model).attribute(xr, baselines=zero, target=y, n_steps=8)
    if method == "saliency":
        return Saliency(model).attribute(xr, target=y, abs=True)
    if method == "input_x_gradient":
        return InputXGradient(model).attribute(xr, target=y)
    if method == "deeplift":
        return DeepLift(model).attribute(xr, baselines=zero, target=y)
    if method == "gradient_shap":
        torch.manual_seed(5)
        np.random.seed(5)
        return GradientShap(model).attribute(xr, baselines=zero, n_samples=4, stdevs=0.0, target=y)
    # the default Grad-CAM layer: the last module with a 4-D output, conv2 (conv then ReLU)
    cam = LayerGradCam(model, model.conv2).attribute(xr, target=y, relu_attributions=True)
    return LayerAttribution.interpolate(cam, (H, W), interpolate_mode="bilinear").expand_as(x)


@pytest.mark.filterwarnings("ignore:Setting forward, backward hooks")
@pytest.mark.parametrize("method", METHODS)
def test_equals_captum(images, method):
    torch.manual_seed(0)
    model = HalfReader("left").eval()
    x, y = images
    ref = captum_reference(model, x, y, method).detach()
    ours = attribute(model, x, y, method, n_steps=8, shap_samples=4, seed=5)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)


def test_smoothgrad_equals_captum_noise_tunnel(images):
    torch.manual_seed(0)
    model = HalfReader("left").eval()
    x, y = images
    sigma = 0.15
    stdev = sigma * float(x.max() - x.min())
    torch.manual_seed(7)
    ref = NoiseTunnel(Saliency(model)).attribute(
        x.clone().requires_grad_(), nt_type="smoothgrad", nt_samples=3, nt_samples_batch_size=1, stdevs=stdev,
        target=y, abs=True,
    )
    ours = attribute(model, x, y, "saliency", smoothgrad=sigma, nt_samples=3, seed=7)
    torch.testing.assert_close(ours, ref.detach(), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(ours, attribute(model, x, y, "saliency"))


@pytest.mark.parametrize("method", [m for m in METHODS if m != "gradient_shap"])
def test_batching_changes_nothing(images, method):
    torch.manual_seed(0)
    model = HalfReader("left")
    x, y = images
    whole = attribute(model, x, y, method, n_steps=8, max_batch_size=len(x))
    for size in (1, 3):
        torch.testing.assert_close(attribute(model, x, y, method, n_steps=8, max_batch_size=size), whole,
                                   rtol=1e-4, atol=1e-6)
    if method == "ig":  # Captum's internal batching over integration points
        torch.testing.assert_close(attribute(model, x, y, method, n_steps=8, internal_batch_size=len(x) * 3),
                                   whole, rtol=1e-4, atol=1e-6)


def test_gradient_shap_reproducible_and_batching_within_sampling_noise(images):
    torch.manual_seed(0)
    model = HalfReader("left")
    x, y = images
    a1 = attribute(model, x, y, "gradient_shap", shap_samples=4, seed=3)
    torch.testing.assert_close(attribute(model, x, y, "gradient_shap", shap_samples=4, seed=3), a1)
    # Draws depend on the chunking; the mean over many draws converges to the same expected gradients.
    many = dict(shap_samples=64, seed=1)
    big = attribute(model, x, y, "gradient_shap", max_batch_size=4, **many)
    small = attribute(model, x, y, "gradient_shap", max_batch_size=2, **many)
    ig = attribute(model, x, y, "ig", n_steps=32)
    assert (big - small).abs().sum() / ig.abs().sum() < 0.1
    assert (big - ig).abs().sum() / ig.abs().sum() < 0.1


def test_default_target_is_prediction_and_state_restored(images):
    torch.manual_seed(0)
    model = HalfReader("left").train()
    x, _ = images
    pred = model.eval()(x).argmax(1)
    model.train()
    torch.testing.assert_close(attribute(model, x, None, "saliency"), attribute(model, x, pred, "saliency"))
    assert model.training
    assert all(p.requires_grad for p in model.parameters())


def test_bad_input_raises(images):
    x, y = images
    model = HalfReader("left")
    with pytest.raises(ProbeInputError, match="unknown attribution method"):
        attribute(model, x, y, "lime")
    with pytest.raises(ProbeInputError, match="target"):
        attribute(model, x, y[:2], "saliency")
    with pytest.raises(ProbeInputError, match="max_batch_size"):
        attribute(model, x, y, "saliency", max_batch_size=0)
