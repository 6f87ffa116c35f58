"""Linear probes and deep feature reweighting (DFR) on frozen features.

- ``probe_core`` / ``probe_spurious``: balanced accuracy of a linear probe (standardised features, L2 logistic
  regression) predicting ``y`` / ``a``, fit on a group-balanced subset of a held-out split and scored on a disjoint,
  equally group-balanced subset (:func:`balanced_probe_split`).
- ``dfr_wga``: worst-group test accuracy of a last layer retrained on group-balanced held-out data (Kirichenko,
  Izmailov, Wilson, "Last Layer Re-Training is Sufficient for Robustness to Spurious Correlations", ICLR 2023):
  L1 logistic regression (liblinear's objective, one-vs-rest for more than two classes) on standardised features; C
  chosen by worst-group accuracy on one half of the held-out split after fitting on a group-balanced subsample of the
  other half; then refit on ``num_retrains`` group-balanced subsamples of the whole held-out split and average the
  weights. The worst group is taken over the test groups with at least ``min_group_size`` samples (default 20, the
  rule of ``wga``: :func:`probe.analyses.groups.worst_group`); NaN when none has that many. ``dfr_min_group_n`` is
  the size of the smallest group used and ``dfr_groups_excluded`` the number of non-empty test groups left out.
- ``n_probe_eval``: the number of samples the linear probes are scored on (the score subset).

The fits are :mod:`probe.analyses.solvers` in numpy (float64, the default :data:`DEFAULT_SOLVER`): the probes' L2
fits by L-BFGS to ``PROBE_TOL``, DFR's L1 fits by proximal Newton on working sets (the retrains as 0/1 sample
weights sharing one curvature matrix per class) to ``DFR_TOL``; ``solver="sklearn"`` and ``solver="torch"`` fit the
same objectives. They run inside :func:`one_blas_thread`, which limits numpy's BLAS.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from probe.analyses.base import AnalysisContext, EpochMetrics, Metric, Option, register_epoch_analysis
from probe.analyses.features import BATCH_SIZE, EpochFeatures
from probe.analyses.groups import DEFAULT_MIN_GROUP_SIZE, MIN_GROUP_SIZE, WorstGroup, worst_group
from probe.analyses.solvers import l1_logistic, l1_logistic_np, l2_logistic_np, multinomial_l2
from probe.errors import ProbeInputError

#: C grid of the DFR reference implementation.
DFR_C_GRID = (1.0, 0.7, 0.3, 0.1, 0.07, 0.03, 0.01)
#: Tolerance of the probes' L2 fits: the largest gradient entry of objective / (C * n) (:func:`multinomial_l2`).
PROBE_TOL = 1e-6
#: the fits' solvers: ``numpy`` (:func:`~probe.analyses.solvers.l2_logistic_np`,
#: :func:`~probe.analyses.solvers.l1_logistic_np`; the default, no scikit-learn import), ``sklearn`` (lbfgs for the
#: probes, one liblinear fit per C, class and retrain for DFR) or ``torch`` (the same objectives batched, for
#: accelerators). Timings side by side: ``benchmarks/bench_solvers.py`` (docs/benchmarks.md).
SOLVERS = ("numpy", "sklearn", "torch")
DEFAULT_SOLVER = "numpy"
#: Tolerance of DFR's L1 fits: the relative duality gap (:func:`l1_logistic`).
DFR_TOL = 1e-5


def one_blas_thread() -> threadpool_limits:
    """A context in which BLAS (OpenBLAS, MKL) uses one thread. The probe and DFR solvers (lbfgs, liblinear) make
    many small matrix products; on 2 CPU cores a 2-thread OpenBLAS made a 10-class probe on 1100 x 256 features 10x
    slower, and even 5000 x 2048 fits 1.5-2x slower (``benchmarks/bench_probe_threads.py`` prints the ratios)."""
    return threadpool_limits(limits=1, user_api="blas")


def _as_labels(values, n: int | None, name: str) -> np.ndarray:
    arr = np.asarray(values).reshape(-1)
    if n is not None and len(arr) != n:
        raise ProbeInputError(f"{name} has {len(arr)} entries, expected {n}")
    if arr.dtype.kind not in "iub":
        raise ProbeInputError(f"{name} must hold integer labels, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _as_features(features, name: str = "features") -> np.ndarray:
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ProbeInputError(f"{name} must have shape (n, F), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ProbeInputError(f"{name} contain non-finite values")
    return x


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, scale)`` of the columns of ``x``, as scikit-learn's ``StandardScaler``: the standard deviation
    (ddof 0), 1 for a constant column."""
    mean = x.mean(0)
    scale = x.std(0)
    return mean, np.where(scale > 10 * np.finfo(np.float64).eps * np.maximum(np.abs(mean), 1.0), scale, 1.0)


