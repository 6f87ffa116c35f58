"""Waterbirds-format fixture with CUB-style segmentation masks: masks stay on the birds after resizing and
cropping, a model that reads only the bird gets its attribution there, and heatmap outlines sit on the birds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from probe.analyses.attribution import attr_shares
from probe.analyses.attribution_methods import METHODS, attribute
from probe.report.heatmaps import heatmap_grid, save_grid
from tests.data.probe_data_fixtures import waterbirds_test_split

CROP, RESIZE = 24, 28


@pytest.fixture(scope="module")
def birds(tmp_path_factory):
    s, pos = waterbirds_test_split(tmp_path_factory.mktemp("wb"), CROP, RESIZE)
    return s.inputs(pos), s.y[pos], s.masks(pos, "core"), s.masks(pos, "spurious")


def white(x: torch.Tensor) -> torch.Tensor:
    """The fixture's birds are white rectangles on green or blue backgrounds."""
    return x.min(dim=1).values > 0.6  # half-way between background (about 0.2) and bird (1.0)


def test_masks_aligned_after_resize_and_crop(birds):
    x, _, core, spur = birds
    assert x.shape[1:] == (3, CROP, CROP) and core.shape[1:] == (CROP, CROP)
    assert torch.equal(spur, ~core)
    bird = white(x)
    for i in range(len(x)):
        iou = (bird[i] & core[i]).sum() / (bird[i] | core[i]).sum()
        assert iou > 0.95, f"sample {i}: mask and bird overlap with IoU {float(iou):.2f}"
        # Same centre to within a pixel.
        ci = torch.nonzero(core[i]).float().mean(0)
        bi = torch.nonzero(bird[i]).float().mean(0)
        assert (ci - bi).abs().max() < 1.0


class BirdReader(nn.Module):
    """Logit 1 = sum over pixels of ReLU(R + G + B - 2.4): only near-white (bird) pixels reach the output."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1)
        self.relu = nn.ReLU()
        self.head = nn.Linear(1, 2)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
            self.conv.bias.fill_(-2.4)
            self.head.weight.copy_(torch.tensor([[0.0], [1.0]]))
            self.head.bias.zero_()

    def forward(self, x):
        return self.head(self.relu(self.conv(x)).sum(dim=(2, 3)))


@pytest.mark.parametrize("method", METHODS)
def test_bird_reader_attributes_to_the_bird(birds, method):
    x, _, core, spur = birds
    target = torch.ones(len(x), dtype=torch.long)
    a = attribute(BirdReader(), x, target, method, n_steps=8, shap_samples=4)
    s = attr_shares(a, core, spur)
    assert s["core_attr_share"] > 0.9
    assert s["pointing_game"] == 1.0


def test_heatmap_outlines_sit_on_the_birds(birds, tmp_path):
    x, _, core, _ = birds
    a = attribute(BirdReader(), x[:4], torch.ones(4, dtype=torch.long), "ig", n_steps=8)
    fig = heatmap_grid(x[:4], [a, a], ["lr=0.01", "lr=0.1"], core_masks=core[:4])
    bird = white(x[:4]).numpy()
    for k, ax in enumerate(fig.axes):
        col = k % 4
        verts = np.concatenate([p.vertices for p in ax.collections[0].get_paths()])
        rows, cols = np.nonzero(bird[col])
        # The outline encloses the bird's pixels (pixel centres) to within one pixel on every side.
        assert abs(verts[:, 0].min() - (cols.min() - 0.5)) <= 1.0 and abs(verts[:, 0].max() - (cols.max() + 0.5)) <= 1.0
        assert abs(verts[:, 1].min() - (rows.min() - 0.5)) <= 1.0 and abs(verts[:, 1].max() - (rows.max() + 0.5)) <= 1.0
    assert save_grid(tmp_path / "birds.png", x[:4], [a], ["ig"], core_masks=core[:4]).stat().st_size > 0
