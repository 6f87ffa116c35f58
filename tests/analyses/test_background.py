"""Background swap on a Waterbirds-format fixture with CUB-style bird masks: only pixels outside the bird mask change,
they come from another image of the other place, and a model reading the background follows it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from probe.analyses.transforms import background_partners, swap_background, transform_probe
from tests.data.probe_data_fixtures import waterbirds_test_split

CROP, RESIZE = 24, 28


@pytest.fixture(scope="module")
def birds(tmp_path_factory):
    s, pos = waterbirds_test_split(tmp_path_factory.mktemp("wb"), CROP, RESIZE)
    return s.inputs(pos).float(), s.y[pos], s.a[pos], s.masks(pos, "core")


def test_only_pixels_outside_the_bird_change_and_they_come_from_another_place(birds):
    x, _, place, core = birds
    partners = background_partners(place, torch.Generator().manual_seed(0))
    out = swap_background(x, core, partners)
    n, c, h, w = x.shape
    for i in range(n):
        j = int(partners[i])
        assert j != i and int(place[j]) != int(place[i])
        background_j = ~core[j]
        mean_j = [float(x[j, ch][background_j].mean()) for ch in range(c)]
        for r in range(h):
            for col in range(w):
                for ch in range(c):
                    got = float(out[i, ch, r, col])
                    if core[i, r, col]:
                        assert got == float(x[i, ch, r, col])  # the bird is untouched
                    elif core[j, r, col]:
                        assert got == pytest.approx(mean_j[ch], abs=1e-6)  # never the partner's bird
                    else:
                        assert got == float(x[j, ch, r, col])  # the partner's background
    # the swapped backgrounds carry the other place's colour: water is blue, land green
    blue_minus_green = (out[:, 2] - out[:, 1])[~core].view(-1)
    assert blue_minus_green.numel() > 0
    for i in range(n):
        sign = float((out[i, 2] - out[i, 1])[~core[i]].mean())
        assert (sign > 0) == (int(place[i]) == 0)  # place 0 (land) now shows water


class BackgroundReader(nn.Module):
    """Logits ``[0, mean(B - G)]``: water (blue) backgrounds give class 1; the white bird adds nothing."""

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        s = (x[:, 2] - x[:, 1]).mean(dim=(1, 2))
        return torch.stack([torch.zeros_like(s), s], dim=1) + self.anchor


def white_pixels(x: torch.Tensor) -> torch.Tensor:
    """Near-white (bird) pixels per image; the backgrounds are green or blue, never near white."""
    return (x.min(dim=1).values > 0.6).float().sum(dim=(1, 2))


class BirdReader(nn.Module):
    """Logits ``[0, white pixels - threshold]``: reads the bird's visible area only (the crop cuts some birds)."""

    def __init__(self, threshold: float):
        super().__init__()
        self.threshold = threshold
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        s = white_pixels(x) - self.threshold
        return torch.stack([torch.zeros_like(s), s], dim=1) + self.anchor


def test_background_reader_follows_the_new_background(birds):
    """Predicting the place from the background: clean accuracy 1, every swap flips it (to the other place):
    acc_bg_swap 0, bg_flip_rate 1, background_reliance 1 - 0 = 1."""
    x, _, place, core = birds
    m = transform_probe(BackgroundReader(), x, place, grids=(2,), core=core, attrs=place).metrics
    assert m["acc_untransformed"] == 1.0 and m["n_bg_swapped"] == len(x)
    assert m["acc_bg_swap"] == 0.0 and m["bg_flip_rate"] == 1.0 and m["background_reliance"] == 1.0


def test_bird_reader_ignores_the_background(birds):
    """Pasting any part of the partner's bird would change the white area and flip some predictions."""
    x, y, place, core = birds
    model = BirdReader(float(white_pixels(x).median()) + 0.5)
    clean = model(x).argmax(1)
    assert 0 < int(clean.sum()) < len(x)  # the prediction varies with the bird's area
    m = transform_probe(model, x, y, grids=(2,), core=core, attrs=place).metrics
    assert m["bg_flip_rate"] == 0.0
    assert m["acc_bg_swap"] == m["acc_untransformed"] == float((clean == y).double().mean())
