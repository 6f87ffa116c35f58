"""Heatmap grids: layout, scaling, mask outlines, files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from probe.errors import ProbeInputError
from probe.report.heatmaps import attribution_map, heatmap_grid, save_grid, underlay


def test_attribution_map_and_underlay():
    a = np.zeros((2, 3, 4, 5))
    a[0, 0, 1, 2] = -2.0
    a[0, 2, 1, 2] = 1.0
    a[0, 1, 3, 4] = 1.5
    m = attribution_map(a)
    assert m.shape == (2, 4, 5)
    assert m[0, 1, 2] == 1.0 and m[0, 3, 4] == pytest.approx(0.5)
    assert (m[1] == 0).all()  # all-zero maps stay zero, no division by zero
    rgb = underlay(torch.rand(2, 1, 4, 5) * 7 - 3)
    assert rgb.shape == (2, 4, 5, 3) and rgb.min() == 0.0 and rgb.max() == 1.0
    assert np.array_equal(rgb[..., 0], rgb[..., 1])  # grayscale shown as gray


def test_grid_layout_and_contours(tmp_path):
    x = torch.rand(3, 1, 28, 56)
    core = torch.zeros(3, 28, 56, dtype=torch.bool)
    core[..., :28] = True
    rows = [torch.rand(3, 1, 28, 56) for _ in range(2)]
    fig = heatmap_grid(x, rows, ["lr=0.01", "lr=0.1"], core_masks=core, title="t", col_labels=["a", "b", "c"])
    assert isinstance(fig, Figure)
    axes = fig.axes
    assert len(axes) == 3 * 3  # image row + two heatmap rows, three samples each
    assert [axes[i].get_ylabel() for i in (0, 3, 6)] == ["input", "lr=0.01", "lr=0.1"]
    # Every cell outlines the core mask: its contour sits on the boundary column between the halves.
    for ax in axes:
        assert len(ax.collections) == 1
        xs = np.concatenate([p.vertices[:, 0] for p in ax.collections[0].get_paths()])
        assert np.abs(xs - 27.5).min() < 0.6 and xs.max() < 28.5
    path = save_grid(tmp_path / "sub" / "grid.png", x, rows, ["r1", "r2"], core_masks=core)
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size[0] > img.size[1]


def test_vector_inputs_and_bad_shapes():
    x = torch.randn(4, 12)
    core = torch.zeros(4, 12, dtype=torch.bool)
    core[:, :3] = True
    fig = heatmap_grid(x, [torch.randn(4, 12)], ["epoch 0"], core_masks=core, show_images=False)
    assert len(fig.axes) == 4
    with pytest.raises(ProbeInputError, match="row labels"):
        heatmap_grid(x, [torch.randn(4, 12)], ["a", "b"])
    with pytest.raises(ProbeInputError, match="do not match"):
        heatmap_grid(x, [torch.randn(4, 10)], ["a"])
