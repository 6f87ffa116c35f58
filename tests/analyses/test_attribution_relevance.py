"""Relevance mass / rank accuracy against Quantus, the area-normalised share and n_attributed.

Quantus is the reference: its metrics take pre-computed attributions (``a_batch``) and masks (``s_batch``), so no
model is needed. Quantus wants a one-channel map: the tests give it ``max(0, sum_c A)`` for the mass and ``sum_c A``
for the rank, as probe defines the two (``relevance_per_sample``)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import quantus  # a test dependency (setup.cfg, extra "test")
import torch
from torch import nn

from probe.analyses.attribution import (
    attr_shares,
    attr_shares_per_sample,
    n_attributed,
    relevance_per_sample,
)
from probe.analyses.attribution_methods import attribute
from probe.analyses.base import EPOCH_ANALYSES, AnalysisContext
from probe.data.double_mnist import double_mnist
from probe.data.parity import parity
from probe.errors import ProbeInputError
from probe.models.cnn import SmallCNN


def quantus_scores(x: np.ndarray, a_map: np.ndarray, core: np.ndarray) -> dict[str, np.ndarray]:
    """Quantus's RelevanceMassAccuracy on ``max(0, a_map)`` and RelevanceRankAccuracy on ``a_map``, both with its
    default settings (``abs=False``, ``normalise=True``), per sample. ``a_map``: ``(n, 1, H, W)``."""
    kw = dict(model=None, x_batch=x, y_batch=np.zeros(len(x), dtype=int), s_batch=core[:, None].astype(bool),
              channel_first=True)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Return np.nan")  # an empty core region: NaN, as probe's
        mass = quantus.RelevanceMassAccuracy(disable_warnings=True)(a_batch=np.clip(a_map, 0, None), **kw)
        rank = quantus.RelevanceRankAccuracy(disable_warnings=True)(a_batch=a_map, **kw)
    return {"core_relevance_mass": np.asarray(mass, dtype=float), "core_relevance_rank": np.asarray(rank, dtype=float)}


def assert_same(ours: np.ndarray, ref: np.ndarray) -> None:
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))
    np.testing.assert_allclose(ours[~np.isnan(ours)], ref[~np.isnan(ref)], rtol=0, atol=1e-6)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("tied", [False, True])
def test_random_attributions_match_quantus(channels, tied):
    """Random attributions (channels summed first, as Quantus needs one channel) and random masks, one of them
    empty; ``tied`` rounds the attributions to a few integer levels, so ties straddle the top-k cut."""
    rng = np.random.default_rng(channels + 10 * tied)
    n, h, w = 40, 6, 7
    attr = rng.normal(size=(n, channels, h, w))
    if tied:
        attr = np.round(attr)
    core = rng.random((n, h, w)) < rng.uniform(0.1, 0.7, size=(n, 1, 1))
    core[3] = False  # an empty core region: NaN in both
    x = rng.random((n, channels, h, w))
    ref = quantus_scores(x, attr.sum(axis=1, keepdims=True), core)
    for a in (attr, torch.from_numpy(attr)):
        ours = relevance_per_sample(a, core)
        for k in ref:
            assert_same(ours[k], ref[k])
        per = attr_shares_per_sample(a, core, ~core)
        for k in ref:
            assert_same(per[k], ref[k])
    if tied:  # the tie order matters here: the top-k set read by index order would give other values somewhere
        k = core.reshape(n, -1).sum(axis=1)
        flat = attr.sum(axis=1).reshape(n, -1)
        by_index = np.array([core.reshape(n, -1)[i][np.argsort(-flat[i], kind="stable")[: k[i]]].sum() / k[i]
                             if k[i] else np.nan for i in range(n)])
        assert not np.allclose(by_index[k > 0], ref["core_relevance_rank"][k > 0])


def brute_force(attr: np.ndarray, core: np.ndarray) -> dict[str, list[float]]:
    """Loops over samples and pixels: positive mass share, top-k hits (no ties in its inputs), area ratio."""
    out: dict[str, list[float]] = {"core_relevance_mass": [], "core_relevance_rank": [], "core_area_ratio": []}
    for i in range(len(attr)):
        s = attr[i].sum(axis=0) if attr.ndim == 4 else attr[i]
        pixels = list(np.ndindex(s.shape))
        inside_pos = sum(max(0.0, s[p]) for p in pixels if core[i][p])
        total_pos = sum(max(0.0, s[p]) for p in pixels)
        out["core_relevance_mass"].append(inside_pos / total_pos)
        k = sum(bool(core[i][p]) for p in pixels)
        top = sorted(pixels, key=lambda p: -s[p])[:k]
        out["core_relevance_rank"].append(sum(bool(core[i][p]) for p in top) / k)
        mass = np.abs(attr[i]).sum(axis=0) if attr.ndim == 4 else np.abs(attr[i])
        share = sum(mass[p] for p in pixels if core[i][p]) / sum(mass[p] for p in pixels)
        out["core_area_ratio"].append(share / (k / len(pixels)))
    return out


@pytest.mark.parametrize("shape", [(6, 3, 5, 4), (6, 11)])
def test_brute_force_images_and_vectors(shape):
    rng = np.random.default_rng(3)
    attr = rng.normal(size=shape)
    core = rng.random((shape[0], *shape[2:]) if len(shape) == 4 else shape) < 0.4
    core.reshape(len(core), -1)[:, 0] = True
    per = attr_shares_per_sample(torch.from_numpy(attr).float(), core)
    for k, v in brute_force(attr, core).items():
        np.testing.assert_allclose(per[k], v, rtol=1e-5)
    means = attr_shares(attr, core)
    assert means["core_area_ratio"] == pytest.approx(np.mean(brute_force(attr, core)["core_area_ratio"]))


def test_constructed_case_and_edge_cases():
    # sample 0: s = [3, -1, 0, 2], core {0, 1}: positive mass 3 of 5, top-2 = {0, 3} -> 1 of 2,
    # |A| share 4/6 over area 1/2 -> 4/3; sample 1: all zero -> NaN mass, NaN rank; sample 2: empty core
    a = torch.tensor([[3.0, -1.0, 0.0, 2.0], [0.0, 0.0, 0.0, 0.0], [1.0, 2.0, -1.0, 0.5]])
    core = torch.tensor([[True, True, False, False], [True, False, False, False], [False, False, False, False]])
    per = attr_shares_per_sample(a, core)
    np.testing.assert_allclose(per["core_relevance_mass"][0], 0.6)
    np.testing.assert_allclose(per["core_relevance_rank"][0], 0.5)
    np.testing.assert_allclose(per["core_area_ratio"][0], 4 / 3)
    assert np.isnan(per["core_relevance_mass"][1]) and np.isnan(per["core_relevance_rank"][1])
    assert all(np.isnan(per[k][2]) for k in ("core_relevance_mass", "core_relevance_rank", "core_area_ratio"))
    # negative core attribution: Quantus on the signed map leaves [0, 1]; the positive part stays inside
    b = np.array([[-2.0, 0.5, 3.0, 0.5]])
    c = np.array([[True, True, False, False]])
    assert relevance_per_sample(b, c)["core_relevance_mass"][0] == pytest.approx(0.125)
    signed = quantus.RelevanceMassAccuracy(disable_warnings=True)(
        model=None, x_batch=np.ones((1, 1, 2, 2)), y_batch=np.zeros(1, dtype=int), a_batch=b.reshape(1, 1, 2, 2),
        s_batch=c.reshape(1, 1, 2, 2), channel_first=True)
    assert signed[0] == pytest.approx(-0.75)  # Quantus takes the map as given: (-2 + 0.5) / 2
    assert n_attributed(core) == 2
    with pytest.raises(ProbeInputError, match="do not match"):
        relevance_per_sample(torch.ones(3, 5), core)


def test_real_attributions_of_a_tiny_model_on_double_mnist():
    """A small CNN trained for 60 SGD steps on Double MNIST (embedded 8x8 digits: 1 x 8 x 16 inputs), attributed
    with Integrated Gradients (exact zeros on the black background: ties at the top-k cut) and saliency."""
    ds = double_mnist(rho=0.9, seed=0)
    train, test = ds.split("train"), ds.split("test")
    torch.manual_seed(0)
    model = SmallCNN((1, 8, 16), 10, channels=8, width=32)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(0)
    for _ in range(60):
        idx = torch.randint(0, len(train), (64,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(model(train.inputs(idx).float()), train.y[idx]).backward()
        opt.step()
    pos = torch.arange(48)
    x, y, core = test.inputs(pos).float(), test.y[pos], test.masks(pos, "core")
    for method in ("ig", "saliency"):
        values = attribute(model, x, y, method, n_steps=16)
        ours = attr_shares_per_sample(values, core, test.masks(pos, "spurious"))
        ref = quantus_scores(x.numpy(), values.numpy(), core.numpy())  # float32, as Captum gives them
        for k in ref:
            assert_same(ours[k], ref[k])
        assert np.isfinite(ours["core_relevance_mass"]).all()
        np.testing.assert_allclose(ours["core_area_ratio"], ours["core_attr_share"] / 0.5)
        if method == "ig":  # the ties the rank reads through numpy's argsort, as Quantus does
            s = values.numpy().reshape(len(pos), -1)
            kth = np.sort(s, axis=1)[:, ::-1][:, core[0].sum()]
            assert (kth == 0).any()


class FakeRun:
    def __init__(self, dataset, models):
        self._dataset, self._models = dataset, models

    def dataset(self):
        return self._dataset

    def model(self, epoch):
        return self._models[epoch]


def test_epoch_analysis_emits_the_relevance_ids():
    ds = parity(rho=0.9, dim=10, n_train=8, n_val=8, n_test=64)
    test = ds.split("test")
    spur_bits, core_bits = test.spurious_mask[0], test.core_mask[0]
    reads_spurious, reads_core = nn.Linear(10, 2), nn.Linear(10, 2)
    with torch.no_grad():
        reads_spurious.weight.copy_(torch.tensor([[-1.0], [1.0]]) * spur_bits.float())
        reads_core.weight.copy_(torch.randn(2, 10) * core_bits.float())
    ctx = AnalysisContext(run=FakeRun(ds, {0: reads_spurious, 1: reads_core}),
                          options={"attr_methods": ["ig", "saliency", "gradcam"], "attr_n": 32})
    fn = EPOCH_ANALYSES["attribution"]
    assert fn.version >= 2
    m0, m1 = fn.fn(ctx, 0)["test"], fn.fn(ctx, 1)["test"]
    assert m0["n_attributed"] == 32.0 == m1["n_attributed"]
    assert m0["core_relevance_mass@ig"] == 0.0 and m0["core_area_ratio@saliency"] == 0.0
    assert m1["core_relevance_mass@ig"] == pytest.approx(1.0)
    area = float(core_bits.float().mean())
    assert m1["core_area_ratio@ig"] == pytest.approx(1 / area)
    # the rank: the core region's k bits are exactly the k bits with attribution, unless fewer are positive
    x = test.inputs(torch.arange(64)).float()
    values = attribute(reads_core, x, test.y, "ig")
    rank = relevance_per_sample(values, test.core_mask)["core_relevance_rank"]
    assert 0.0 <= rank.min() and rank.max() == 1.0
    assert not any("gradcam" in k for k in m0)