def balanced_accuracy(target: np.ndarray, predicted: np.ndarray) -> float:
    """Mean over the values present in ``target`` of the recall of that value (scikit-learn's
    ``balanced_accuracy_score``)."""
    values, index = np.unique(target, return_inverse=True)
    hits = np.bincount(index, weights=(predicted == target).astype(np.float64), minlength=len(values))
    return float(np.mean(hits / np.bincount(index, minlength=len(values))))


def _group_ids(y: np.ndarray, a: np.ndarray) -> np.ndarray:
    """One id per distinct ``(y, a)`` pair present."""
    return np.unique(np.stack([y, a], axis=1), axis=0, return_inverse=True)[1].reshape(-1)


def balanced_probe_split(y, a, seed: int = 0, *, min_group_size: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint, group-balanced fit and score index sets.

    Groups are the ``(y, a)`` pairs present. Groups with fewer than ``min_group_size`` (>= 2) samples are left out
    (they cannot appear on both sides). With ``m`` the size of the smallest remaining group, each group contributes
    ``m // 2`` randomly drawn samples to the fit set and ``m // 2`` other samples to the score set, so both sets hold
    every kept group exactly equally often.

    Returns:
        ``(fit_idx, score_idx)``: sorted int64 positions into ``y``.
    """
    y = _as_labels(y, None, "y")
    a = _as_labels(a, len(y), "a")
    if min_group_size < 2:
        raise ProbeInputError(f"min_group_size must be >= 2, got {min_group_size}")
    groups = _group_ids(y, a)
    counts = np.bincount(groups)
    kept = np.flatnonzero(counts >= min_group_size)
    if len(kept) == 0:
        raise ProbeInputError(f"no (y, a) group has {min_group_size} or more samples; cannot split for a probe")
    per_side = int(counts[kept].min()) // 2
    rng = np.random.default_rng(seed)
    fit, score = [], []
    for g in kept:
        members = rng.permutation(np.flatnonzero(groups == g))
        fit.append(members[:per_side])
        score.append(members[per_side : 2 * per_side])
    return np.sort(np.concatenate(fit)), np.sort(np.concatenate(score))


def linear_probe(features, target, fit_idx, score_idx, *, C: float = 1.0, max_iter: int = 2000,
                 solver: str | None = None) -> float:
    """Balanced accuracy on ``score_idx`` of a standardised L2 logistic regression fit on ``fit_idx``: scikit-learn's
    ``StandardScaler + LogisticRegression(C)`` (multinomial, lbfgs), the same objective solved in numpy
    (``solver="numpy"``, :func:`probe.analyses.solvers.l2_logistic_np`) or in torch (``solver="torch"``,
    :func:`probe.analyses.solvers.multinomial_l2`), both to ``PROBE_TOL`` (at most ``max_iter`` iterations);
    ``solver`` None: :data:`DEFAULT_SOLVER` (numpy).

    Balanced accuracy = mean over the target values present in the score set of the recall of that value
    (``sklearn.metrics.balanced_accuracy_score``); chance is ``1 / #values``.
    """
    x = _as_features(features)
    t = _as_labels(target, len(x), "target")
    fit_idx, score_idx = np.asarray(fit_idx, dtype=np.int64), np.asarray(score_idx, dtype=np.int64)
    if len(np.intersect1d(fit_idx, score_idx)) > 0:
        raise ProbeInputError("fit and score sets of a probe must be disjoint")
    if len(np.unique(t[fit_idx])) < 2:
        raise ProbeInputError("the probe's fit set holds a single target value; nothing to decode")
    if len(score_idx) == 0:
        raise ProbeInputError("the probe's score set is empty")
    if not C > 0:
        raise ProbeInputError(f"C must be > 0, got {C}")
    solver = _solver(solver)
    if solver == "sklearn":
        from sklearn.exceptions import ConvergenceWarning  # scikit-learn loads only for this solver
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
        with warnings.catch_warnings(), one_blas_thread():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x[fit_idx], t[fit_idx])
            predicted = model.predict(x[score_idx])
        return balanced_accuracy(t[score_idx], predicted)
    mean, scale = _standardise(x[fit_idx])
    x_fit, x_score = (x[fit_idx] - mean) / scale, (x[score_idx] - mean) / scale
    values, fit_labels = np.unique(t[fit_idx], return_inverse=True)
    with one_blas_thread():
        if solver == "numpy":
            fit = l2_logistic_np(x_fit, fit_labels, C, tol=PROBE_TOL, max_iter=max_iter)
            scores = x_score @ fit.coef.T + fit.intercept
        else:
            fit = multinomial_l2(torch.from_numpy(x_fit), torch.from_numpy(fit_labels), C, tol=PROBE_TOL,
                                 max_iter=max_iter)
            scores = (torch.from_numpy(x_score) @ fit.coef.T + fit.intercept).numpy()
    index = (scores[:, 0] > 0).astype(np.int64) if len(values) == 2 else scores.argmax(1)
    return balanced_accuracy(t[score_idx], values[index])


def probe_core(features, y, a, seed: int = 0) -> float:
    """``probe_core``: balanced accuracy of a linear probe predicting ``y`` (split by :func:`balanced_probe_split`)."""
    fit_idx, score_idx = balanced_probe_split(y, a, seed)
    return linear_probe(features, y, fit_idx, score_idx)


def probe_spurious(features, y, a, seed: int = 0) -> float:
    """``probe_spurious``: balanced accuracy of a linear probe predicting ``a`` (same split as :func:`probe_core`)."""
    fit_idx, score_idx = balanced_probe_split(y, a, seed)
    return linear_probe(features, a, fit_idx, score_idx)


# -- deep feature reweighting -------------------------------------------------------------------------------------


@dataclass
class DFRLastLayer:
    """A retrained last layer: ``scores = ((x - mean_) / scale_) @ coef_.T + intercept_``.

    ``classes_`` holds the labels; with two classes ``coef_`` has one row and the prediction is ``classes_[1]``
    where the score is positive; otherwise one row per class (one-vs-rest) and the prediction is the argmax.
    """

    C: float
    classes_: np.ndarray
    mean_: np.ndarray
    scale_: np.ndarray
    coef_: np.ndarray
    intercept_: np.ndarray

    def predict(self, features) -> np.ndarray:
        x = (_as_features(features) - self.mean_) / self.scale_
        scores = x @ self.coef_.T + self.intercept_
        if len(self.classes_) == 2:
            return self.classes_[(scores[:, 0] > 0).astype(np.int64)]
        return self.classes_[np.argmax(scores, axis=1)]


def _l1_targets(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """``(..., R, n)`` booleans: ``y == classes[1]`` for two classes, else one row per class (one-vs-rest)."""
    targets = y[..., None, :] == (classes[1:2] if len(classes) == 2 else classes)[:, None]
    if targets.all(-1).any() or not targets.any(-1).all():
        raise ProbeInputError("a DFR fit set lacks a class; the held-out split is too small for DFR")
    return targets


def _solver(solver: str | None) -> str:
    solver = DEFAULT_SOLVER if solver is None else solver
    if solver not in SOLVERS:
        raise ProbeInputError(f"unknown solver {solver!r}; known: {', '.join(SOLVERS)}")
    return solver


def _fit_l1_batch(x: np.ndarray, y: np.ndarray, classes: np.ndarray, Cs: Sequence[float],
                  init: tuple[np.ndarray, np.ndarray] | None = None, solver: str | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """L1 logistic regressions (liblinear's objective) for every C in ``Cs`` and every one-vs-rest target: one
    liblinear fit each (``solver="sklearn"``), or one batched solve of :func:`probe.analyses.solvers.l1_logistic` to
    ``DFR_TOL`` (``"torch"``, started from ``init``).

    ``x``: ``(n, F)`` with ``y`` ``(n,)``, or ``(G, n, F)`` with ``y`` ``(G, n)`` (G fit sets of equal size).
    Returns ``coef`` ``(G?, len(Cs), R, F)`` and ``intercept`` ``(G?, len(Cs), R)`` (no G axis for 2-d ``x``)."""
    solver = _solver(solver)
    if solver == "sklearn":
        return _fit_l1_liblinear(x, y, classes, Cs)
    if solver == "numpy" and x.ndim == 2:
        targets = _l1_targets(y, classes)  # (R, n)
        with one_blas_thread():
            start = None if init is None else (np.tile(init[0], (len(Cs), 1)), np.tile(init[1], len(Cs)))
            fit = l1_logistic_np(x, np.tile(targets, (len(Cs), 1)),
                                 np.repeat(np.asarray(Cs, dtype=np.float64), len(targets)), tol=DFR_TOL, init=start)
        return fit.coef.reshape(len(Cs), len(targets), -1), fit.intercept.reshape(len(Cs), len(targets))
    if solver == "numpy":
        parts = [_fit_l1_batch(x[g], y[g], classes, Cs, solver="numpy") for g in range(len(x))]
        return np.stack([p[0] for p in parts]), np.stack([p[1] for p in parts])
    targets = _l1_targets(y, classes)  # (G?, R, n)
    batch = targets.shape[:-2] + (len(Cs),) + targets.shape[-2:]
    targets = np.broadcast_to(targets[..., None, :, :], batch)
    C = np.broadcast_to(np.asarray(Cs, dtype=np.float64)[:, None], batch[-3:-1])
    flat = (-1,) + targets.shape[-1:] if x.ndim == 2 else (x.shape[0], -1, targets.shape[-1])
    with one_blas_thread():
        fit = l1_logistic(torch.from_numpy(x), torch.tensor(targets.reshape(flat)),
                          torch.tensor(C.reshape(-1)), tol=DFR_TOL,
                          init=None if init is None else tuple(torch.from_numpy(np.asarray(v)) for v in init))
    return fit.coef.reshape(batch[:-1] + x.shape[-1:]).numpy(), fit.intercept.reshape(batch[:-1]).numpy()


def _fit_l1_liblinear(x: np.ndarray, y: np.ndarray, classes: np.ndarray, Cs: Sequence[float]
                      ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_fit_l1_batch` with one liblinear fit per fit set, C and one-vs-rest target."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    if x.ndim == 3:
        parts = [_fit_l1_liblinear(x[g], y[g], classes, Cs) for g in range(len(x))]
        return np.stack([p[0] for p in parts]), np.stack([p[1] for p in parts])
    targets = _l1_targets(y, classes)  # (R, n)
    coef = np.zeros((len(Cs), len(targets), x.shape[1]))
    intercept = np.zeros((len(Cs), len(targets)))
    with warnings.catch_warnings(), one_blas_thread():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for i, C in enumerate(Cs):
            for r, t in enumerate(targets):
                clf = LogisticRegression(l1_ratio=1.0, C=float(C), solver="liblinear", tol=DFR_TOL,
                                         max_iter=1000).fit(x, np.asarray(t, dtype=np.int64))
                coef[i, r], intercept[i, r] = clf.coef_[0], clf.intercept_[0]
    return coef, intercept


def _fit_l1(x: np.ndarray, y: np.ndarray, classes: np.ndarray, C: float, seed: int = 0,
            solver: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """L1 logistic regression with liblinear's objective (penalised intercept); one-vs-rest over ``classes`` when
    there are more than two. ``seed`` is kept for the signature: both solvers are deterministic."""
    coef, intercept = _fit_l1_batch(x, y, classes, [C], solver=solver)
    return coef[0], intercept[0]


def _balanced_subsample(groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """As many samples from every non-empty group as the smallest non-empty group has."""
    present = np.unique(groups)
    m = min(int((groups == g).sum()) for g in present)
    return np.concatenate([rng.permutation(np.flatnonzero(groups == g))[:m] for g in present])


def worst_group_of(pred, y, groups, min_group_size: int = 1) -> WorstGroup:
    """:func:`probe.analyses.groups.worst_group` of predictions: the minimum of the accuracy within a group over the
    groups (non-negative integer ids) with at least ``min_group_size`` samples (default 1: every non-empty group)."""
    pred, y = np.asarray(pred).reshape(-1), np.asarray(y).reshape(-1)
    groups = _as_labels(groups, len(y), "groups")
    if len(pred) != len(y):
        raise ProbeInputError(f"pred has {len(pred)} entries, expected {len(y)}")
    if (groups < 0).any():
        raise ProbeInputError("group ids must be non-negative")
    counts = np.bincount(groups)
    hits = np.bincount(groups, weights=(pred == y).astype(np.float64), minlength=len(counts))
    acc = np.divide(hits, counts, out=np.full(len(counts), np.nan), where=counts > 0)
    return worst_group(acc, counts, min_group_size)


def worst_group_accuracy(pred, y, groups, min_group_size: int = 1) -> float:
    """Minimum over the groups with at least ``min_group_size`` samples (default 1: every non-empty group) of the
    accuracy within the group; NaN when no group has that many (:func:`worst_group_of`)."""
    return worst_group_of(pred, y, groups, min_group_size).wga


def dfr_last_layer(
    features,
    y,
    groups,
    *,
    c_grid: Sequence[float] = DFR_C_GRID,
    num_retrains: int = 20,
    tune_retrains: int = 1,
    seed: int = 0,
    solver: str | None = None,
) -> DFRLastLayer:
    """Retrain the last layer on held-out ``features`` per the DFR protocol (see the module docstring).

    Args:
        features: ``(n, F)`` held-out features (the validation split).
        y: ``(n,)`` labels. groups: ``(n,)`` group ids (``y * A + a``).
        c_grid: inverse L1 strengths tried (default the reference grid 1 ... 0.01).
        num_retrains: group-balanced resamples whose weights are averaged (default 20).
        tune_retrains: random halvings whose worst-group accuracies are summed per C when tuning (default 1).
        seed: seed of every draw.
        solver: ``numpy``, ``sklearn`` (liblinear) or ``torch`` (batched); None: :data:`DEFAULT_SOLVER`.
    """
    x = _as_features(features)
    y = _as_labels(y, len(x), "y")
    groups = _as_labels(groups, len(x), "groups")
    solver = _solver(solver)
    if num_retrains < 1 or tune_retrains < 1:
        raise ProbeInputError("num_retrains and tune_retrains must be >= 1")
    if not c_grid:
        raise ProbeInputError("c_grid is empty")
    classes = np.unique(y)
    if len(classes) < 2:
        raise ProbeInputError("DFR needs at least two classes in the held-out split")
    rng = np.random.default_rng(seed)

    # choose C: fit on a balanced subsample of one half, worst-group accuracy on the other half (every C at once)
    totals = np.zeros(len(c_grid))
    for _ in range(tune_retrains):
        order = rng.permutation(len(x))
        score_half, fit_half = order[: len(x) // 2], order[len(x) // 2 :]
        fit_half = fit_half[_balanced_subsample(groups[fit_half], rng)]
        tune_mean, tune_scale = _standardise(x[fit_half])
        x_fit, x_score = (x[fit_half] - tune_mean) / tune_scale, (x[score_half] - tune_mean) / tune_scale
        coefs, intercepts = _fit_l1_batch(x_fit, y[fit_half], classes, c_grid, solver=solver)
        for i, C in enumerate(c_grid):
            layer = DFRLastLayer(C, classes, np.zeros(x.shape[1]), np.ones(x.shape[1]), coefs[i], intercepts[i])
            totals[i] += worst_group_accuracy(layer.predict(x_score), y[score_half], groups[score_half])
    best = int(np.argmax(totals))
    best_c = float(c_grid[best])

    # final layer: standardise with the whole held-out split, average weights over balanced resamples (all at once,
    # started from the tuning fit at the chosen C); the resamples all have the same size
    mean, scale = _standardise(x)
    xs = (x - mean) / scale
    draws = np.stack([_balanced_subsample(groups, rng) for _ in range(num_retrains)])
    # the tuning fit in these coordinates: w.(x - m1)/s1 = (w s2/s1).(x - m2)/s2 + w.(m2 - m1)/s1
    init = (coefs[best] * scale / tune_scale, intercepts[best] + (coefs[best] / tune_scale) @ (mean - tune_mean))
    if solver == "numpy":
        coefs, intercepts = _fit_l1_resamples(xs, y, classes, best_c, draws, init)
    else:
        coefs, intercepts = _fit_l1_batch(xs[draws], y[draws], classes, [best_c], init=init, solver=solver)
        coefs, intercepts = coefs[:, 0], intercepts[:, 0]
    return DFRLastLayer(best_c, classes, mean, scale, coefs.mean(0), intercepts.mean(0))


def _fit_l1_resamples(xs: np.ndarray, y: np.ndarray, classes: np.ndarray, C: float, draws: np.ndarray,
                      init: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The L1 fits of every resample ``draws[g]`` (rows of ``xs``) and target at ``C`` by
    :func:`probe.analyses.solvers.l1_logistic_np` over the shared ``xs`` (a resample is a 0/1 sample weight): first
    the targets on the mean weights of the resamples (from ``init``), then every resample from there with one
    curvature matrix per target (the resamples of a target are nearly the same problem; a resample it serves slowly
    gets its own, :data:`probe.analyses.solvers.SHARED_CURVATURE_RATE`). Each fit stops at its own
    relative duality gap ``DFR_TOL``. Returns ``coef`` ``(G, R, F)``, ``intercept`` ``(G, R)``."""
    targets = _l1_targets(y, classes)  # (R, n)
    rows = len(targets)
    masks = np.zeros((len(draws), len(xs)))
    masks[np.arange(len(draws))[:, None], draws] = 1.0
    _l1_targets(np.where(masks > 0, y, y[draws[:, :1]]), classes)  # every resample holds every class
    with one_blas_thread():
        center = l1_logistic_np(xs, targets, C, sample_weight=masks.mean(0), tol=DFR_TOL, init=init)
        fit = l1_logistic_np(xs, np.tile(targets, (len(draws), 1)), C, sample_weight=np.repeat(masks, rows, axis=0),
                             curvature_groups=np.tile(np.arange(rows), len(draws)), tol=DFR_TOL,
                             init=(np.tile(center.coef, (len(draws), 1)), np.tile(center.intercept, len(draws))))
    return fit.coef.reshape(len(draws), rows, -1), fit.intercept.reshape(len(draws), rows)


def dfr_worst_group(
    val_features,
    val_y,
    val_groups,
    test_features,
    test_y,
    test_groups,
    *,
    c_grid: Sequence[float] = DFR_C_GRID,
    num_retrains: int = 20,
    seed: int = 0,
    min_group_size: int = DEFAULT_MIN_GROUP_SIZE,
) -> WorstGroup:
    """The test groups' worst accuracy (with the groups used and left out) of the last layer :func:`dfr_last_layer`
    retrains on the held-out (validation) features; groups with fewer than ``min_group_size`` test samples (default
    20) are left out (``wga`` NaN when none remains). C is tuned on every non-empty group of the tuning half."""
    layer = dfr_last_layer(val_features, val_y, val_groups, c_grid=c_grid, num_retrains=num_retrains, seed=seed)
    test_x = _as_features(test_features, "test_features")
    test_y = _as_labels(test_y, len(test_x), "test_y")
    test_groups = _as_labels(test_groups, len(test_x), "test_groups")
    return worst_group_of(layer.predict(test_x), test_y, test_groups, min_group_size)


def dfr_wga(
    val_features,
    val_y,
    val_groups,
    test_features,
    test_y,
    test_groups,
    *,
    c_grid: Sequence[float] = DFR_C_GRID,
    num_retrains: int = 20,
    seed: int = 0,
    min_group_size: int = DEFAULT_MIN_GROUP_SIZE,
) -> float:
    """``dfr_wga``: worst-group test accuracy, over the test groups with at least ``min_group_size`` samples
    (default 20; NaN when none has), of the last layer :func:`dfr_last_layer` retrains on the held-out (validation)
    features (:func:`dfr_worst_group`)."""
    return dfr_worst_group(val_features, val_y, val_groups, test_features, test_y, test_groups, c_grid=c_grid,
                           num_retrains=num_retrains, seed=seed, min_group_size=min_group_size).wga


# -- run wrapper ----------------------------------------------------------------------------------------------------


_PROBES = "metrics-representations.md#linear-probes-probe_core-probe_spurious-probe_gap"
_DFR = "metrics-representations.md#deep-feature-reweighting-dfr_wga"


@register_epoch_analysis(
    "probes",
    needs_model=True,
    version=4,
    options=(
        Option("probe_seed", "int", 0, "seed of the group-balanced probe split and of the DFR subsamples"),
        Option("dfr_retrains", "int", 20, "group-balanced subsamples whose DFR last layers are averaged (0: no DFR, "
               "so no dfr_wga; the probes still run)", low=0),
        BATCH_SIZE,
        MIN_GROUP_SIZE,
    ),
    metrics=(
        Metric("probe_core", "balanced accuracy of a linear probe predicting the core label y from standardised "
               "penultimate features (group-balanced held-out fit and score subsets)", _PROBES,
               "probe.analyses.probes:probe_core"),
        Metric("probe_spurious", "balanced accuracy of the same linear probe predicting the spurious attribute a",
               _PROBES, "probe.analyses.probes:probe_spurious"),
        Metric("probe_gap", "probe_core - probe_spurious", _PROBES, "probe.analyses.probes:probes_analysis"),
        Metric("n_probe_eval", "number of samples the linear probes are scored on (the group-balanced score subset)",
               _PROBES, "probe.analyses.probes:balanced_probe_split"),
        Metric("dfr_wga", "worst-group test accuracy after deep feature reweighting (last layer retrained on a "
               "group-balanced held-out split), over test groups with at least min_group_size samples", _DFR,
               "probe.analyses.probes:dfr_wga"),
        Metric("dfr_min_group_n", "test samples in the smallest group dfr_wga is taken over (NaN when none qualifies)",
               _DFR, "probe.analyses.probes:dfr_worst_group"),
        Metric("dfr_groups_excluded", "number of non-empty test groups with fewer than min_group_size samples (left "
               "out of dfr_wga)", _DFR, "probe.analyses.probes:dfr_worst_group"),
    ),
)
def probes_analysis(ctx: AnalysisContext, epoch: int) -> EpochMetrics:
    """``val``: ``probe_core``, ``probe_spurious``, ``probe_gap`` = core - spurious (penultimate features of the
    validation split), ``n_probe_eval``; ``test``: ``dfr_wga``, ``dfr_min_group_n``, ``dfr_groups_excluded`` (last
    layer retrained on validation, scored on test; not with ``dfr_retrains=0``). Options: ``probe_seed``,
    ``dfr_retrains``, ``batch_size``,
    ``min_group_size`` (declared above). A dataset with one attribute value gets no
    ``probe_spurious`` / ``probe_gap``. A dataset without a validation split gets the probes on disjoint halves of
    the test split (reported under ``test``) and no ``dfr_wga``, which needs held-out data apart from the test set."""
    seed = ctx.option("probe_seed")
    feats = EpochFeatures(ctx, epoch)
    held_out = "val" if "val" in ctx.dataset.splits else "test"
    split = ctx.dataset.split(held_out)
    y, a = split.y.cpu().numpy(), split.a.cpu().numpy()
    fit_idx, score_idx = balanced_probe_split(y, a, seed)
    scores = {"probe_core": linear_probe(feats[held_out], y, fit_idx, score_idx), "n_probe_eval": float(len(score_idx))}
    if ctx.dataset.num_attrs > 1:
        scores["probe_spurious"] = linear_probe(feats[held_out], a, fit_idx, score_idx)
        scores["probe_gap"] = scores["probe_core"] - scores["probe_spurious"]
    out: EpochMetrics = {held_out: scores}
    if held_out == "val" and ctx.option("dfr_retrains") > 0:
        test = ctx.dataset.split("test")
        worst = dfr_worst_group(
            feats["val"], y, split.group.cpu().numpy(),
            feats["test"], test.y.cpu().numpy(), test.group.cpu().numpy(),
            num_retrains=ctx.option("dfr_retrains"), seed=seed, min_group_size=ctx.option(MIN_GROUP_SIZE),
        )
        out["test"] = {"dfr_wga": worst.wga, "dfr_min_group_n": worst.min_group_n,
                       "dfr_groups_excluded": float(len(worst.excluded))}
    return out
