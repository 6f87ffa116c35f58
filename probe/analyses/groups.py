"""Accuracy overall, per group, and the averages the spurious-correlation literature reports.

Groups are ``g = y * A + a`` for ``y`` in ``0..K-1`` and ``a`` in ``0..A-1``; ``n_g`` is the number of samples of
group ``g`` in the split and ``acc_g`` the accuracy on them (NaN when ``n_g = 0``). With ``G+ = {g : n_g > 0}`` the
non-empty groups and ``G_m = {g : n_g >= m}`` those with at least ``m = min_group_size`` samples (default 20):

- ``acc`` = micro accuracy over all samples;
- ``wga`` = ``min_{g in G_m} acc_g`` (worst-group accuracy), NaN when ``G_m`` is empty: an accuracy on a handful of
  samples moves in steps of ``1 / n_g`` and its minimum over many small groups is 0 by chance, so small groups are
  left out and counted (``wga_groups_used`` = ``|G_m|``, ``wga_groups_excluded`` = ``|G+| - |G_m|``,
  ``wga_min_group_n`` = ``min_{g in G_m} n_g``); :func:`worst_group` is the one place that rule lives;
- ``mean_group_acc`` = ``mean_{g in G+} acc_g`` (unweighted, over every non-empty group, small ones included);
- ``avg_acc_trainweighted`` = ``sum_{g in G+} p_g acc_g / sum_{g in G+} p_g`` with ``p_g`` the training-split group
  proportions (the Waterbirds papers' "average accuracy");
- ``acc_ba`` / ``acc_bc`` = accuracy on the bias-aligned / bias-conflicting samples;
- ``unbiased_acc`` = ``mean_group_acc`` when the dataset has a spurious attribute (A >= 2): the accuracy an
  attribute-independent split with equal group sizes would give. With A == 1 there is no attribute to be unbiased
  about and ``unbiased_acc`` = ``acc``;
- sample counts: ``n`` (samples), ``n_ba`` / ``n_bc`` (bias-aligned / bias-conflicting samples), ``n_group/<g>`` =
  ``n_g`` for every ``g`` in ``0..K*A-1`` (0 for an empty group).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from probe.analyses.base import AnalysisContext, EpochMetrics, Metric, Option, register_epoch_analysis
from probe.analyses.logits import _as_labels, _as_mask, _mean
from probe.errors import ProbeInputError

#: default smallest group size that enters a worst-group accuracy (SPEC: ``wga`` over groups with >= 20 samples).
DEFAULT_MIN_GROUP_SIZE = 20
#: the analysis option ``min_group_size``, declared by every analysis that reports a worst-group accuracy.
MIN_GROUP_SIZE = Option("min_group_size", "int", DEFAULT_MIN_GROUP_SIZE, "groups with fewer samples are left out of "
                        "worst-group accuracies (wga, dfr_wga, prune_wga@s) and counted", low=1)


@dataclass(frozen=True)
class WorstGroup:
    """A worst-group accuracy and the groups it rests on (:func:`worst_group`).

    Attributes:
        wga: ``min`` of the accuracy over the groups used; NaN when no group is used.
        used: ids of the groups with at least ``min_group_size`` samples.
        excluded: ids of the non-empty groups with fewer samples (left out of ``wga``).
        min_group_n: samples in the smallest group used; NaN when no group is used.
    """

    wga: float
    used: tuple[int, ...]
    excluded: tuple[int, ...]
    min_group_n: float


def worst_group(acc_group: Any, counts: Any, min_group_size: int = DEFAULT_MIN_GROUP_SIZE) -> WorstGroup:
    """Worst-group accuracy over the groups with at least ``min_group_size`` samples.

    ``wga = min_{g : n_g >= m} acc_g``; the non-empty groups with ``0 < n_g < m`` are listed as excluded.

    Args:
        acc_group: ``(G,)`` accuracy of each group id (any value where ``counts`` is 0).
        counts: ``(G,)`` samples of each group id.
        min_group_size: ``m`` >= 1 (default 20; 1 keeps every non-empty group).

    Example:
        >>> w = worst_group([1.0, 0.0, 0.5], [30, 2, 40])
        >>> w.wga, w.used, w.excluded, w.min_group_n
        (0.5, (0, 2), (1,), 30.0)
    """
    m = int(min_group_size)
    if m < 1:
        raise ProbeInputError(f"min_group_size must be >= 1, got {min_group_size}")
    acc = np.asarray(acc_group, dtype=np.float64).reshape(-1)
    n = np.asarray(counts).reshape(-1)
    if n.shape != acc.shape:
        raise ProbeInputError(f"acc_group has {len(acc)} entries but counts has {len(n)}")
    used = np.flatnonzero(n >= m)
    excluded = np.flatnonzero((n > 0) & (n < m))
    if len(used) == 0:
        return WorstGroup(float("nan"), (), tuple(int(g) for g in excluded), float("nan"))
    return WorstGroup(float(acc[used].min()), tuple(int(g) for g in used), tuple(int(g) for g in excluded),
                      float(n[used].min()))


def group_accuracy_metrics(
    pred: Any,
    y: Any,
    a: Any,
    is_bc: Any,
    num_classes: int,
    num_attrs: int,
    train_group_counts: Any = None,
    *,
    min_group_size: int = DEFAULT_MIN_GROUP_SIZE,
) -> dict[str, float]:
    """Accuracy metrics of one split from predicted labels.

    Args:
        pred: ``(n,)`` predicted labels (argmax of the logits).
        y: ``(n,)`` core labels in ``0..K-1``.
        a: ``(n,)`` spurious attributes in ``0..A-1``.
        is_bc: ``(n,)`` bool, True for bias-conflicting samples.
        num_classes: ``K``.
        num_attrs: ``A``; groups are ``g = y * A + a``.
        train_group_counts: ``(K*A,)`` number of training samples per group, for ``avg_acc_trainweighted``
            (NaN when None). Weights are renormalised over the groups present in this split.
        min_group_size: groups with fewer samples are left out of ``wga`` (default 20; see :func:`worst_group`).

    Returns:
        ``acc``, ``acc_group/<g>`` for every ``g`` in ``0..K*A-1`` (NaN for an empty group), ``wga`` (NaN when no
        group has ``min_group_size`` samples), ``wga_groups_used``, ``wga_groups_excluded``, ``wga_min_group_n``,
        ``mean_group_acc``, ``avg_acc_trainweighted``, ``acc_ba``, ``acc_bc``, ``unbiased_acc``, ``n``, ``n_ba``,
        ``n_bc`` and ``n_group/<g>`` for every ``g`` (see the module doc). Counts are floats, as every metric.

    Example:
        >>> m = group_accuracy_metrics([0, 1, 1, 1], [0, 0, 1, 1], [0, 1, 1, 0], [False, True, False, True], 2, 2,
        ...                            min_group_size=1)
        >>> m["acc"], m["wga"], m["mean_group_acc"], m["wga_groups_used"]
        (0.75, 0.0, 0.75, 4.0)
        >>> m = group_accuracy_metrics([0, 1, 1, 1], [0, 0, 1, 1], [0, 1, 1, 0], [False, True, False, True], 2, 2)
        >>> m["wga"], m["wga_groups_used"], m["wga_groups_excluded"]  # four groups of one sample, none of 20
        (nan, 0.0, 4.0)
    """
    k, n_attrs = int(num_classes), int(num_attrs)
    if k < 1 or n_attrs < 1:
        raise ProbeInputError(f"num_classes and num_attrs must be >= 1, got {num_classes} and {num_attrs}")
    y = _as_labels(y, k, "y")
    n = len(y)
    pred = _as_labels(pred, k, "pred", n)
    a = _as_labels(a, n_attrs, "a", n)
    bc = _as_mask(is_bc, n)
    n_groups = k * n_attrs

    correct = pred == y
    group = y * n_attrs + a
    counts = np.bincount(group, minlength=n_groups)
    hits = np.bincount(group, weights=correct, minlength=n_groups)
    present = counts > 0
    acc_group = np.full(n_groups, np.nan)
    acc_group[present] = hits[present] / counts[present]

    out: dict[str, float] = {"acc": _mean(correct)}
    out.update({f"acc_group/{g}": float(acc_group[g]) for g in range(n_groups)})
    worst = worst_group(acc_group, counts, min_group_size)
    out["wga"] = worst.wga
    out["wga_groups_used"] = float(len(worst.used))
    out["wga_groups_excluded"] = float(len(worst.excluded))
    out["wga_min_group_n"] = worst.min_group_n
    out["mean_group_acc"] = _mean(acc_group[present])
    out["avg_acc_trainweighted"] = _trainweighted(acc_group, present, train_group_counts, n_groups)
    out["acc_ba"] = _mean(correct[~bc])
    out["acc_bc"] = _mean(correct[bc])
    out["unbiased_acc"] = out["mean_group_acc"] if n_attrs > 1 else out["acc"]
    out["n"] = float(n)
    out["n_ba"] = float(np.count_nonzero(~bc))
    out["n_bc"] = float(np.count_nonzero(bc))
    out.update({f"n_group/{g}": float(counts[g]) for g in range(n_groups)})
    return out


def _trainweighted(acc_group: np.ndarray, present: np.ndarray, train_group_counts: Any, n_groups: int) -> float:
    if train_group_counts is None:
        return float("nan")
    w = np.asarray(train_group_counts, dtype=np.float64)
    if w.shape != (n_groups,):
        raise ProbeInputError(f"train_group_counts must have {n_groups} entries (K*A), got shape {w.shape}")
    if not np.all(np.isfinite(w)) or (w < 0).any():
        raise ProbeInputError("train_group_counts must be finite and non-negative")
    w = np.where(present, w, 0.0)
    if w.sum() == 0:
        return float("nan")
    return float(np.sum(w[present] * acc_group[present]) / w.sum())


_DOCS = "metrics-logits.md#accuracy-and-groups--analysis-groups-splits-every-recorded-split"
_CODE = "probe.analyses.groups:group_accuracy_metrics"


@register_epoch_analysis(
    "groups",
    needs_model=False,
    version=2,
    options=(MIN_GROUP_SIZE,),
    metrics=(
        Metric("acc", "micro accuracy: fraction of samples whose argmax logit is the core label y", _DOCS, _CODE),
        Metric("acc_group/<g>", "accuracy within group g = y * A + a (NaN for an empty group)", _DOCS, _CODE),
        Metric("wga", "worst-group accuracy: the minimum of acc_group over the groups with at least min_group_size "
               "samples (NaN when none has)", _DOCS, _CODE),
        Metric("wga_groups_used", "number of groups with at least min_group_size samples (those wga is taken over)",
               _DOCS, _CODE),
        Metric("wga_groups_excluded", "number of non-empty groups with fewer than min_group_size samples (left out "
               "of wga)", _DOCS, _CODE),
        Metric("wga_min_group_n", "samples in the smallest group wga is taken over (NaN when no group qualifies)",
               _DOCS, _CODE),
        Metric("mean_group_acc", "unweighted mean of acc_group over every non-empty group (small ones included)",
               _DOCS, _CODE),
        Metric("avg_acc_trainweighted", "group accuracies weighted by the training split's group proportions (the "
               "Waterbirds papers' 'average accuracy')", _DOCS, _CODE),
        Metric("acc_ba", "accuracy on bias-aligned (BA) samples", _DOCS, _CODE),
        Metric("acc_bc", "accuracy on bias-conflicting (BC) samples", _DOCS, _CODE),
        Metric("unbiased_acc", "accuracy on the unbiased split: mean_group_acc when the dataset has a spurious "
               "attribute, else acc", _DOCS, _CODE),
        Metric("n", "number of samples of the split", _DOCS, _CODE),
        Metric("n_ba", "number of bias-aligned (BA) samples of the split", _DOCS, _CODE),
        Metric("n_bc", "number of bias-conflicting (BC) samples of the split", _DOCS, _CODE),
        Metric("n_group/<g>", "number of samples in group g = y * A + a (0 for an empty group)", _DOCS, _CODE),
    ),
)
def groups_epoch(ctx: AnalysisContext, epoch: int) -> EpochMetrics:
    """:func:`group_accuracy_metrics` for every recorded split (pred = argmax of the stored logits); the training
    weights of ``avg_acc_trainweighted`` come from the same epoch's ``train`` records; option ``min_group_size``."""
    run = ctx.run
    k, n_attrs = run.num_classes, run.num_attrs
    train_counts = None
    if "train" in run.splits:
        train = run.records("train", epoch)
        train_counts = np.bincount(np.asarray(train.y) * n_attrs + np.asarray(train.a), minlength=k * n_attrs)
    out: EpochMetrics = {}
    for split in run.splits:
        rec = run.records(split, epoch)
        pred = np.asarray(rec.pred)
        out[split] = group_accuracy_metrics(pred, rec.y, rec.a, rec.is_bc, k, n_attrs, train_counts,
                                            min_group_size=ctx.option(MIN_GROUP_SIZE))
    return out
