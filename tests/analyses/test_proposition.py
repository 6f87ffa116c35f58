"""The logit-scaling proposition on constructed logits whose answer is known, against scipy's logsumexp."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import logsumexp

import probe
from probe.analyses.base import AnalysisContext
from probe.analyses.proposition import (
    DEFAULT_ALPHAS,
    _is_convex_on_grid,
    check_proposition,
    loss_ratio_curve,
    proposition_epoch,
    ratio_curves,
    ratio_vs_logit_norm,
    scaled_cross_entropy,
)
from probe.errors import ProbeInputError


def _constructed():
    """K = 3, label 0 everywhere. BA margins 1.0, 1.7, 2.5 (all correct); BC: two mispredicted (gaps 0.5, 1.2)
    and one correct (margin 0.8). The smallest BA margin is 1.0."""
    logits = np.array([
        [1.0, 0.0, -0.5],   # BA, margin 1.0
        [2.0, 0.3, 0.1],    # BA, margin 1.7
        [0.5, -2.0, -3.0],  # BA, margin 2.5
        [0.0, 0.5, -1.0],   # BC, gap 0.5
        [-0.2, 0.1, 1.0],   # BC, gap 1.2
        [0.8, 0.0, -0.4],   # BC, margin 0.8
    ])
    y = np.zeros(6, dtype=int)
    is_bc = np.array([False, False, False, True, True, True])
    return logits, y, is_bc


def _ce_reference(logits, y, alphas):
    """CE(softmax(alpha z), y) with scipy's logsumexp, sample by sample and alpha by alpha."""
    out = np.empty((len(y), len(alphas)))
    for i, (z, t) in enumerate(zip(logits, y)):
        for j, alpha in enumerate(alphas):
            out[i, j] = logsumexp(alpha * z) - alpha * z[t]
    return out


def test_scaled_cross_entropy_against_scipy():
    rng = np.random.default_rng(0)
    logits, y = rng.normal(size=(12, 4)) * 2, rng.integers(0, 4, 12)
    alphas = np.array([0.01, 0.3, 1.0, 2.5, 10.0])
    got = scaled_cross_entropy(logits, y, alphas)
    assert got.shape == (12, 5)
    np.testing.assert_allclose(got, _ce_reference(logits, y, alphas), rtol=1e-9, atol=1e-12)
    # at alpha = 1 it is the plain cross-entropy; as alpha -> 0 it tends to log K
    np.testing.assert_allclose(scaled_cross_entropy(logits, y, [1e-9])[:, 0], math.log(4), rtol=1e-6)


def test_convex_in_alpha():
    logits, y, _ = _constructed()
    alphas = np.linspace(0.05, 20.0, 120)  # uniform grid: convexity = non-negative second differences
    loss = _ce_reference(logits, y, alphas)
    second = loss[:, 2:] - 2 * loss[:, 1:-1] + loss[:, :-2]
    assert np.all(second >= -1e-12)
    assert check_proposition(logits, y, np.array([False] * 3 + [True] * 3), alphas).convex
    # the convexity test itself can fail: a concave curve is rejected
    assert not _is_convex_on_grid(alphas, np.sqrt(alphas)[None, :])
    assert _is_convex_on_grid(alphas, (alphas**2)[None, :])


def test_exponential_bound_for_correct_samples():
    logits, y, is_bc = _constructed()
    alphas = np.geomspace(0.1, 10.0, 30)  # the reference keeps ~5 digits of l down to e^-25
    loss = _ce_reference(logits, y, alphas)
    ours = scaled_cross_entropy(logits, y, [200.0])[:, 0]  # e^-200 and below: only the stable form resolves it
    m = np.array([1.0, 1.7, 2.5, np.nan, np.nan, 0.8])
    for i in (0, 1, 2, 5):
        bound = 2 * np.exp(-alphas * m[i])  # (K - 1) exp(-alpha m)
        assert np.all(loss[i] <= bound * (1 + 1e-9))
        # and the bound is tight in rate: -log l / alpha -> m
        assert -math.log(ours[i]) / 200.0 == pytest.approx(m[i], rel=0.01)
    assert check_proposition(logits, y, is_bc).bound_correct_ok


def test_linear_bound_for_mispredicted_samples():
    logits, y, is_bc = _constructed()
    alphas = np.geomspace(0.1, 1e3, 30)
    loss = scaled_cross_entropy(logits, y, alphas)
    for i, d in ((3, 0.5), (4, 1.2)):
        assert np.all(loss[i] >= alphas * d)
        assert loss[i, -1] / alphas[-1] == pytest.approx(d, rel=1e-3)  # slope tends to the gap
    assert check_proposition(logits, y, is_bc).bound_mispredicted_ok


def test_ratio_curve_and_turning_point():
    logits, y, is_bc = _constructed()
    alphas = np.geomspace(0.01, 10.0, 50)  # up to where the reference's logsumexp(z) - z_y keeps its digits
    ref = _ce_reference(logits, y, alphas)
    expected = ref[is_bc].mean(axis=0) / ref[~is_bc].mean(axis=0)
    np.testing.assert_allclose(loss_ratio_curve(logits, y, is_bc, alphas), expected, rtol=1e-9)
    check = check_proposition(logits, y, is_bc, alphas)
    assert check.turning_alpha == alphas[np.argmin(expected)]
    assert check.monotone_after_turning
    np.testing.assert_allclose(check.ratio, expected, rtol=1e-9)


