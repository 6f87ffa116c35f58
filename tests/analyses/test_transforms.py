"""Transform probes: the transforms against brute-force loops and scipy, and the reliance scores on constructed
models whose reliance is known (a texture reader, a shape reader, a border reader)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

import probe
from probe.analyses.base import AnalysisContext, load_analyses
from probe.analyses.transforms import (
    MIN_ABOVE_CHANCE,
    background_partners,
    centre_box,
    channel_fill,
    is_image_shape,
    keep_border,
    keep_centre,
    low_pass,
    majority_rate,
    patch_shuffle,
    reliance,
    transform_positions,
    transform_probe,
    transforms_analysis,
)
from probe.errors import ProbeInputError

# -- the transforms ----------------------------------------------------------------------------------------------------


def _patches(img: np.ndarray, grid: int) -> list[bytes]:
    """The g x g patches of one (C, H, W) image (on the patch grid only), as sortable bytes."""
    _, h, w = img.shape
    ph, pw = h // grid, w // grid
    return sorted(img[:, r * ph : (r + 1) * ph, c * pw : (c + 1) * pw].tobytes()
                  for r in range(grid) for c in range(grid))


@pytest.mark.parametrize("grid, shape", [(2, (2, 8, 8)), (4, (3, 9, 13)), (3, (1, 7, 6)), (8, (1, 8, 16))])
def test_patch_shuffle_permutes_patches_and_keeps_the_rest(grid, shape):
    x = torch.randn(5, *shape)
    out = patch_shuffle(x, grid, torch.Generator().manual_seed(1))
    assert out.shape == x.shape
    ph, pw = shape[1] // grid, shape[2] // grid
    for i in range(len(x)):
        assert _patches(out[i].numpy(), grid) == _patches(x[i].numpy(), grid)  # the same multiset of patches
        # rows and columns beyond the patch grid stay in place
        assert torch.equal(out[i, :, grid * ph :, :], x[i, :, grid * ph :, :])
        assert torch.equal(out[i, :, :, grid * pw :], x[i, :, :, grid * pw :])
    assert not torch.equal(out, x)  # something moved (5 images, random permutations)


def test_patch_shuffle_moves_whole_patches_by_a_permutation():
    """Every pixel of a patch lands at the same offset within one destination patch; per image a permutation."""
    grid, ph, pw = 4, 2, 3
    x = torch.arange(2 * grid * ph * grid * pw, dtype=torch.float32).reshape(2, 1, grid * ph, grid * pw)
    out = patch_shuffle(x, grid, torch.Generator().manual_seed(7))
    for i in range(2):
        sources = []
        for r in range(grid):
            for c in range(grid):
                block = out[i, 0, r * ph : (r + 1) * ph, c * pw : (c + 1) * pw]
                first = int(block[0, 0] - i * x[0].numel())
                sr, sc = divmod(first, grid * pw)
                assert sr % ph == 0 and sc % pw == 0
                assert torch.equal(block, x[i, 0, sr : sr + ph, sc : sc + pw])
                sources.append((sr // ph, sc // pw))
        assert sorted(sources) == [(r, c) for r in range(grid) for c in range(grid)]


def test_patch_shuffle_is_seeded_and_grid_one_is_identity():
    x = torch.randn(4, 3, 8, 8)
    a = patch_shuffle(x, 4, torch.Generator().manual_seed(3))
    b = patch_shuffle(x, 4, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert torch.equal(patch_shuffle(x, 1, torch.Generator().manual_seed(3)), x)
    with pytest.raises(ProbeInputError, match="grid 9 does not fit"):
        patch_shuffle(x, 9)
    with pytest.raises(ProbeInputError, match=r"\(n, C, H, W\)"):
        patch_shuffle(torch.randn(4, 8), 2)


def test_low_pass_of_a_constant_image_is_itself():
    x = torch.full((2, 3, 6, 9), 0.7)
    x[1] = -1.25
    for sigma in (0.0, 0.5, 1.0, 3.0):
        assert torch.allclose(low_pass(x, sigma), x, atol=1e-6)
    assert torch.equal(low_pass(x, 0.0), x)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 1.5, 2.0])
def test_low_pass_matches_scipy_gaussian_filter(sigma):
    """scipy.ndimage.gaussian_filter over H and W with mode 'nearest' (replicate) and truncate 3 uses the same
    kernel radius (int(3 sigma + 0.5) == ceil(3 sigma) for these sigmas)."""
    x = torch.randn(2, 3, 11, 14, dtype=torch.float64)
    ours = low_pass(x, sigma).numpy()
    ref = ndimage.gaussian_filter(x.numpy(), sigma=(0, 0, sigma, sigma), mode="nearest", truncate=3.0)
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_low_pass_removes_a_checkerboard():
    """The 1-d transfer of the normalised kernel at the Nyquist frequency is sum_k w_k (-1)^k (< 0.01 at sigma 1)."""
    board = ((torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2).float().view(1, 1, 16, 16)
    out = low_pass(board, 1.0)
    k = torch.arange(-3, 4, dtype=torch.float64)
    w = torch.exp(-(k**2) / 2)
    w = w / w.sum()
    nyquist = float((w * (-1.0) ** k).sum())
    interior = out[0, 0, 3:-3, 3:-3] - 0.5
    assert torch.allclose(interior.abs(), torch.full_like(interior, 0.5 * nyquist**2), atol=1e-6)
    assert float(interior.abs().max()) < 0.01 * 0.5


def test_centre_box_and_the_two_masks_by_loop():
    box = centre_box(10, 7, 0.5)
    h, w = round(5), round(3.5)  # round half to even: 4
    top, left = (10 - h) // 2, (7 - w) // 2
    for r in range(10):
        for c in range(7):
            assert bool(box[r, c]) == (top <= r < top + h and left <= c < left + w)
    x = torch.randn(3, 2, 10, 7)
    fill = channel_fill(x)
    centre, border = keep_centre(x, 0.5), keep_border(x, 0.5)
    for i in range(3):
        for ch in range(2):
            for r in range(10):
                for c in range(7):
                    inside = bool(box[r, c])
                    expect_fill = float(x[:, ch].mean())
                    assert float(centre[i, ch, r, c]) == pytest.approx(float(x[i, ch, r, c]) if inside else expect_fill)
                    assert float(border[i, ch, r, c]) == pytest.approx(expect_fill if inside else float(x[i, ch, r, c]))
    assert fill.shape == (1, 2, 1, 1)
    with pytest.raises(ProbeInputError, match="centre fraction"):
        centre_box(8, 8, 1.0)


def test_background_partners_prefer_another_attribute():
    a = torch.tensor([0, 0, 0, 1, 1, 2, 0, 1])
    partners = background_partners(a, torch.Generator().manual_seed(0))
    for i, j in enumerate(partners.tolist()):
        assert j != i and a[j] != a[i]
    same = background_partners(torch.zeros(5, dtype=torch.long), torch.Generator().manual_seed(0))
    assert all(j != i for i, j in enumerate(same.tolist()))
    with pytest.raises(ProbeInputError, match="at least 2"):
        background_partners(torch.zeros(1))


def test_reliance_formula_and_not_measurable():
    assert reliance(0.9, 0.6, 0.5) == pytest.approx(0.75)
    assert reliance(0.9, 0.3, 0.5) == pytest.approx(1.5)  # not clipped: below chance gives > 1
    assert reliance(0.9, 0.7, 0.5, kept=True) == pytest.approx(0.5)
    assert math.isnan(reliance(0.5 + MIN_ABOVE_CHANCE / 2, 0.5, 0.5))
    assert math.isnan(reliance(0.9, float("nan"), 0.5))
    assert majority_rate(torch.tensor([0, 1, 1, 2])) == 0.5


# -- constructed models of known reliance --------------------------------------------------------------------------


class TwoLogits(nn.Module):
    """Logits ``[0, score(x)]``: class 1 iff ``score > 0`` (a tie goes to class 0)."""

    def __init__(self, score):
        super().__init__()
        self.score = score
        self.anchor = nn.Parameter(torch.zeros(()))  # a parameter, so the model has a device

    def forward(self, x):
        s = self.score(x)
        return torch.stack([torch.zeros_like(s), s], dim=1) + self.anchor


def texture_model() -> TwoLogits:
    """Mean absolute horizontal neighbour difference (high-frequency energy) above 0.25."""
    return TwoLogits(lambda x: (x[..., 1:] - x[..., :-1]).abs().mean(dim=(1, 2, 3)) - 0.25)


def shape_model() -> TwoLogits:
    """Sum over the left half minus sum over the right half."""
    return TwoLogits(lambda x: x[..., : x.shape[-1] // 2].sum(dim=(1, 2, 3)) - x[..., x.shape[-1] // 2 :].sum(
        dim=(1, 2, 3)))


def border_model() -> TwoLogits:
    """Mean over the pixels outside the centre box (fraction 0.5) minus 0.5."""
    box = centre_box(16, 16, 0.5)
    return TwoLogits(lambda x: x[..., ~box].mean(dim=(1, 2)) - 0.5)


def test_texture_model_survives_shuffling_and_dies_under_low_pass():
    """Class 1: a checkerboard of amplitude 1 (energy 1) plus a per-image constant; class 0: the constant.
    Patches of even side keep the checkerboard's phase, so a shuffled image is the image itself: acc_shuffle = 1
    exactly. The blur leaves an energy < 0.02: every image reads as class 0, acc_lowpass = 0.5 exactly."""
    n = 64
    y = torch.arange(n) % 2
    board = ((torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2).float()
    x = torch.rand(n, 1, 1, 1) + y.view(n, 1, 1, 1) * board
    out = transform_probe(texture_model(), x, y, grids=(2, 4, 8), sigma=1.0)
    m = out.metrics
    assert m["acc_untransformed"] == 1.0 and m["transform_chance"] == 0.5
    assert all(m[f"acc_shuffle@{g}"] == 1.0 for g in (2, 4, 8))
    assert m["acc_lowpass"] == 0.5
    assert m["shape_reliance"] == 0.0 and m["texture_reliance"] == 1.0
    assert "background_reliance" not in m and "background_reliance" in out.not_measurable


def test_shape_model_dies_under_shuffling_and_survives_low_pass():
    """Class 1: left half 1, right half 0; class 0 the mirror image. A symmetric blur keeps the left-right order
    (acc_lowpass = 1 exactly). After a uniform random permutation of the g^2 patches the class-1 score is > 0 with
    probability (1 - t) / 2 and 0 with probability t (a tie goes to class 0), mirrored for class 0, so the expected
    accuracy is 1/2 exactly for every g: shape_reliance ~ 1 (binomial noise over n images)."""
    n = 2000
    y = torch.arange(n) % 2
    x = torch.zeros(n, 1, 16, 16)
    x[y == 1, :, :, :8] = 1.0
    x[y == 0, :, :, 8:] = 1.0
    out = transform_probe(shape_model(), x, y, grids=(2, 4, 8), sigma=1.0, seed=5)
    m = out.metrics
    tol = 4 * math.sqrt(0.25 / n)
    assert m["acc_untransformed"] == 1.0 and m["acc_lowpass"] == 1.0 and m["texture_reliance"] == 0.0
    for g in (2, 4, 8):
        assert m[f"acc_shuffle@{g}"] == pytest.approx(0.5, abs=tol)
        assert m[f"shape_reliance@{g}"] == pytest.approx((1 - m[f"acc_shuffle@{g}"]) / 0.5)
    assert m["shape_reliance"] == pytest.approx(1.0, abs=2 * tol)


def test_border_model_has_border_reliance_one_and_centre_reliance_zero():
    """Class 1: bright border (1), class 0: dark border (0), random centre. Keeping the border keeps every prediction
    (border_reliance = 1 exactly); keeping only the centre fills the border with one constant colour, so every image
    gets the same prediction (acc 1/2 = chance: centre_reliance = 0 exactly)."""
    n = 40
    y = torch.arange(n) % 2
    box = centre_box(16, 16, 0.5)
    x = y.view(n, 1, 1, 1).float().expand(n, 3, 16, 16).clone()
    x[:, :, box] = torch.rand(n, 3, int(box.sum()))
    m = transform_probe(border_model(), x, y, grids=(2,), centre_fraction=0.5).metrics
    assert m["acc_untransformed"] == 1.0
    assert m["acc_border_only"] == 1.0 and m["border_reliance"] == 1.0
    assert m["acc_centre_only"] == 0.5 and m["centre_reliance"] == 0.0


def test_scores_are_not_measurable_at_chance():
    n = 20
    y = torch.arange(n) % 2
    x = torch.zeros(n, 1, 8, 8)  # the shape model scores 0 everywhere: every prediction is class 0
    out = transform_probe(shape_model(), x, y, grids=(2, 16))
    m = out.metrics
    assert m["acc_untransformed"] == 0.5
    for key in ("shape_reliance@2", "shape_reliance", "texture_reliance", "border_reliance", "centre_reliance"):
        assert math.isnan(m[key]) and "above chance" in out.not_measurable[key]
    assert math.isnan(m["acc_shuffle@16"]) and "does not fit" in out.not_measurable["acc_shuffle@16"]


def test_background_swap_of_a_constructed_background_reader():
    """Object: a bright square (core mask); background: 1 for attribute 1, 0 for attribute 0; the label is the
    attribute and the model reads the mean of the image. Swapping in a background of the other attribute flips every
    prediction: acc_bg_swap = 0, bg_flip_rate = 1, background_reliance = 1 - 0 = 1 (the plain drop)."""
    n = 12
    a = torch.arange(n) % 2
    x = a.view(n, 1, 1, 1).float().expand(n, 1, 8, 8).clone()
    core = torch.zeros(n, 8, 8, dtype=torch.bool)
    core[:, 2:4, 3:5] = True
    x[:, 0][core] = 0.5
    model = TwoLogits(lambda t: t.mean(dim=(1, 2, 3)) - 0.5)
    m = transform_probe(model, x, a, grids=(2,), core=core, attrs=a).metrics
    assert m["acc_untransformed"] == 1.0 and m["n_bg_swapped"] == n
    assert m["acc_bg_swap"] == 0.0 and m["bg_flip_rate"] == 1.0 and m["background_reliance"] == 1.0


# -- the epoch analysis ------------------------------------------------------------------------------------------------


def test_the_analysis_is_declared_and_skips_non_images(tiny_parity_run):
    registry = load_analyses()
    assert registry["transforms"].needs_model
    assert is_image_shape((3, 8, 8)) and not is_image_shape((12,))
    ctx = AnalysisContext(probe.open_run(tiny_parity_run))
    assert transforms_analysis(ctx, 0) == {}


def test_transform_positions_are_a_seeded_subset():
    p = transform_positions(100, 10, 3)
    assert torch.equal(p, transform_positions(100, 10, 3)) and len(set(p.tolist())) == 10
    assert torch.equal(transform_positions(5, 10, 0), torch.arange(5))
