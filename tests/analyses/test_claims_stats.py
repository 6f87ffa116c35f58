"""The statistics of the verdicts against scipy and brute-force computations."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from probe.analyses import claims_stats as st


def _brute_holm(p):
    m = len(p)
    order = np.argsort(p)
    adjusted = np.empty(m)
    running = 0.0
    for i, j in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[j]))
        adjusted[j] = running
    return adjusted


def test_average_ranks_equal_scipy():
    rng = np.random.default_rng(2)
    for _ in range(50):
        values = rng.integers(0, 5, size=rng.integers(1, 20)).astype(float)
        np.testing.assert_array_equal(st.average_ranks(values), stats.rankdata(values))


def test_exact_permutation_test_equals_full_enumeration():
    rates = np.array([0.01, 0.03, 0.1, 0.3, 1.0, 1.0])
    values = np.array([0.2, 0.1, 0.4, 0.35, 0.5, 0.5])  # ties on both sides
    rho, p_up, p_down = st.rank_correlation_test(rates, values)
    assert rho == pytest.approx(stats.spearmanr(rates, values).statistic)
    perms = [stats.spearmanr(rates, values[list(o)]).statistic for o in itertools.permutations(range(6))]
    assert p_up == pytest.approx(np.mean(np.array(perms) >= rho - 1e-12))
    assert p_down == pytest.approx(np.mean(np.array(perms) <= rho + 1e-12))


def _spearman_rows(x, y):
    """Spearman's rho of ``x`` with each row of ``y``: the Pearson correlation of scipy's ranks."""
    xr = stats.rankdata(x) - stats.rankdata(x).mean()
    yr = stats.rankdata(y, axis=-1)
    yr = yr - yr.mean(axis=-1, keepdims=True)
    return (yr @ xr) / np.sqrt((xr @ xr) * (yr**2).sum(axis=-1))


def test_monte_carlo_permutation_test_matches_scipy():
    rng = np.random.default_rng(3)
    rates = np.repeat([0.01, 0.03, 0.1, 0.3, 1.0], 3)
    values = 0.02 * np.arange(15) / 15 + rng.normal(0, 0.02, 15)
    rho, p_up, p_down = st.rank_correlation_test(rates, values)
    ref = stats.permutation_test((values,), lambda y, axis=-1: _spearman_rows(rates, y), vectorized=True,
                                 permutation_type="pairings", n_resamples=9999, alternative="greater",
                                 random_state=1)
    assert p_up == pytest.approx(ref.pvalue, abs=0.02)  # two independent Monte-Carlo estimates
    assert 1.0 <= p_up + p_down <= 1.05  # permutations that tie with rho count on both sides
    assert 0 < p_up < 1


def test_permutation_test_needs_variation():
    assert all(math.isnan(v) for v in st.rank_correlation_test([0.1, 0.2, 0.3], [1.0, 1.0, 1.0]))
    assert all(math.isnan(v) for v in st.rank_correlation_test([0.1, 0.2], [1.0, 2.0]))


def test_holm_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = rng.uniform(0, 0.2, size=rng.integers(1, 12))
        np.testing.assert_allclose(st.holm(p), _brute_holm(p))
    out = st.holm([0.01, np.nan, 0.04])
    assert math.isnan(out[1]) and out[0] == pytest.approx(0.02) and out[2] == pytest.approx(0.04)


def test_slope_equals_least_squares_with_pure_error():
    rates = np.repeat([0.01, 0.1, 1.0], 3)
    values = np.array([0.1, 0.12, 0.11, 0.2, 0.22, 0.19, 0.3, 0.33, 0.29])
    est = st.slope_per_decade(rates, values)
    ref = stats.linregress(np.log10(rates), values)
    assert est.value == pytest.approx(ref.slope)
    means = np.array([values[i:i + 3].mean() for i in (0, 3, 6)])
    pure = ((values - np.repeat(means, 3)) ** 2).sum() / (9 - 3)
    x = np.log10(rates)
    assert est.se == pytest.approx(math.sqrt(pure / ((x - x.mean()) ** 2).sum()))
    assert est.df == 6 and est.low < est.value < est.high
    assert est.high - est.value == pytest.approx(stats.t.ppf(0.975, 6) * est.se)


def test_one_run_per_rate_uses_line_residuals():
    rates = [0.01, 0.1, 1.0, 10.0]
    values = [0.1, 0.25, 0.28, 0.41]
    var = st.seed_variance(rates, values)
    ref = stats.linregress(np.log10(rates), values)
    assert var.source == "line" and var.df == 2
    est = st.slope_per_decade(rates, values, var)
    assert est.se == pytest.approx(ref.stderr)


def test_difference_vs_lowest_t_interval_equals_pooled_t_test():
    rates = np.repeat([0.01, 0.1, 1.0], 2)
    values = np.array([0.1, 0.14, 0.5, 0.56, 0.3, 0.32])
    est, best = st.difference_vs_lowest(rates, values, +1)
    assert best == 0.1 and est.value == pytest.approx(0.53 - 0.12) and est.interval == "t"
    pooled = sum(((values[i:i + 2] - values[i:i + 2].mean()) ** 2).sum() for i in (0, 2, 4)) / 3
    half = stats.t.ppf(0.975, 3) * math.sqrt(pooled * (1 / 2 + 1 / 2))
    assert (est.low, est.high) == pytest.approx((est.value - half, est.value + half))
    down, worst = st.difference_vs_lowest(rates, values, -1)
    assert worst == 0.01 and down.value == 0.0  # the lowest rate is already the smallest


def test_bootstrap_interval_with_three_seeds_contains_estimate():
    rng = np.random.default_rng(1)
    rates = np.repeat([0.01, 0.1, 1.0], 3)
    for _ in range(20):
        values = rng.normal(0, 1, 9)
        est, _ = st.difference_vs_lowest(rates, values, +1)
        if est.interval:
            assert est.low <= est.value <= est.high


def test_equivalence_p_is_the_larger_one_sided_p():
    est = st.Estimate(0.003, 0.004, 10, float("nan"), float("nan"), "t")
    p = st.equivalence_p(est, 0.02)
    t_lo, t_hi = (0.003 + 0.02) / 0.004, (0.003 - 0.02) / 0.004
    assert p == pytest.approx(max(stats.t.sf(t_lo, 10), stats.t.cdf(t_hi, 10)))
    assert st.equivalence_p(st.Estimate(0.05, 0.004, 10, 0, 0, "t"), 0.02) > 0.5
    assert math.isnan(st.equivalence_p(st.Estimate(0.0, float("nan"), 0, 0, 0, ""), 0.02))
