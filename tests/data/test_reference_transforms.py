"""group_DRO's Waterbirds transforms: the square resize then centre crop on a coordinate-encoding image, torchvision's
RandomResizedCrop boxes (same draws as its algorithm, within the scale and ratio bounds, the fallback), and masks
that follow their image's geometry."""

import math

import pytest
import torch
from probe_data_fixtures import write_waterbirds

from probe.data import build_dataset
from probe.data.images import (
    REFERENCE_RATIO,
    REFERENCE_SCALE,
    eval_transform,
    mask_transform,
    random_resized_crop_box,
    reference_train_pair,
    train_transform,
)
from probe.errors import ProbeInputError

STEP = 6  # pixel value = STEP * coordinate


def coordinate_image(h: int, w: int) -> torch.Tensor:
    """uint8 (3, h, w): channel 0 = STEP * row, channel 1 = STEP * column, channel 2 = 0."""
    rows = torch.arange(h).view(h, 1).expand(h, w)
    cols = torch.arange(w).view(1, w).expand(h, w)
    return torch.stack([STEP * rows, STEP * cols, torch.zeros(h, w, dtype=torch.long)]).to(torch.uint8)


def test_reference_eval_is_square_resize_then_centre_crop():
    h, w, resize, crop = 20, 24, 32, 28  # both sides upsampled: bilinear is exact on a linear ramp
    x = eval_transform(coordinate_image(h, w), resize, crop, norm=False, geometry="reference") * 255
    # by hand: both sides go to 32 (the aspect ratio is not kept); the crop box starts at round((32 - 28) / 2) = 2;
    # output pixel i of the resize samples source coordinate (i + 0.5) * side / 32 - 0.5, exact on a linear ramp
    i = torch.arange(2, 2 + crop, dtype=torch.float32)
    want_rows = STEP * ((i + 0.5) * h / resize - 0.5)
    want_cols = STEP * ((i + 0.5) * w / resize - 0.5)
    torch.testing.assert_close(x[0], want_rows.view(-1, 1).expand(crop, crop), atol=2e-3, rtol=0)
    torch.testing.assert_close(x[1], want_cols.view(1, -1).expand(crop, crop), atol=2e-3, rtol=0)
    # probe's geometry keeps the aspect ratio: 20 x 24 -> 32 x 38, a column step of 24 / 38, not 24 / 32
    p = eval_transform(coordinate_image(h, w), resize, crop, norm=False, geometry="probe") * 255
    assert float(p[1, 0, 1] - p[1, 0, 0]) == pytest.approx(STEP * w / 38, abs=2e-3)
    with pytest.raises(ProbeInputError, match="unknown transform 'nope'"):
        eval_transform(coordinate_image(h, w), resize, crop, norm=False, geometry="nope")


def torchvision_get_params(height, width, scale, ratio):
    """torchvision.transforms.RandomResizedCrop.get_params (v0.15-0.20), on torch's global generator."""
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio))
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1]).item()
        aspect_ratio = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1])).item()
        w = int(round(math.sqrt(target_area * aspect_ratio)))
        h = int(round(math.sqrt(target_area / aspect_ratio)))
        if 0 < w <= width and 0 < h <= height:
            i = torch.randint(0, height - h + 1, size=(1,)).item()
            j = torch.randint(0, width - w + 1, size=(1,)).item()
            return i, j, h, w
    in_ratio = float(width) / float(height)
    if in_ratio < min(ratio):
        w = width
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        h = height
        w = int(round(h * max(ratio)))
    else:
        w = width
        h = height
    i = (height - h) // 2
    j = (width - w) // 2
    return i, j, h, w


@pytest.mark.parametrize("hw", [(300, 400), (500, 333), (64, 64), (10, 200)])
def test_random_resized_crop_boxes_follow_torchvision(hw):
    height, width = hw
    torch.manual_seed(3)
    want = [torchvision_get_params(height, width, REFERENCE_SCALE, REFERENCE_RATIO) for _ in range(300)]
    g = torch.Generator().manual_seed(3)
    got = [random_resized_crop_box(height, width, generator=g) for _ in range(300)]
    assert got == want


