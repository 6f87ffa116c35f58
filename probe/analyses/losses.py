"""Cross-entropy, confident BC mispredictions and the BC/BA loss shares.

With per-sample cross-entropy ``l_i = logsumexp(z_i) - z_{i,y_i}`` and BC / BA the bias-conflicting / bias-aligned
samples:

- ``cmr@tau`` = ``#{i in BC : argmax z_i != y_i and max softmax(z_i) >= tau} / #BC``;
- ``bc_loss_share`` = ``sum_{BC} l_i / sum_{all} l_i``;
- ``bc_ba_loss_ratio`` = ``mean_{BC} l_i / mean_{BA} l_i``; ``bc_ba_loss_ratio_sum`` = ``sum_{BC} l_i / sum_{BA} l_i``.

The registered epoch analysis ``"losses"`` computes them for every recorded split from the stored logits and
per-sample losses, and ``bc_loss_share`` / ``bc_ba_loss_ratio`` under the split ``"sgd"`` from the losses of the
minibatches SGD saw in that epoch (absent for epoch 0, which has no steps).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from probe.analyses.base import AnalysisContext, EpochMetrics, Metric, Option, register_epoch_analysis
from probe.analyses.logits import _as_labels, _as_logits, _as_mask, max_softmax
from probe.errors import ProbeInputError
from probe.store.logit_records import LogitSummary

#: default thresholds of ``cmr@tau``.
DEFAULT_TAUS = (0.5, 0.9, 0.99)

#: default bin edges of the confidence histogram: steps of 0.01 on [0, 1] plus 1 - 10^-k for k = 3..6, so that
#: ``cmr@tau`` is exact from the histogram at every multiple of 0.01 and at 0.999 ... 0.999999.
DEFAULT_CONFIDENCE_EDGES = np.unique(
    np.concatenate([np.arange(101) / 100.0, 1.0 - 10.0 ** -np.arange(3, 7, dtype=np.float64)])
)


def cross_entropy(logits: Any, y: Any) -> np.ndarray:
    """Per-sample cross-entropy ``l_i = logsumexp_k z_{i,k} - z_{i,y_i}`` in float64.

    Computed as ``softplus(logsumexp_{k != y} (z_k - z_y))``: stable for large logits and accurate to full relative
    precision for tiny losses (confident correct samples), where ``logsumexp(z) - z_y`` would cancel.

    Example:
        >>> round(float(cross_entropy([[0.0, 0.0]], [1])[0]), 6)  # log 2
        0.693147
    """
    z = _as_logits(logits)
    n = len(z)
    y = _as_labels(y, z.shape[1], "y", n)
    rows = np.arange(n)
    rel = z - z[rows, y][:, None]
    rel[rows, y] = -np.inf
    top = rel.max(axis=1)
    others = top + np.log(np.exp(rel - top[:, None]).sum(axis=1))
    return np.logaddexp(0.0, others)


def _mispredicted_confidence(logits: Any, y: Any, is_bc: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if isinstance(logits, LogitSummary):  # the run kept top-k summaries (record_logits topk:K)
        z, n, num_classes, pred = logits, len(logits), logits.num_classes, logits.pred
    else:
        z = _as_logits(logits)
        n, num_classes, pred = len(z), z.shape[1], z.argmax(axis=1)
    y = _as_labels(y, num_classes, "y", n)
    bc = _as_mask(is_bc, n)
    return bc, pred != y, max_softmax(z)


def _check_tau(tau: float) -> float:
    tau = float(tau)
    if not 0.0 < tau <= 1.0:
        raise ProbeInputError(f"confidence threshold tau must lie in (0, 1], got {tau}")
    return tau


def cmr_key(tau: float) -> str:
    """Metric id of ``cmr`` at ``tau``: ``cmr@0.9`` for 0.9."""
    return f"cmr@{float(tau):g}"


def cmr(logits: Any, y: Any, is_bc: Any, taus: Any = DEFAULT_TAUS) -> dict[str, float]:
    """Confident misprediction rate of the BC samples, one entry per threshold.

    ``cmr@tau = #{i in BC : argmax z_i != y_i, max_k softmax(z_i)_k >= tau} / #BC`` (NaN without BC samples).

    Args:
        logits: ``(n, K)``; y: ``(n,)`` labels; is_bc: ``(n,)`` bool.
        taus: thresholds in ``(0, 1]``; default ``(0.5, 0.9, 0.99)``.

    Returns:
        ``{"cmr@0.5": ..., "cmr@0.9": ..., "cmr@0.99": ...}`` (keys from :func:`cmr_key`).
    """
    bc, wrong, conf = _mispredicted_confidence(logits, y, is_bc)
    n_bc = int(bc.sum())
    out = {}
    for tau in np.atleast_1d(taus):
        tau = _check_tau(tau)
        hits = int(np.sum(bc & wrong & (conf >= tau)))
        out[cmr_key(tau)] = hits / n_bc if n_bc else float("nan")
    return out


@dataclass(frozen=True)
class ConfidenceHistogram:
    """Histogram of ``max softmax`` over the mispredicted BC samples.

    Attributes:
        edges: ``(B+1,)`` increasing bin edges in ``[0, 1]``; bins are ``[e_j, e_{j+1})``, the last one closed.
        counts: ``(B,)`` number of mispredicted BC samples per bin.
        n_bc: number of BC samples (the denominator of ``cmr``).
    """

    edges: np.ndarray
    counts: np.ndarray
    n_bc: int

    def cmr(self, tau: float) -> float:
        """``cmr@tau`` from the histogram: the mass in the bins whose lower edge is >= tau, over ``n_bc``.

        Exact when ``tau`` is one of the edges (below 1); otherwise a lower bound (the bin holding tau is left out).
        """
        tau = _check_tau(tau)
        if self.n_bc == 0:
            return float("nan")
        first = int(np.searchsorted(self.edges, tau, side="left"))
        return float(self.counts[first:].sum()) / self.n_bc

    def as_dict(self) -> dict[str, Any]:
        """Plain lists, for JSON."""
        return {"edges": self.edges.tolist(), "counts": self.counts.tolist(), "n_bc": self.n_bc}


def confidence_histogram(logits: Any, y: Any, is_bc: Any, bins: Any = DEFAULT_CONFIDENCE_EDGES) -> ConfidenceHistogram:
    """Keep the full distribution of ``max softmax`` over mispredicted BC samples, so any ``cmr@tau`` can be read
    later (:meth:`ConfidenceHistogram.cmr`).

    Args:
        logits, y, is_bc: as in :func:`cmr`.
        bins: increasing bin edges in ``[0, 1]`` starting at 0 and ending at 1, or a number of equal-width bins.
            Default :data:`DEFAULT_CONFIDENCE_EDGES` (steps of 0.01 plus 0.999 ... 0.999999).
    """
    if np.ndim(bins) == 0:
        n_bins = int(bins)
        if n_bins < 1:
            raise ProbeInputError(f"bins must be >= 1, got {bins}")
        edges = np.arange(n_bins + 1) / n_bins
    else:
        edges = np.asarray(bins, dtype=np.float64)
        if edges.ndim != 1 or len(edges) < 2 or np.any(np.diff(edges) <= 0) or edges[0] != 0.0 or edges[-1] != 1.0:
            raise ProbeInputError("bins must be increasing edges from 0 to 1 (at least two)")
    bc, wrong, conf = _mispredicted_confidence(logits, y, is_bc)
    counts, _ = np.histogram(conf[bc & wrong], bins=edges)
    return ConfidenceHistogram(edges=edges, counts=counts.astype(np.int64), n_bc=int(bc.sum()))


def _split_loss(loss: Any, is_bc: Any) -> tuple[np.ndarray, np.ndarray]:
    arr = np.asarray(loss, dtype=np.float64)
    if arr.ndim != 1:
        raise ProbeInputError(f"loss must be a 1-D array of per-sample losses, got shape {arr.shape}")
    return arr, _as_mask(is_bc, len(arr))


def _ratio(num: float, den: float) -> float:
    """``num / den`` with ``x/0 = inf`` for x > 0 and NaN for 0/0 or missing parts, without warnings."""
    if np.isnan(num) or np.isnan(den):
        return float("nan")
    if den == 0:
        return float("inf") if num > 0 else float("nan")
    return float(num / den)


def bc_loss_share(loss: Any, is_bc: Any) -> float:
    """``sum_{BC} l_i / sum_i l_i``: the share of the total loss carried by the BC samples (NaN if the total is 0)."""
    arr, bc = _split_loss(loss, is_bc)
    if arr.size == 0:
        return float("nan")
    total = float(arr.sum())
    return float(arr[bc].sum()) / total if total != 0 else float("nan")


def bc_ba_loss_ratio(loss: Any, is_bc: Any) -> float:
    """``mean_{BC} l_i / mean_{BA} l_i`` (NaN when either set is empty; ``inf`` when every BA loss is 0)."""
    arr, bc = _split_loss(loss, is_bc)
    mean_bc = float(arr[bc].mean()) if bc.any() else float("nan")
    mean_ba = float(arr[~bc].mean()) if (~bc).any() else float("nan")
    return _ratio(mean_bc, mean_ba)


def bc_ba_loss_ratio_sum(loss: Any, is_bc: Any) -> float:
    """``sum_{BC} l_i / sum_{BA} l_i`` (NaN when either set is empty; ``inf`` when every BA loss is 0).

    Equals ``bc_ba_loss_ratio * #BC / #BA``: it also counts how rare the BC samples are.
    """
    arr, bc = _split_loss(loss, is_bc)
    if not bc.any() or bc.all():
        return float("nan")
    return _ratio(float(arr[bc].sum()), float(arr[~bc].sum()))


def loss_share_metrics(loss: Any, is_bc: Any) -> dict[str, float]:
    """``bc_loss_share``, ``bc_ba_loss_ratio`` and ``bc_ba_loss_ratio_sum`` of one set of per-sample losses."""
    return {
        "bc_loss_share": bc_loss_share(loss, is_bc),
        "bc_ba_loss_ratio": bc_ba_loss_ratio(loss, is_bc),
        "bc_ba_loss_ratio_sum": bc_ba_loss_ratio_sum(loss, is_bc),
    }


_DOCS = "metrics-logits.md#confident-bc-mispredictions-and-loss-shares--analysis-losses-every-recorded-split-plus-sgd"


@register_epoch_analysis(
    "losses",
    needs_model=False,
    version=1,
    options=(
        Option("cmr_taus", "list[float]", DEFAULT_TAUS, "confidence thresholds tau of cmr@tau", low=0.0, high=1.0),
    ),
    metrics=(
        Metric("cmr@<tau>", "confident misprediction rate: fraction of BC samples mispredicted with max softmax >= "
               "tau", _DOCS, "probe.analyses.losses:cmr"),
        Metric("bc_loss_share", "sum of cross-entropy over BC samples / sum over all samples (split 'sgd': over the "
               "minibatches SGD trained on in that epoch)", _DOCS, "probe.analyses.losses:bc_loss_share"),
        Metric("bc_ba_loss_ratio", "mean cross-entropy over BC samples / mean over BA samples", _DOCS,
               "probe.analyses.losses:bc_ba_loss_ratio"),
        Metric("bc_ba_loss_ratio_sum", "sum of cross-entropy over BC samples / sum over BA samples", _DOCS,
               "probe.analyses.losses:bc_ba_loss_ratio_sum"),
    ),
)
def losses_epoch(ctx: AnalysisContext, epoch: int) -> EpochMetrics:
    """Per split: ``cmr@tau`` (taus from the option ``cmr_taus``, default :data:`DEFAULT_TAUS`) and the loss
    shares of the stored per-sample losses; under ``"sgd"``: ``bc_loss_share`` and ``bc_ba_loss_ratio`` of the
    minibatch losses SGD saw (skipped when the epoch has none)."""
    run = ctx.run
    taus = ctx.option("cmr_taus")
    out: EpochMetrics = {}
    for split in run.splits:
        rec = run.records(split, epoch)
        metrics = cmr(rec.scores, rec.y, rec.is_bc, taus)
        metrics.update(loss_share_metrics(rec.loss, rec.is_bc))
        out[split] = metrics
    sgd = run.sgd_records(epoch)
    if sgd is not None and len(np.asarray(sgd.loss)) > 0:
        out["sgd"] = {
            "bc_loss_share": bc_loss_share(sgd.loss, sgd.is_bc),
            "bc_ba_loss_ratio": bc_ba_loss_ratio(sgd.loss, sgd.is_bc),
        }
    return out


def confidence_histograms(run: Any, split: str = "train", epochs: Any = None, bins: Any = DEFAULT_CONFIDENCE_EDGES):
    """Tidy table of the confidence histogram of mispredicted BC samples, per epoch of a run.

    Returns:
        ``pandas.DataFrame`` with columns ``epoch, split, bin_lo, bin_hi, count, n_bc`` (one row per bin and epoch);
        ``cmr@tau`` for an edge ``tau`` is ``count[bin_lo >= tau].sum() / n_bc`` within an epoch.
    """
    import pandas as pd

    if split not in run.splits:
        raise ProbeInputError(f"split {split!r} is not recorded in run {run.name!r} (recorded: {list(run.splits)})")
    rows = []
    for epoch in run.epochs if epochs is None else epochs:
        rec = run.records(split, epoch)
        hist = confidence_histogram(rec.scores, rec.y, rec.is_bc, bins)
        for lo, hi, count in zip(hist.edges[:-1], hist.edges[1:], hist.counts):
            rows.append((int(epoch), split, float(lo), float(hi), int(count), hist.n_bc))
    return pd.DataFrame(rows, columns=["epoch", "split", "bin_lo", "bin_hi", "count", "n_bc"])
