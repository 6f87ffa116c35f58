"""Attribution shares, counterfactual flip rates, sample choice, the run-level API and the epoch analysis."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from probe.analyses.attribution import (
    analysis_positions,
    attr_shares,
    attr_shares_per_sample,
    attribute_run,
    core_flip_rate,
    flip_rate,
    other_values,
    select_positions,
    shares_table,
    spurious_flip_rate,
)
from probe.analyses.base import EPOCH_ANALYSES, AnalysisContext
from probe.data.parity import parity
from probe.errors import ProbeInputError


def brute_force_shares(attr: np.ndarray, core: np.ndarray, spur: np.ndarray) -> dict[str, float]:
    """Loop over samples and pixels, in plain Python."""
    core_s, spur_s, hits = [], [], []
    for i in range(len(attr)):
        mass = np.abs(attr[i]).sum(axis=0) if attr.ndim == 4 else np.abs(attr[i])
        total = c = s = 0.0
        best, best_p = -1.0, None
        for p in np.ndindex(mass.shape):
            total += mass[p]
            c += mass[p] if core[i][p] else 0.0
            s += mass[p] if spur[i][p] else 0.0
            if mass[p] > best:
                best, best_p = mass[p], p
        core_s.append(c / total)
        spur_s.append(s / total)
        hits.append(float(core[i][best_p]))
    return {"core_attr_share": np.mean(core_s), "spurious_attr_share": np.mean(spur_s), "pointing_game": np.mean(hits)}


@pytest.mark.parametrize("shape", [(5, 3, 6, 7), (5, 9)])
def test_shares_match_brute_force(shape):
    rng = np.random.default_rng(0)
    attr = rng.normal(size=shape)
    mask_shape = (shape[0], *shape[2:]) if len(shape) == 4 else shape
    core = rng.random(mask_shape) < 0.4
    spur = ~core & (rng.random(mask_shape) < 0.5)
    ours = attr_shares(torch.from_numpy(attr).float(), torch.from_numpy(core), torch.from_numpy(spur))
    ref = brute_force_shares(attr, core, spur)
    for k in ref:
        assert ours[k] == pytest.approx(ref[k], rel=1e-6)
    assert attr_shares(attr, core, spur)["core_attr_share"] == pytest.approx(ref["core_attr_share"])


def test_shares_constructed_and_zero_mass():
    a = torch.tensor([[3.0, -1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 2.0, 2.0]])
    core = torch.tensor([[True, False, False]] * 3)
    per = attr_shares_per_sample(a, core, ~core)
    np.testing.assert_allclose(per["core_attr_share"][[0, 2]], [0.75, 0.0])
    assert np.isnan(per["core_attr_share"][1])
    s = attr_shares(a, core, ~core)
    assert s["core_attr_share"] == pytest.approx(0.375)
    assert s["spurious_attr_share"] == pytest.approx(0.625)
    assert s["pointing_game"] == pytest.approx(0.5)
    with pytest.raises(ProbeInputError, match="do not match"):
        attr_shares(torch.ones(3, 4), core)


def sign_reader(bit: int, dim: int) -> nn.Module:
    """Predicts class 1 iff input bit ``bit`` is -1 (so it reads only that bit)."""
    model = nn.Linear(dim, 2)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
        model.weight[1, bit] = -1.0
        model.weight[0, bit] = 1.0
    return model


def test_flip_rates_on_constructed_models():
    ds = parity(rho=0.9, dim=10, n_train=8, n_val=8, n_test=200)
    pos = torch.arange(200)
    spurious_only = sign_reader(3, 10)  # bit 3 is the spurious bit (core bits 0..2)
    core_bit = sign_reader(0, 10)  # render_core flips bit 0
    assert spurious_flip_rate(spurious_only, ds, "test", pos) == 1.0
    assert core_flip_rate(spurious_only, ds, "test", pos) == 0.0
    assert spurious_flip_rate(core_bit, ds, "test", pos) == 0.0
    assert core_flip_rate(core_bit, ds, "test", pos) == 1.0


def test_flip_rate_counts_changed_predictions():
    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    x_cf = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    assert flip_rate(model, x, x_cf, batch_size=3) == 0.5
    with pytest.raises(ProbeInputError):
        flip_rate(model, x, x_cf[:2])


def test_other_values_differ_and_are_deterministic():
    v = torch.randint(0, 5, (300,), generator=torch.Generator().manual_seed(0))
    o = other_values(v, 5, seed=2)
    assert (o != v).all() and o.min() >= 0 and o.max() <= 4
    assert torch.equal(o, other_values(v, 5, seed=2))
    assert len(set(((o - v) % 5).tolist())) == 4


def test_flip_rate_needs_renderer():
    ds = parity(rho=0.9, dim=10, n_train=8, n_val=8, n_test=20)
    ds.render_core = None
    with pytest.raises(ProbeInputError, match="cannot re-render"):
        core_flip_rate(sign_reader(0, 10), ds, "test", torch.arange(5))


def test_sample_choice():
    ds = parity(rho=0.9, dim=10, n_train=8, n_val=8, n_test=100)
    s = ds.split("test")
    bc = select_positions(s, "bc", 10, seed=1)
    assert len(bc) == 10 and s.is_bc[bc].all() and torch.equal(bc, bc.sort().values)
    assert torch.equal(bc, select_positions(s, "bc", 10, seed=1))
    assert not s.is_bc[select_positions(s, "ba", 10)].any()
    assert (s.group[select_positions(s, "group:2", 5)] == 2).all()
    for bad in ("xx", "group:x"):
        with pytest.raises(ProbeInputError):
            select_positions(s, bad, 4)
    sub = analysis_positions(s, 80, seed=0)
    n_bc = int(s.is_bc.sum())
    assert len(sub) == 80 and len(set(sub.tolist())) == 80
    assert s.is_bc[sub[:n_bc]].all() and not s.is_bc[sub[n_bc:]].any()
    assert torch.equal(sub, analysis_positions(s, 80, seed=0))


class FakeRun:
    """Just what AnalysisContext uses: dataset() and model(epoch)."""

    def __init__(self, dataset, models):
        self._dataset, self._models = dataset, models

    def dataset(self):
        return self._dataset

    def model(self, epoch):
        return self._models[epoch]


def test_epoch_analysis_on_constructed_models():
    ds = parity(rho=0.9, dim=10, n_train=8, n_val=8, n_test=64)
    spur_bits = ds.split("test").spurious_mask[0]
    core_bits = ds.split("test").core_mask[0]
    linear_spur = nn.Linear(10, 2)
    linear_core = nn.Linear(10, 2)
    with torch.no_grad():
        linear_spur.weight.copy_(torch.tensor([[-1.0], [1.0]]) * spur_bits.float())
        linear_core.weight.copy_(torch.randn(2, 10) * core_bits.float())
    ctx = AnalysisContext(run=FakeRun(ds, {0: linear_spur, 1: linear_core}),
                          options={"attr_methods": ["ig", "saliency", "gradcam"], "attr_n": 32})
    fn = EPOCH_ANALYSES["attribution"]
    assert fn.needs_model
    m0 = fn.fn(ctx, 0)["test"]
    assert m0["core_attr_share@ig"] == pytest.approx(0.0)
    assert m0["spurious_attr_share@saliency"] == pytest.approx(1.0)
    assert m0["pointing_game@ig"] == 0.0
    assert not any("gradcam" in k for k in m0)  # no conv layer: gradcam does not apply
    assert m0["spurious_flip_rate"] == 1.0 and m0["core_flip_rate"] == 0.0
    m1 = fn.fn(ctx, 1)["test"]
    assert m1["core_attr_share@ig"] == pytest.approx(1.0)
    assert m1["spurious_flip_rate"] == 0.0


def test_attribute_run_on_a_trained_run(tiny_parity_run):
    import probe

    run = probe.open_run(tiny_parity_run)
    res = attribute_run(run, None, "ig", samples="bc", n=6, n_steps=8, device="cpu")
    assert res.epoch == run.epochs[-1]
    assert res.values.shape == res.inputs.shape == (6, 12)
    assert res.is_bc.all()
    table = res.shares()
    assert list(table["index"]) == list(res.index)
    per = attr_shares_per_sample(res.values, res.core_mask, res.spurious_mask)
    np.testing.assert_allclose(table["core_attr_share"], per["core_attr_share"])
    summary = shares_table([res, attribute_run(run, 0, "saliency", samples="bc", n=6, device="cpu")])
    assert list(summary["epoch"]) == [run.epochs[-1], 0]
    assert summary["core_attr_share"].between(0, 1).all()
    with pytest.raises(ProbeInputError, match="no epoch"):
        attribute_run(run, 999, "ig")
    with pytest.raises(ProbeInputError, match="does not apply"):
        attribute_run(run, 0, "gradcam")


def test_epoch_analysis_gradcam_layer_option():
    from probe.analyses.attribution_methods import attribute
    from probe.data import build_dataset
    from probe.models import build_model

    ds = build_dataset("double-mnist", n_train=40, max_eval_digits=60)
    torch.manual_seed(0)
    model = build_model("cnn", ds.input_shape, ds.num_classes, channels=4, width=8).eval()
    fn = EPOCH_ANALYSES["attribution"]
    s = ds.split("test")
    pos = analysis_positions(s, 16, 0)
    x, y = s.inputs(pos).float(), s.y[pos]
    core, spur = s.masks(pos, "core"), s.masks(pos, "spurious")
    for layer in ("", "conv.1"):
        ctx = AnalysisContext(run=FakeRun(ds, {0: model}), options={"attr_methods": ["gradcam"], "attr_n": 16,
                                                                     "gradcam_layer": layer})
        got = fn.fn(ctx, 0)["test"]
        want = attr_shares(attribute(model, x, y, "gradcam", layer=layer or None), core, spur)
        assert got["core_attr_share@gradcam"] == pytest.approx(want["core_attr_share"])
    assert got["core_attr_share@gradcam"] != pytest.approx(
        attr_shares(attribute(model, x, y, "gradcam"), core, spur)["core_attr_share"])
    ctx = AnalysisContext(run=FakeRun(ds, {0: model}), options={"attr_methods": ["gradcam"], "attr_n": 16,
                                                                 "gradcam_layer": "conv.9"})
    with pytest.raises(ProbeInputError, match="gradcam layer 'conv.9' is not a module"):
        fn.fn(ctx, 0)
