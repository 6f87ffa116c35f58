"""Geometry of a representation: class separation and unit selectivity.

Both are computed on ``|features|`` (identical to the features for post-ReLU penultimate layers).

``class_separation`` (Kornblith, Chen, Lee, Norouzi, "Why Do Better Loss Functions Lead to Less Transferable
Features?", NeurIPS 2021). With cosine distance ``d(u, v) = 1 - u.v / (|u| |v|)`` and classes ``1..K`` of sizes
``N_k``::

    d_within = 1/K   sum_k        1/(N_k^2)    sum_{m in k} sum_{n in k} d(x_m, x_n)
    d_total  = 1/K^2 sum_j sum_k  1/(N_j N_k)  sum_{m in j} sum_{n in k} d(x_m, x_n)
    class_separation = 1 - d_within / d_total

"Over all class pairs" means every ordered pair of classes ``(j, k)``, ``j = k`` included, each weighted equally
(so class sizes do not weight the average); pairs of a sample with itself (distance 0) are included, as in the
reference. Samples whose feature vector is all zero have no direction and are left out. Computed exactly in
``O(n F)`` through class means of unit vectors ``c_k``: the mean cosine between classes ``j`` and ``k`` is
``c_j . c_k``, so ``d_within = 1 - mean_k |c_k|^2`` and ``d_total = 1 - |mean_k c_k|^2``.

``selectivity`` (Morcos, Barrett, Rabinowitz, Botvinick, "On the importance of single directions for
generalization", ICLR 2018): per unit, with ``mu_k`` its mean activation over the samples of class ``k``,
``mu_max = max_k mu_k`` and ``mu_rest`` the mean of the other ``K - 1`` class means,
``(mu_max - mu_rest) / (mu_max + mu_rest)`` in [0, 1]. A unit is *active* when it is non-zero on at least one sample
(equivalently ``mu_max > 0``); inactive units have no defined selectivity and are left out of the average.

``n_features`` counts the samples whose features enter ``class_separation``: the test samples with a non-zero
feature vector (:func:`separation_sample_count`). Selectivity averages over every test sample, zero vectors included.
"""

from __future__ import annotations

import numpy as np

from probe.analyses.base import AnalysisContext, EpochMetrics, Metric, register_epoch_analysis
from probe.analyses.features import BATCH_SIZE, EpochFeatures
from probe.errors import ProbeInputError


