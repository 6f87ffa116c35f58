"""Generated and semi-synthetic splits: BA fraction against rho, unbiased test splits, masks, counterfactuals."""

import numpy as np
import pytest
import torch
from scipy.stats import binomtest, chi2_contingency

from probe.data import build_dataset
from probe.data.moon_star import BACKGROUNDS, SHAPE_COLOUR

# small, fast configurations on the embedded digits / generator
CASES = {
    "parity": dict(n_train=3000, n_val=200, n_test=3000),
    "moon-star": dict(image_size=12, n_train=1500, n_val=100, n_test=1500),
    "colored-mnist": dict(),
    "double-mnist": dict(),
}


@pytest.fixture(autouse=True)
def _no_env_root(monkeypatch):
    monkeypatch.delenv("PROBE_DATA", raising=False)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("rho", [0.8, 0.97])
def test_ba_fraction_matches_rho(name, rho):
    ds = build_dataset(name, rho=rho, seed=3, **CASES[name])
    s = ds.train
    n_ba = int((~s.is_bc).sum())
    # two-sided exact binomial test of the BA count against rho
    assert binomtest(n_ba, len(s), rho).pvalue > 1e-3
    assert torch.equal(s.is_bc, s.a != s.y)


@pytest.mark.parametrize("name", sorted(CASES))
def test_test_split_is_unbiased(name):
    ds = build_dataset(name, rho=0.99, seed=1, **CASES[name])
    for split in ("test", "val"):
        s = ds.splits[split]
        table = np.zeros((ds.num_classes, ds.num_attrs))
        np.add.at(table, (s.y.numpy(), s.a.numpy()), 1)
        assert chi2_contingency(table).pvalue > 1e-3, split
    # the same test on the training split does reject: the test has power at this size
    t = ds.train
    table = np.zeros((ds.num_classes, ds.num_attrs))
    np.add.at(table, (t.y.numpy(), t.a.numpy()), 1)
    assert chi2_contingency(table).pvalue < 1e-6


@pytest.mark.parametrize("name", sorted(CASES))
def test_deterministic_given_seed(name):
    a = build_dataset(name, seed=5, **CASES[name])
    b = build_dataset(name, seed=5, **CASES[name])
    c = build_dataset(name, seed=6, **CASES[name])
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.train.index, b.train.index)
    assert not torch.equal(a.train.a, c.train.a)


def test_moon_star_masks_mark_shape_and_background():
    ds = build_dataset("moon-star", image_size=24, n_train=60, n_val=10, n_test=10, seed=0)
    s = ds.train
    pos = torch.arange(len(s))
    core, spur = s.masks(pos, "core"), s.masks(pos, "spurious")
    assert torch.equal(spur, ~core)
    frac = core.float().mean(dim=(1, 2))
    assert (frac > 0.03).all() and (frac < 0.5).all()
    # pixels fully inside the shape are the shape colour; pixels far outside are the background tint of a
    x = s.x
    inside = core & (x - SHAPE_COLOUR).abs().amax(dim=1).lt(1e-5)
    assert inside.sum(dim=(1, 2)).gt(0).all()
    corner = x[:, :, 0, 0]
    expected = BACKGROUNDS[s.a]
    assert (corner - expected).abs().max() < 0.25
    assert not core[:, 0, 0].any()


def test_moon_star_counterfactuals_keep_the_shape():
    ds = build_dataset("moon-star", image_size=16, n_train=40, n_val=10, n_test=10, seed=2)
    s = ds.train
    pos = torch.arange(20)
    flipped = ds.render_spurious("train", pos, 1 - s.a[pos])
    same = ds.render_spurious("train", pos, s.a[pos])
    torch.testing.assert_close(same, s.x[pos])
    core = s.masks(pos, "core")
    # the shape's pixels are unchanged, the background changed
    inside = core.unsqueeze(1).expand_as(flipped) & (s.x[pos] - SHAPE_COLOUR).abs().lt(1e-5)
    torch.testing.assert_close(flipped[inside], s.x[pos][inside])
    assert (flipped - s.x[pos]).abs()[~core.unsqueeze(1).expand_as(flipped)].mean() > 0.2
    other_shape = ds.render_core("train", pos, 1 - s.y[pos])
    assert not torch.equal(other_shape, s.x[pos])

    pos_ds = build_dataset("moon-star", cue="position", image_size=16, n_train=40, n_val=10, n_test=10)
    t = pos_ds.train
    core = t.masks(torch.arange(len(t)), "core")
    rows = torch.arange(16).view(1, 16, 1).float()
    centre_row = (core.float() * rows).sum(dim=(1, 2)) / core.float().sum(dim=(1, 2))
    assert (centre_row[t.a == 0] < 8).all() and (centre_row[t.a == 1] >= 8).all()


def test_colored_and_double_mnist_counterfactuals():
    ds = build_dataset("double-mnist", seed=0)
    s = ds.splits["test"]
    pos = torch.arange(30)
    new_a = (s.a[pos] + 1) % 10
    cf = ds.render_spurious("test", pos, new_a)
    side = ds.input_shape[1]
    torch.testing.assert_close(cf[..., :side], s.x[pos][..., :side])  # core half untouched
    cc = ds.render_core("test", pos, (s.y[pos] + 1) % 10)
    torch.testing.assert_close(cc[..., side:], s.x[pos][..., side:])  # spurious half untouched
    cm = build_dataset("colored-mnist", seed=0)
    t = cm.splits["test"]
    torch.testing.assert_close(cm.render_spurious("test", pos, t.a[pos]), t.x[pos])


def test_out_of_range_options_are_input_errors():
    from probe.errors import ProbeInputError

    with pytest.raises(ProbeInputError, match="rho"):
        build_dataset("moon-star", rho=1.5)
    with pytest.raises(ProbeInputError, match="cue"):
        build_dataset("moon-star", cue="size")
    with pytest.raises(ProbeInputError, match="takes no option"):
        build_dataset("moon-star", data_root="/tmp")
