"""The statistics behind a claim's verdict: a rank-correlation permutation test, Holm's adjustment, and effect
sizes in the metric's own units with intervals that contain their estimates.

Every function takes one claim's points: ``rates`` (the sweep axis, one entry per run) and ``values`` (the metric,
one entry per run); seeds are the replicates, so a rate appears once per seed.

- :func:`rank_correlation_test`: Spearman's rho of ``values`` with ``rates`` (tied ranks averaged) and its one-sided
  permutation p-values in both directions, ``p = (1 + #{perm: rho_perm >= rho}) / (1 + n_perm)`` (exact enumeration
  of all ``n!`` orderings when ``n! <= n_permutations``, then ``p = #{rho_perm >= rho} / n!``).
- :func:`holm`: Holm's step-down adjustment of a family of p-values.
- :func:`seed_variance`: the pooled within-rate variance ``s^2 = sum_r sum_i (y_ri - mean_r)^2 / (n - k)`` with
  ``n - k`` degrees of freedom (the seed-level residuals); with one run per rate, the residual variance of the
  least-squares line, ``n - 2`` degrees of freedom.
- :func:`slope_per_decade`: the least-squares slope of ``values`` on ``log10(rates)`` with standard error
  ``s / sqrt(sum (x - mean x)^2)``.
- :func:`difference_vs_lowest`: ``mean(best rate) - mean(lowest rate)`` with a t-interval
  ``+- t_{0.975, df} s sqrt(1/n_best + 1/n_low)``, or with three or more seeds at every rate a percentile bootstrap
  over seeds (each rate's runs redrawn with replacement, the best rate held fixed) when that interval contains the
  estimate.
- :func:`equivalence_p`: two one-sided t-tests (TOST) of ``|effect| < floor``: ``max(p_lower, p_upper)``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import special

#: Monte-Carlo permutations of the rank-correlation test when exact enumeration is larger.
N_PERMUTATIONS = 9999
#: bootstrap resamples of the effect interval.
N_BOOTSTRAP = 2000
#: fixed seed of every resampling, so that a report is reproducible.
RESAMPLING_SEED = 0


def average_ranks(values) -> np.ndarray:
    """Ranks 1..n of ``values``, tied values sharing the mean of their ranks (``scipy.stats.rankdata``'s default,
    without its overhead on the short arrays of a sweep)."""
    v = np.asarray(values, dtype=np.float64)
    order = np.argsort(v, kind="stable")
    ordered = v[order]
    starts = np.r_[0, np.flatnonzero(ordered[1:] != ordered[:-1]) + 1]
    ends = np.r_[starts[1:], len(v)]
    ranks = np.empty(len(v))
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def _centred_ranks(values: np.ndarray) -> np.ndarray:
    ranks = average_ranks(values)
    return ranks - ranks.mean()


@lru_cache(maxsize=64)
def _orderings(n: int, n_permutations: int, seed: int) -> tuple[np.ndarray, bool]:
    """Index orderings of ``n`` runs: all ``n!`` when that is at most ``n_permutations`` (exact), else
    ``n_permutations`` random ones (read-only, shared between calls)."""
    if math.factorial(n) <= n_permutations:
        orders = np.array(list(itertools.permutations(range(n))), dtype=np.intp)
        exact = True
    else:
        rng = np.random.default_rng(seed)
        orders, exact = rng.permuted(np.tile(np.arange(n), (n_permutations, 1)), axis=1), False
    orders.setflags(write=False)
    return orders, exact


def rank_correlation_test(rates, values, *, n_permutations: int = N_PERMUTATIONS,
                          seed: int = RESAMPLING_SEED) -> tuple[float, float, float]:
    """``(rho, p_up, p_down)``: Spearman's rho of ``values`` with ``rates`` and its one-sided permutation p-values
    for a positive (``p_up``) and a negative (``p_down``) correlation. NaN for all three when either side is
    constant or there are fewer than 3 runs."""
    x = np.asarray(rates, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    nan = (float("nan"),) * 3
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return nan
    xc, yc = _centred_ranks(x), _centred_ranks(y)
    scale = math.sqrt(float(xc @ xc) * float(yc @ yc))
    rho = float(xc @ yc) / scale
    orders, exact = _orderings(len(y), n_permutations, seed)
    perm = (yc[orders] @ xc) / scale
    tol = 1e-12
    up, down = int((perm >= rho - tol).sum()), int((perm <= rho + tol).sum())
    if exact:
        return rho, up / len(perm), down / len(perm)
    return rho, (1 + up) / (1 + len(perm)), (1 + down) / (1 + len(perm))


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values: sorted ascending, ``p_(i) * (m - i + 1)`` made non-decreasing and capped at
    1; NaN entries are not counted in ``m`` and stay NaN."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = len(finite)
    if m == 0:
        return out
    order = finite[np.argsort(p[finite], kind="stable")]
    scaled = p[order] * (m - np.arange(m))
    out[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return out


@dataclass(frozen=True)
class SeedVariance:
    """``variance`` of a run around its rate's expectation, with ``df`` degrees of freedom and ``source``
    (``"seeds"``: pooled within-rate; ``"line"``: residuals of the least-squares line, one run per rate)."""

    variance: float
    df: int
    source: str


def seed_variance(rates, values) -> SeedVariance:
    """See the module doc. ``df == 0`` (and NaN variance) when neither estimate exists."""
    x = np.asarray(rates, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    levels, inverse = np.unique(x, return_inverse=True)
    n, k = len(y), len(levels)
    if n > k:
        means = np.bincount(inverse, weights=y) / np.bincount(inverse)
        return SeedVariance(float(((y - means[inverse]) ** 2).sum() / (n - k)), n - k, "seeds")
    if n > 2 and np.ptp(x) > 0:
        lx = np.log10(x)
        slope, intercept = np.polyfit(lx, y, 1)
        return SeedVariance(float(((y - (slope * lx + intercept)) ** 2).sum() / (n - 2)), n - 2, "line")
    return SeedVariance(float("nan"), 0, "none")


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its standard error, degrees of freedom and a 95% interval."""

    value: float
    se: float
    df: int
    low: float
    high: float
    interval: str  # "t", "bootstrap" or "" (none)


