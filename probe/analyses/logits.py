"""Logit dynamics: logit norms, margins, confidence, and parameter norms.

For a logit vector ``z`` (length K) of a sample with core label ``y``:

- ``logit_norm`` = mean over samples of ``||z||_2`` (``logit_norm_ba`` / ``logit_norm_bc``: over BA / BC samples);
- margin ``m = z_y - max_{k != y} z_k`` (positive iff the sample is classified correctly);
- ``max_softmax`` = ``max_k softmax(z)_k``;
- ``param_norm`` = ``sqrt(sum_tensors ||w||_2^2)`` over the model's parameters (BatchNorm running statistics and
  counters excluded), and ``param_norm/<name>`` per tensor.

The registered epoch analysis ``"logits"`` computes :func:`logit_metrics` for every recorded split and
:func:`param_norms` of the epoch's weights under the split ``"model"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from probe.analyses.base import AnalysisContext, EpochMetrics, Metric, register_epoch_analysis
from probe.errors import ProbeInputError
from probe.store.logit_records import LogitSummary

#: state_dict entries that are running statistics, not parameters (``BatchNorm``).
BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


# --- shared input checks (used by the other logit-level modules) -------------------------------------------------


def _as_logits(logits: Any) -> np.ndarray:
    """``logits`` as a float64 ``(n, K)`` array with K >= 2."""
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2:
        raise ProbeInputError(f"logits must be a 2-D array (n, K), got shape {z.shape}")
    if z.shape[1] < 2:
        raise ProbeInputError(f"logits need at least 2 classes, got K={z.shape[1]}")
    return z


def _as_labels(labels: Any, num: int, name: str, n: int | None = None) -> np.ndarray:
    """``labels`` as an int64 ``(n,)`` array with values in ``0..num-1``."""
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ProbeInputError(f"{name} must be a 1-D array, got shape {arr.shape}")
    if n is not None and len(arr) != n:
        raise ProbeInputError(f"{name} has {len(arr)} entries, expected {n}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise ProbeInputError(f"{name} must hold integer labels")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= num):
        raise ProbeInputError(f"{name} must lie in 0..{num - 1}, got values in {arr.min()}..{arr.max()}")
    return arr


def _as_mask(mask: Any, n: int, name: str = "is_bc") -> np.ndarray:
    """``mask`` as a bool ``(n,)`` array."""
    arr = np.asarray(mask)
    if arr.ndim != 1 or len(arr) != n:
        raise ProbeInputError(f"{name} must be a 1-D array of {n} entries, got shape {arr.shape}")
    if arr.dtype != np.bool_:
        if arr.size and not np.all(np.isin(arr, (0, 1))):
            raise ProbeInputError(f"{name} must be boolean (or 0/1)")
        arr = arr.astype(bool)
    return arr


def _mean(values: np.ndarray) -> float:
    """Mean, NaN (without a warning) for an empty array."""
    return float(values.mean()) if values.size else float("nan")


# --- pure functions ----------------------------------------------------------------------------------------------


def margins(logits: Any, y: Any) -> np.ndarray:
    """Per-sample margin ``m_i = z_{i,y_i} - max_{k != y_i} z_{i,k}`` (float64, shape ``(n,)``).

    Positive for a correctly classified sample, negative for a mispredicted one (``-m`` is the gap
    ``d = max_k z_k - z_y``), zero on a tie. ``logits``: an ``(n, K)`` array or a top-k
    :class:`~probe.store.logit_records.LogitSummary` (as every function of this module takes).

    Example:
        >>> margins([[2.0, 0.5, 1.0], [0.0, 3.0, 1.0]], [0, 2]).tolist()
        [1.0, -2.0]
    """
    if isinstance(logits, LogitSummary):
        return logits.margins(_as_labels(y, logits.num_classes, "y", len(logits)))
    z = _as_logits(logits)
    n = len(z)
    y = _as_labels(y, z.shape[1], "y", n)
    rows = np.arange(n)
    z_y = z[rows, y]
    other = z.copy()
    other[rows, y] = -np.inf
    return z_y - other.max(axis=1)


def max_softmax(logits: Any) -> np.ndarray:
    """Per-sample ``max_k softmax(z)_k = 1 / sum_k exp(z_k - max_j z_j)`` (stable, float64); from a summary
    ``exp(max_k z_k - logsumexp(z))``."""
    if isinstance(logits, LogitSummary):
        return logits.max_softmax()
    z = _as_logits(logits)
    return 1.0 / np.exp(z - z.max(axis=1, keepdims=True)).sum(axis=1)


def logit_metrics(logits: Any, y: Any, is_bc: Any) -> dict[str, float]:
    """Logit norms, margins and confidence of one split.

    Args:
        logits: ``(n, K)`` logits.
        y: ``(n,)`` core labels.
        is_bc: ``(n,)`` bool, True for bias-conflicting samples.

    Returns:
        ``logit_norm``, ``logit_norm_ba``, ``logit_norm_bc``: mean ``||z||_2`` over all / BA / BC samples;
        ``margin_mean``, ``margin_median``: of ``m = z_y - max_{k != y} z_k``; ``margin_min_ba``: smallest BA
        margin; ``max_softmax_mean``: mean of ``max_k softmax(z)_k``. A statistic over an empty set is NaN.
    """
    if isinstance(logits, LogitSummary):
        z, n, norms = logits, len(logits), logits.norms()
    else:
        z = _as_logits(logits)
        n, norms = len(z), np.linalg.norm(z, axis=1)
    bc = _as_mask(is_bc, n)
    m = margins(z, y)
    return {
        "logit_norm": _mean(norms),
        "logit_norm_ba": _mean(norms[~bc]),
        "logit_norm_bc": _mean(norms[bc]),
        "margin_mean": _mean(m),
        "margin_median": float(np.median(m)) if n else float("nan"),
        "margin_min_ba": float(m[~bc].min()) if (~bc).any() else float("nan"),
        "max_softmax_mean": _mean(max_softmax(z)) if n else float("nan"),
    }


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # torch.Tensor
        value = value.detach().cpu()
        if value.is_floating_point():
            value = value.double()
        return value.numpy()
    return np.asarray(value)


def param_norms(state_dict: Mapping[str, Any]) -> dict[str, float]:
    """L2 norms of a model's parameters.

    ``param_norm = sqrt(sum_t ||w_t||_2^2)`` over every floating-point tensor ``t`` of ``state_dict`` except
    BatchNorm running statistics (names ending in ``running_mean``, ``running_var``, ``num_batches_tracked``);
    ``param_norm/<name>`` = ``||w_t||_2`` for each of those tensors.

    Args:
        state_dict: tensor name -> ``torch.Tensor`` or numpy array.
    """
    if not isinstance(state_dict, Mapping):
        raise ProbeInputError(f"state_dict must be a mapping of name -> tensor, got {type(state_dict).__name__}")
    out: dict[str, float] = {}
    total_sq = 0.0
    for name, value in state_dict.items():
        if str(name).rsplit(".", 1)[-1] in BUFFER_SUFFIXES:
            continue
        arr = _to_numpy(value)
        if not np.issubdtype(arr.dtype, np.floating):
            continue
        sq = float(np.sum(np.square(arr, dtype=np.float64)))
        total_sq += sq
        out[f"param_norm/{name}"] = float(np.sqrt(sq))
    return {"param_norm": float(np.sqrt(total_sq)), **out}


# --- run wrapper -------------------------------------------------------------------------------------------------


_DOCS = "metrics-logits.md#logit-dynamics--analysis-logits-every-recorded-split-plus-model"


@register_epoch_analysis(
    "logits",
    needs_model=False,
    version=1,
    metrics=(
        Metric("logit_norm", "mean over samples of the Euclidean norm ||z||_2 of the logit vector", _DOCS,
               "probe.analyses.logits:logit_metrics"),
        Metric("logit_norm_ba", "logit_norm over bias-aligned (BA) samples", _DOCS,
               "probe.analyses.logits:logit_metrics"),
        Metric("logit_norm_bc", "logit_norm over bias-conflicting (BC) samples", _DOCS,
               "probe.analyses.logits:logit_metrics"),
        Metric("margin_mean", "mean margin z_y - max_{k != y} z_k (positive iff correct)", _DOCS,
               "probe.analyses.logits:margins"),
        Metric("margin_median", "median margin z_y - max_{k != y} z_k", _DOCS, "probe.analyses.logits:margins"),
        Metric("margin_min_ba", "smallest margin over bias-aligned (BA) samples", _DOCS,
               "probe.analyses.logits:margins"),
        Metric("max_softmax_mean", "mean over samples of the largest softmax probability", _DOCS,
               "probe.analyses.logits:max_softmax"),
        Metric("param_norm", "L2 norm of all parameters together (BatchNorm running statistics excluded); split "
               "'model'", _DOCS, "probe.analyses.logits:param_norms"),
        Metric("param_norm/<tensor>", "L2 norm of one parameter tensor, by its state_dict name; split 'model'", _DOCS,
               "probe.analyses.logits:param_norms"),
    ),
)
def logits_epoch(ctx: AnalysisContext, epoch: int) -> EpochMetrics:
    """:func:`logit_metrics` for every recorded split, and :func:`param_norms` under ``"model"``."""
    run = ctx.run
    out: EpochMetrics = {}
    for split in run.splits:
        rec = run.records(split, epoch)
        out[split] = logit_metrics(rec.scores, rec.y, rec.is_bc)
    out["model"] = param_norms(run.state_dict(epoch))
    return out
