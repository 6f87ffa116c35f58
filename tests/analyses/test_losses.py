"""Cross-entropy, cmr and the loss shares against a brute-force loop, scipy and torch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp, softmax

import probe
from probe.analyses.base import AnalysisContext
from probe.analyses.losses import (
    DEFAULT_CONFIDENCE_EDGES,
    bc_ba_loss_ratio,
    bc_ba_loss_ratio_sum,
    bc_loss_share,
    cmr,
    confidence_histogram,
    confidence_histograms,
    cross_entropy,
    losses_epoch,
)
from probe.errors import ProbeInputError


def _data(n=60, k=3, seed=1, scale=4.0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k)) * scale
    y = rng.integers(0, k, n)
    is_bc = rng.random(n) < 0.4
    return logits, y, is_bc


def test_cross_entropy_brute_force_loop():
    logits, y, _ = _data()
    expected = []
    for row, t in zip(logits.tolist(), y):
        total = sum(math.exp(v) for v in row)
        expected.append(-math.log(math.exp(row[t]) / total))
    np.testing.assert_allclose(cross_entropy(logits, y), expected, rtol=1e-9)  # the loop itself cancels


def test_cross_entropy_tiny_losses_keep_relative_precision():
    # l = log(1 + e^-40 + e^-50) = e^-40 + e^-50 - ...: lost entirely by logsumexp(z) - z_y
    got = cross_entropy([[40.0, 0.0, -10.0]], [0])[0]
    assert got == pytest.approx(math.exp(-40) + math.exp(-50), rel=1e-12)


def test_cross_entropy_large_logits_against_scipy_and_torch():
    logits, y, _ = _data(scale=400.0)
    expected = logsumexp(logits, axis=1) - logits[np.arange(len(y)), y]
    got = cross_entropy(logits, y)
    assert np.all(np.isfinite(got))
    # the references compute logsumexp(z) - z_y, which cancels to 0 for confident samples: compare absolutely there
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    torch_ce = torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor(y), reduction="none")
    np.testing.assert_allclose(got, torch_ce.numpy(), rtol=1e-12, atol=1e-12)


def _cmr_loop(logits, y, is_bc, tau):
    probs = softmax(logits, axis=1)
    n_bc, hits = 0, 0
    for p, t, b in zip(probs, y, is_bc):
        if b:
            n_bc += 1
            if int(np.argmax(p)) != t and p.max() >= tau:
                hits += 1
    return hits / n_bc


def test_cmr_brute_force():
    logits, y, is_bc = _data()
    got = cmr(logits, y, is_bc, taus=(0.5, 0.9, 0.99, 0.3))
    assert list(got) == ["cmr@0.5", "cmr@0.9", "cmr@0.99", "cmr@0.3"]
    for tau in (0.5, 0.9, 0.99, 0.3):
        assert got[f"cmr@{tau:g}"] == pytest.approx(_cmr_loop(logits, y, is_bc, tau))
    assert got["cmr@0.3"] >= got["cmr@0.5"] >= got["cmr@0.9"] >= got["cmr@0.99"]
    assert 0 < got["cmr@0.9"]  # the data has confident BC mistakes, so the test can tell a broken count


def test_cmr_no_bc_and_bad_tau():
    logits, y, _ = _data(n=5)
    assert np.isnan(cmr(logits, y, np.zeros(5, bool))["cmr@0.9"])
    with pytest.raises(ProbeInputError):
        cmr(logits, y, np.zeros(5, bool), taus=(1.5,))


def test_confidence_histogram_recovers_cmr():
    logits, y, is_bc = _data(n=300, scale=6.0)
    hist = confidence_histogram(logits, y, is_bc)
    assert hist.n_bc == int(is_bc.sum())
    conf = softmax(logits, axis=1).max(axis=1)
    wrong_bc = is_bc & (logits.argmax(axis=1) != y)
    assert hist.counts.sum() == wrong_bc.sum()
    for tau in (0.5, 0.9, 0.99, 0.75, 0.999):
        assert tau in DEFAULT_CONFIDENCE_EDGES
        assert hist.cmr(tau) == pytest.approx(_cmr_loop(logits, y, is_bc, tau))
    # between edges the histogram gives a lower bound
    exact = np.sum(wrong_bc & (conf >= 0.905)) / is_bc.sum()
    assert hist.cmr(0.905) <= exact
    coarse = confidence_histogram(logits, y, is_bc, bins=4)
    np.testing.assert_allclose(coarse.edges, [0, 0.25, 0.5, 0.75, 1.0])
    assert coarse.cmr(0.5) == pytest.approx(_cmr_loop(logits, y, is_bc, 0.5))
    assert hist.as_dict()["n_bc"] == hist.n_bc


def test_confidence_histogram_bad_bins():
    logits, y, is_bc = _data(n=5)
    with pytest.raises(ProbeInputError):
        confidence_histogram(logits, y, is_bc, bins=[0.0, 0.6, 0.5, 1.0])


def test_loss_shares_known_case():
    loss = np.array([1.0, 2.0, 3.0, 4.0])
    is_bc = np.array([True, False, False, True])
    assert bc_loss_share(loss, is_bc) == pytest.approx(5 / 10)
    assert bc_ba_loss_ratio(loss, is_bc) == pytest.approx(2.5 / 2.5)
    assert bc_ba_loss_ratio_sum(loss, is_bc) == pytest.approx(5 / 5)
    is_bc = np.array([True, False, False, False])
    assert bc_ba_loss_ratio(loss, is_bc) == pytest.approx(1.0 / 3.0)
    assert bc_ba_loss_ratio_sum(loss, is_bc) == pytest.approx(1.0 / 9.0)


def test_loss_shares_brute_force_and_edges():
    logits, y, is_bc = _data()
    loss = cross_entropy(logits, y)
    bc_sum = sum(v for v, b in zip(loss, is_bc) if b)
    ba_sum = sum(v for v, b in zip(loss, is_bc) if not b)
    assert bc_loss_share(loss, is_bc) == pytest.approx(bc_sum / (bc_sum + ba_sum))
    assert bc_ba_loss_ratio(loss, is_bc) == pytest.approx((bc_sum / is_bc.sum()) / (ba_sum / (~is_bc).sum()))
    assert bc_ba_loss_ratio_sum(loss, is_bc) == pytest.approx(bc_sum / ba_sum)
    assert np.isnan(bc_ba_loss_ratio(loss, np.zeros(len(loss), bool)))
    assert bc_ba_loss_ratio([1.0, 0.0], [True, False]) == math.inf
    assert np.isnan(bc_loss_share([0.0, 0.0], [True, False]))
    with pytest.raises(ProbeInputError):
        bc_loss_share(np.zeros((2, 2)), [True, False])


def test_losses_epoch_on_tiny_run(tiny_parity_run):
    run = probe.open_run(tiny_parity_run)
    out0 = losses_epoch(AnalysisContext(run), 0)
    assert "sgd" not in out0  # no step before epoch 1
    out = losses_epoch(AnalysisContext(run), 1)
    assert set(out) == {*run.splits, "sgd"}
    rec = run.records("train", 1)
    np.testing.assert_allclose(cross_entropy(rec.logits, rec.y), rec.loss, rtol=1e-4, atol=1e-6)
    assert out["train"]["cmr@0.9"] == pytest.approx(_cmr_loop(rec.logits.astype(np.float64), rec.y, rec.is_bc, 0.9))
    assert out["train"]["bc_loss_share"] == pytest.approx(bc_loss_share(rec.loss, rec.is_bc))
    assert set(out["train"]) == {"cmr@0.5", "cmr@0.9", "cmr@0.99", "bc_loss_share", "bc_ba_loss_ratio",
                                 "bc_ba_loss_ratio_sum"}
    sgd = run.sgd_records(1)
    assert out["sgd"] == pytest.approx({"bc_loss_share": bc_loss_share(sgd.loss, sgd.is_bc),
                                        "bc_ba_loss_ratio": bc_ba_loss_ratio(sgd.loss, sgd.is_bc)})
    table = confidence_histograms(run, "train", epochs=[0, 1])
    assert list(table.columns) == ["epoch", "split", "bin_lo", "bin_hi", "count", "n_bc"]
    wrong_bc = rec.is_bc & (rec.logits.argmax(axis=1) != rec.y)
    assert table[table.epoch == 1]["count"].sum() == wrong_bc.sum()