def _t_estimate(value: float, se: float, df: int) -> Estimate:
    if df < 1 or not math.isfinite(se):
        return Estimate(value, float("nan"), df, float("nan"), float("nan"), "")
    half = float(special.stdtrit(df, 0.975)) * se  # the t quantile
    return Estimate(value, se, df, value - half, value + half, "t")


def slope_per_decade(rates, values, var: SeedVariance | None = None) -> Estimate:
    """Least-squares slope of ``values`` on ``log10(rates)`` (metric units per tenfold rate) with its t-interval."""
    x = np.log10(np.asarray(rates, dtype=np.float64))
    y = np.asarray(values, dtype=np.float64)
    var = var if var is not None else seed_variance(rates, values)
    sxx = float(((x - x.mean()) ** 2).sum())
    if sxx == 0:
        return Estimate(float("nan"), float("nan"), 0, float("nan"), float("nan"), "")
    slope = float(((x - x.mean()) * (y - y.mean())).sum() / sxx)
    return _t_estimate(slope, math.sqrt(var.variance / sxx) if var.df else float("nan"), var.df)


def rate_means(rates, values) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(levels, means, counts)`` per distinct rate, ascending."""
    x = np.asarray(rates, dtype=np.float64)
    levels, inverse = np.unique(x, return_inverse=True)
    counts = np.bincount(inverse)
    return levels, np.bincount(inverse, weights=np.asarray(values, dtype=np.float64)) / counts, counts


def difference_vs_lowest(rates, values, sign: int, var: SeedVariance | None = None, *,
                         n_bootstrap: int = N_BOOTSTRAP, seed: int = RESAMPLING_SEED) -> tuple[Estimate, float]:
    """``(estimate, best_rate)``: the mean of the rate whose mean is largest in direction ``sign`` (+1: largest,
    -1: smallest) minus the lowest rate's mean (see the module doc for the interval)."""
    x = np.asarray(rates, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    levels, means, counts = rate_means(x, y)
    best = int(np.argmax(sign * means))
    diff = float(means[best] - means[0])
    if best == 0:
        return Estimate(0.0, 0.0, 0, 0.0, 0.0, ""), float(levels[0])
    var = var if var is not None else seed_variance(x, y)
    t_est = _t_estimate(diff, math.sqrt(var.variance * (1 / counts[best] + 1 / counts[0])) if var.df else math.nan,
                        var.df)
    if counts.min() >= 3 and n_bootstrap > 0:
        rng = np.random.default_rng(seed)
        hi_runs, lo_runs = y[x == levels[best]], y[x == levels[0]]
        boot = (rng.choice(hi_runs, (n_bootstrap, len(hi_runs))).mean(axis=1)
                - rng.choice(lo_runs, (n_bootstrap, len(lo_runs))).mean(axis=1))
        low, high = (float(v) for v in np.percentile(boot, [2.5, 97.5]))
        if low <= diff <= high:
            return Estimate(diff, t_est.se, t_est.df, low, high, "bootstrap"), float(levels[best])
    return t_est, float(levels[best])


def equivalence_p(estimate: Estimate, floor: float) -> float:
    """TOST p-value that ``|effect| < floor``: the larger of the one-sided t-test p-values of ``effect > -floor``
    and ``effect < floor`` (NaN without a standard error)."""
    if not (math.isfinite(estimate.se) and estimate.se > 0 and estimate.df >= 1 and floor > 0):
        return float("nan")
    p_lower = float(special.stdtr(estimate.df, -(estimate.value + floor) / estimate.se))  # t survival function
    p_upper = float(special.stdtr(estimate.df, (estimate.value - floor) / estimate.se))  # t distribution function
    return max(p_lower, p_upper)