def _prepare(features, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.abs(np.asarray(features, dtype=np.float64))
    if x.ndim != 2:
        raise ProbeInputError(f"features must have shape (n, F), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ProbeInputError("features contain non-finite values")
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != len(x):
        raise ProbeInputError(f"labels have {len(labels)} entries, features {len(x)} rows")
    classes, inverse = np.unique(labels, return_inverse=True)
    if len(classes) < 2:
        raise ProbeInputError("separation and selectivity need at least two distinct labels")
    return x, classes, inverse.reshape(-1)


def _class_means(x: np.ndarray, inverse: np.ndarray, k: int) -> np.ndarray:
    """``(k, F)`` mean row of ``x`` within each class id ``0..k-1``. Rows are grouped by class once (a stable sort,
    so each class keeps its sample order) and each class's rows summed as one contiguous block, in sample order."""
    counts = np.bincount(inverse, minlength=k)
    grouped = x[np.argsort(inverse, kind="stable")]
    sums = np.zeros((k, x.shape[1]))
    start = 0
    for c, count in enumerate(counts):
        sums[c] = grouped[start : start + count].sum(axis=0)
        start += count
    return sums / counts[:, None]


def class_separation(features, labels) -> float:
    """``1 - d_within / d_total`` on ``|features|`` (see the module docstring); ``nan`` when ``d_total`` is 0
    (all directions equal) or fewer than two classes keep a non-zero sample."""
    x, _, inverse = _prepare(features, labels)
    norms = np.linalg.norm(x, axis=1)
    nonzero = norms > 0
    u = x[nonzero] / norms[nonzero, None]
    present, inverse = np.unique(inverse[nonzero], return_inverse=True)
    if len(present) < 2:
        return float("nan")
    centroids = _class_means(u, inverse.reshape(-1), len(present))
    d_within = 1.0 - float(np.mean(np.sum(centroids**2, axis=1)))
    d_total = 1.0 - float(np.sum(centroids.mean(axis=0) ** 2))
    if d_total <= 1e-12:
        return float("nan")
    return 1.0 - d_within / d_total


def separation_sample_count(features) -> int:
    """``n_features``: the number of samples whose feature vector is not all zero, the samples
    :func:`class_separation` is computed on."""
    x = np.asarray(features)
    if x.ndim != 2:
        raise ProbeInputError(f"features must have shape (n, F), got shape {x.shape}")
    return int(np.count_nonzero(np.any(x != 0, axis=1)))


def attr_separation(features, a) -> float:
    """``attr_separation``: :func:`class_separation` with samples grouped by the spurious attribute ``a``."""
    return class_separation(features, a)


def unit_selectivity(features, labels) -> np.ndarray:
    """``(F,)`` selectivity ``(mu_max - mu_rest) / (mu_max + mu_rest)`` of each unit on ``|features|``; ``nan`` for
    inactive units (zero on every sample)."""
    x, classes, inverse = _prepare(features, labels)
    means = _class_means(x, inverse, len(classes))  # (K, F)
    mu_max = means.max(axis=0)
    mu_rest = (means.sum(axis=0) - mu_max) / (len(classes) - 1)
    active = mu_max > 0
    out = np.full(x.shape[1], np.nan)
    out[active] = (mu_max[active] - mu_rest[active]) / (mu_max[active] + mu_rest[active])
    return out


def selectivity(features, labels) -> float:
    """Mean of :func:`unit_selectivity` over active units; ``nan`` when no unit is active."""
    per_unit = unit_selectivity(features, labels)
    active = ~np.isnan(per_unit)
    return float(per_unit[active].mean()) if active.any() else float("nan")


def class_selectivity(features, y) -> float:
    """``class_selectivity``: :func:`selectivity` with classes given by the core label ``y``."""
    return selectivity(features, y)


def attr_selectivity(features, a) -> float:
    """``attr_selectivity``: :func:`selectivity` with classes given by the spurious attribute ``a``."""
    return selectivity(features, a)


_SEPARATION = "metrics-representations.md#class-separation-class_separation-attr_separation"
_SELECTIVITY = "metrics-representations.md#selectivity-class_selectivity-attr_selectivity"


@register_epoch_analysis(
    "geometry",
    needs_model=True,
    version=2,
    options=(BATCH_SIZE,),
    metrics=(
        Metric("class_separation", "1 - mean within-class cosine distance / mean cosine distance over all pairs, on "
               "|penultimate features| grouped by the core label y", _SEPARATION,
               "probe.analyses.geometry:class_separation"),
        Metric("attr_separation", "class_separation with the samples grouped by the spurious attribute a",
               _SEPARATION, "probe.analyses.geometry:attr_separation"),
        Metric("class_selectivity", "per unit (mu_max - mu_rest) / (mu_max + mu_rest) over the classes of y, "
               "averaged over active units", _SELECTIVITY, "probe.analyses.geometry:class_selectivity"),
        Metric("attr_selectivity", "class_selectivity with classes given by the spurious attribute a",
               _SELECTIVITY, "probe.analyses.geometry:attr_selectivity"),
        Metric("n_features", "number of test samples whose penultimate features enter class_separation (those with a "
               "non-zero feature vector)", _SEPARATION, "probe.analyses.geometry:separation_sample_count"),
    ),
)
def geometry_analysis(ctx: AnalysisContext, epoch: int) -> EpochMetrics:
    """``test``: ``class_separation``, ``class_selectivity`` and (when the dataset has more than one attribute
    value) ``attr_separation``, ``attr_selectivity`` on the penultimate features of the test split; ``n_features``."""
    test = ctx.dataset.split("test")
    features = EpochFeatures(ctx, epoch)["test"]
    y = test.y.cpu().numpy()
    out = {"class_separation": class_separation(features, y), "class_selectivity": class_selectivity(features, y),
           "n_features": float(separation_sample_count(features))}
    if ctx.dataset.num_attrs > 1:
        a = test.a.cpu().numpy()
        out["attr_separation"] = attr_separation(features, a)
        out["attr_selectivity"] = attr_selectivity(features, a)
    return {"test": out}