def test_fitted_rate_matches_smallest_ba_margin():
    logits, y, is_bc = _constructed()
    check = check_proposition(logits, y, is_bc)
    assert check.applicable and check.reason == ""
    assert check.min_ba_margin == pytest.approx(1.0)
    assert check.fitted_rate == pytest.approx(1.0, rel=0.01)
    assert check.rate_rel_error < 0.01
    assert np.all(np.isfinite(check.log_ratio))  # log space keeps it exact where R itself overflows
    assert np.isinf(check.ratio[-1])
    np.testing.assert_array_equal(check.fit_alphas, DEFAULT_ALPHAS[-5:])


def test_fitted_rate_on_random_logits():
    rng = np.random.default_rng(3)
    n, k = 80, 5
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    is_bc = rng.random(n) < 0.2
    rows = np.arange(n)
    # BA samples: make the true class win by a random positive margin; BC samples: make the true class lose
    others = logits.copy()
    others[rows, y] = -np.inf
    top = others.max(axis=1)
    logits[rows, y] = np.where(is_bc, top - rng.uniform(0.1, 2.0, n), top + rng.uniform(0.2, 3.0, n))
    m_min = float((logits[rows, y] - top)[~is_bc].min())
    check = check_proposition(logits, y, is_bc)
    assert check.applicable
    assert check.fitted_rate == pytest.approx(m_min, rel=0.01)
    assert check.monotone_after_turning and check.convex


def test_not_applicable_cases():
    logits, y, is_bc = _constructed()
    wrong_ba = logits.copy()
    wrong_ba[0] = [0.0, 1.0, 0.0]
    check = check_proposition(wrong_ba, y, is_bc)
    assert not check.applicable and "bias-aligned" in check.reason
    assert np.isnan(check.rate_rel_error)
    no_bc_wrong = logits[[0, 1, 2, 5]]
    check = check_proposition(no_bc_wrong, y[:4], is_bc[[0, 1, 2, 5]])
    assert not check.applicable and "mispredicted" in check.reason
    check = check_proposition(logits[:3], y[:3], is_bc[:3])
    assert not check.applicable and np.all(np.isnan(check.log_ratio)) and np.isnan(check.turning_alpha)


@pytest.mark.parametrize("alphas", [[1.0, 0.5, 2.0], [0.0, 1.0, 2.0], [[1.0, 2.0]], [1.0, np.inf, 3.0]])
def test_bad_alphas(alphas):
    logits, y, is_bc = _constructed()
    with pytest.raises(ProbeInputError):
        check_proposition(logits, y, is_bc, alphas, n_fit=2)


def test_as_metrics_are_floats():
    logits, y, is_bc = _constructed()
    metrics = check_proposition(logits, y, is_bc).as_metrics()
    assert all(isinstance(v, float) for v in metrics.values())
    assert metrics["applicable"] == 1.0 and metrics["monotone_after_turning"] == 1.0


def test_ratio_vs_logit_norm_follows_scaling():
    # "epochs" that only rescale the same logits: the measured ratio must be R(scale) of the base logits
    logits, y, is_bc = _constructed()
    scales = [0.5, 1.0, 2.0, 4.0]
    table = ratio_vs_logit_norm([s * logits for s in scales], y, is_bc, epochs=[0, 1, 2, 3])
    base_norm = np.linalg.norm(logits, axis=1).mean()
    np.testing.assert_allclose(table["logit_norm"], np.array(scales) * base_norm)
    np.testing.assert_allclose(table["bc_ba_loss_ratio"], loss_ratio_curve(logits, y, is_bc, scales), rtol=1e-9)
    assert table["bc_ba_loss_ratio"].is_monotonic_increasing
    assert table["applicable"].all()
    with pytest.raises(ProbeInputError):
        ratio_vs_logit_norm([logits])


def test_wrappers_on_tiny_run(tiny_parity_run):
    run = probe.open_run(tiny_parity_run)
    out = proposition_epoch(AnalysisContext(run), 3)
    rec = run.records("train", 3)
    expected = check_proposition(rec.logits, rec.y, rec.is_bc).as_metrics()
    assert set(out) == {"train"}
    assert out["train"] == pytest.approx(expected, nan_ok=True)
    table = ratio_vs_logit_norm(run)
    assert list(table["epoch"]) == run.epochs
    assert list(table["step"]) == [run.step_of(e) for e in run.epochs]
    ref = _ce_reference(rec.logits.astype(np.float64), rec.y, [1.0])[:, 0]
    assert table["bc_ba_loss_ratio"].iloc[-1] == pytest.approx(ref[rec.is_bc].mean() / ref[~rec.is_bc].mean())
    curves = ratio_curves(run, epochs=[0, 3], alphas=[0.5, 1.0, 2.0])
    assert len(curves) == 6
    np.testing.assert_allclose(curves[curves.epoch == 3]["ratio"],
                               loss_ratio_curve(rec.logits, rec.y, rec.is_bc, [0.5, 1.0, 2.0]))
