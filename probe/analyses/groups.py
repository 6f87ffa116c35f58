"""Accuracy overall, per group, and the averages the spurious-correlation literature reports.

Groups are ``g = y * A + a`` for ``y`` in ``0..K-1`` and ``a`` in ``0..A-1``; ``acc_g`` is the accuracy on the
samples of group ``g`` (NaN when the split has none). Over the non-empty groups ``G+``:

- ``acc`` = micro accuracy over all samples;
- ``wga`` = ``min_{g in G+} acc_g`` (worst-group accuracy);
- ``mean_group_acc`` = ``mean_{g in G+} acc_g`` (unweighted);
- ``avg_acc_trainweighted`` = ``sum_{g in G+} p_g acc_g / sum_{g in G+} p_g`` with ``p_g`` the training-split group
  proportions (the Waterbirds papers' "average accuracy");
- ``acc_ba`` / ``acc_bc`` = accuracy on the bias-aligned / bias-conflicting samples;
- ``unbiased_acc`` = ``mean_group_acc`` when the dataset has a spurious attribute (A >= 2): the accuracy an
  attribute-independent split with equal group sizes would give. With A == 1 there is no attribute to be unbiased
  about and ``unbiased_acc`` = ``acc``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from probe.analyses.base import AnalysisContext, EpochMetrics, Metric, register_epoch_analysis
from probe.analyses.logits import _as_labels, _as_mask, _mean
from probe.errors import ProbeInputError


def group_accuracy_metrics(
    pred: Any,
    y: Any,
    a: Any,
    is_bc: Any,
    num_classes: int,
    num_attrs: int,
    train_group_counts: Any = None,
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

    Returns:
        ``acc``, ``acc_group/<g>`` for every ``g`` in ``0..K*A-1`` (NaN for an empty group), ``wga``,
        ``mean_group_acc``, ``avg_acc_trainweighted``, ``acc_ba``, ``acc_bc``, ``unbiased_acc`` (see module doc).

    Example:
        >>> m = group_accuracy_metrics([0, 1, 1, 1], [0, 0, 1, 1], [0, 1, 1, 0], [False, True, False, True], 2, 2)
        >>> m["acc"], m["wga"], m["mean_group_acc"]
        (0.75, 0.0, 0.75)
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
    out["wga"] = float(acc_group[present].min()) if present.any() else float("nan")
    out["mean_group_acc"] = _mean(acc_group[present])
    out["avg_acc_trainweighted"] = _trainweighted(acc_group, present, train_group_counts, n_groups)
    out["acc_ba"] = _mean(correct[~bc])
    out["acc_bc"] = _mean(correct[bc])
    out["unbiased_acc"] = out["mean_group_acc"] if n_attrs > 1 else out["acc"]
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
    version=1,
    metrics=(
        Metric("acc", "micro accuracy: fraction of samples whose argmax logit is the core label y", _DOCS, _CODE),
        Metric("acc_group/<g>", "accuracy within group g = y * A + a (NaN for an empty group)", _DOCS, _CODE),
        Metric("wga", "worst-group accuracy: the minimum of acc_group over non-empty groups", _DOCS, _CODE),
        Metric("mean_group_acc", "unweighted mean of acc_group over non-empty groups", _DOCS, _CODE),
        Metric("avg_acc_trainweighted", "group accuracies weighted by the training split's group proportions (the "
               "Waterbirds papers' 'average accuracy')", _DOCS, _CODE),
        Metric("acc_ba", "accuracy on bias-aligned (BA) samples", _DOCS, _CODE),
        Metric("acc_bc", "accuracy on bias-conflicting (BC) samples", _DOCS, _CODE),
        Metric("unbiased_acc", "accuracy on the unbiased split: mean_group_acc when the dataset has a spurious "
               "attribute, else acc", _DOCS, _CODE),
    ),
)
def groups_epoch(ctx: AnalysisContext, epoch: int) -> EpochMetrics:
    """:func:`group_accuracy_metrics` for every recorded split (pred = argmax of the stored logits); the training
    weights of ``avg_acc_trainweighted`` come from the same epoch's ``train`` records."""
    run = ctx.run
    k, n_attrs = run.num_classes, run.num_attrs
    train_counts = None
    if "train" in run.splits:
        train = run.records("train", epoch)
        train_counts = np.bincount(np.asarray(train.y) * n_attrs + np.asarray(train.a), minlength=k * n_attrs)
    out: EpochMetrics = {}
    for split in run.splits:
        rec = run.records(split, epoch)
        pred = np.asarray(rec.logits).argmax(axis=1)
        out[split] = group_accuracy_metrics(pred, rec.y, rec.a, rec.is_bc, k, n_attrs, train_counts)
    return out