def test_random_resized_crop_boxes_within_bounds():
    height, width = 400, 400  # square: every ratio in the bounds fits at the smallest area
    g = torch.Generator().manual_seed(0)
    areas, ratios = [], []
    for _ in range(2000):
        top, left, h, w = random_resized_crop_box(height, width, generator=g)
        assert 0 <= top and top + h <= height and 0 <= left and left + w <= width
        # w and h are rounded: the drawn area and ratio lie within half a pixel of the box's
        assert (w + 0.5) * (h + 0.5) >= 0.7 * height * width and (w - 0.5) * (h - 0.5) <= height * width
        assert (w - 0.5) / (h + 0.5) <= 4 / 3 and (w + 0.5) / (h - 0.5) >= 3 / 4
        areas.append(h * w / (height * width))
        ratios.append(w / h)
    assert min(areas) < 0.72 and max(areas) > 0.98  # the whole scale range is drawn
    assert min(ratios) < 0.77 and max(ratios) > 1.30
    # no box fits a 10 x 200 strip: the central crop, its ratio clamped to 4/3
    assert random_resized_crop_box(10, 200, generator=g) == (0, (200 - 13) // 2, 10, 13)


def blob_mask(h: int, w: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coarse = (torch.rand(1, 1, 5, 7, generator=g) > 0.5).float()
    m = torch.nn.functional.interpolate(coarse, size=(h, w), mode="nearest")[0, 0]
    return (m * 255).to(torch.uint8)


def test_mask_follows_its_image_through_the_augmentation():
    mask = blob_mask(37, 53, 0)
    img = mask.expand(3, -1, -1).contiguous()  # an image equal to its mask
    outs = []
    for seed in range(12):
        x, m = reference_train_pair(img, mask, 24, norm=False, generator=torch.Generator().manual_seed(seed))
        assert x.shape == (3, 24, 24) and m.shape == (24, 24)
        assert torch.equal(x[0] >= 0.5, m)
        # the image alone draws the same box and flip as the pair
        alone = train_transform(img, 28, 24, False, generator=torch.Generator().manual_seed(seed), geometry="reference")
        torch.testing.assert_close(alone, x)
        outs.append(m)
    assert len({tuple(o.flatten().tolist()) for o in outs}) == len(outs)  # different boxes and flips
    # a mask stored at half the image's size is first brought to the image's size
    small = mask[::2, ::2].contiguous()
    _, m_small = reference_train_pair(img, small, 24, norm=False, generator=torch.Generator().manual_seed(1))
    _, m_full = reference_train_pair(img, mask, 24, norm=False, generator=torch.Generator().manual_seed(1))
    assert (m_small == m_full).float().mean() > 0.9


def test_mask_follows_its_image_through_the_evaluation_geometry():
    mask = blob_mask(37, 53, 1)
    img = mask.expand(3, -1, -1).contiguous()
    for geometry in ("reference", "probe"):
        x = eval_transform(img, 32, 28, norm=False, geometry=geometry)
        assert torch.equal(mask_transform(mask, 32, 28, geometry=geometry), x[0] >= 0.5)


def test_waterbirds_transform_option(tmp_path):
    write_waterbirds(tmp_path, h=40, w=32)
    ref = build_dataset("waterbirds", data_root=str(tmp_path), image_size=16, normalize=False, transform="reference")
    probe = build_dataset("waterbirds", data_root=str(tmp_path), image_size=16, normalize=False)
    # the default is the geometry runs were recorded with before the option existed, so they rebuild as trained
    assert ref.options["transform"] == "reference" and probe.options["transform"] == "probe"
    assert ref.options["resize"] == 18
    assert not torch.equal(ref.train.x[0], probe.train.x[0])
    with pytest.raises(ProbeInputError, match="unknown waterbirds transform"):
        build_dataset("waterbirds", data_root=str(tmp_path), transform="square")
