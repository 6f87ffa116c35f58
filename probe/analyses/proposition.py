"""The logit-scaling proposition, checked on saved logits.

For a fixed model, scale every logit vector by ``alpha > 0`` and write ``l_i(alpha) = CE(softmax(alpha z_i), y_i)``.
With ``d_{ik} = z_{ik} - z_{i y_i}`` and ``L_i(alpha) = logsumexp_{k != y_i} alpha d_{ik}``,

    l_i(alpha) = log(1 + exp(L_i(alpha))) = softplus(L_i(alpha)).

Then (i) ``l_i`` is convex in alpha; (ii) a correct sample with margin ``m_i > 0`` has
``l_i(alpha) <= (K-1) exp(-alpha m_i)``; (iii) a mispredicted sample with gap ``d_i = max_k z_ik - z_iy > 0`` has
``l_i(alpha) >= alpha d_i``. Hence, when every BA sample is correct and some BC sample is mispredicted,

    R(alpha) = mean_BC l(alpha) / mean_BA l(alpha) ~ C alpha exp(alpha m_min),

with ``m_min`` the smallest BA margin: the BC mean grows linearly (the ``alpha`` factor), the BA mean decays like its
slowest term ``exp(-alpha m_min)``.

How the check is computed (:func:`check_proposition`):

- ``log l_i`` is evaluated in log space (``log softplus(L)``), so ``log R`` stays exact where ``l`` itself would
  underflow (``alpha m > 745``); ``R`` may be ``inf`` where ``log R`` is finite.
- ``turning_alpha``: the grid alpha at which ``log R`` is smallest; ``monotone_after_turning``: ``log R`` does not
  decrease on the grid from there on.
- ``fitted_rate``: least-squares slope of ``log R(alpha) - log(alpha)`` against ``alpha`` over the ``n_fit``
  (default 5) largest alphas of the grid (``log alpha`` is subtracted only when some BC sample is mispredicted; it
  removes the linear growth of the BC mean, which would otherwise add ``1/alpha`` to a finite-alpha slope). With the
  default grid that range is ``alpha`` in ``[10^3.6, 10^4]``; it is asymptotic when ``alpha * m_min >> 1`` there.
  NaN where the proposition does not apply (there the slope is an artefact of the grid, not a rate).
- ``rate_rel_error = |fitted_rate - m_min| / m_min`` (NaN when the proposition does not apply).
- ``convex``, ``bound_correct_ok``, ``bound_mispredicted_ok``: (i)-(iii) verified sample by sample on the grid (with
  a floating-point tolerance of 1e-9 relative).

``fitted_rate == m_min`` is an identity of the definition (R is computed by rescaling the very logits whose margin it
is compared with): it checks the implementation (the unit tests assert it), it is never evidence about training.

What is measured (the empirical question), on the training split of a run:

- The window: the recorded epochs where the proposition applies (every BA sample correct, some BC sample
  mispredicted); ``R(alpha)`` at them (:func:`ratio_curves`).
- Between consecutive recorded epochs ``t``, ``t+1`` (:func:`scale_direction_decomposition`), with ``z_t`` the
  ``(n, K)`` logits, ``|z|`` = mean over samples of ``||z_i||_2`` (``logit_norm``) and ``R`` at ``alpha = 1``::

      total     = log R(z_{t+1}) - log R(z_t)
      scale     = log R(z_t * s) - log R(z_t),     s = |z_{t+1}| / |z_t|
      direction = total - scale
      scale_share = scale / total                  (NaN when |total| < SHARE_MIN_TOTAL)

  ``scale`` is the change the logits' growth alone would have made; ``direction`` the rest (the logit vectors
  turning). A share outside ``[0, 1]`` means the two parts pull in opposite directions.
- Summaries, pure functions of the tables: :func:`window_table` (per run: the window, or why it is empty),
  :func:`window_summary` (per run: window epochs, median ``scale_share`` over the window's steps, the change of
  ``log R`` over them) and :func:`scale_share_by_rate` (across rates).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import logsumexp

from probe.analyses.base import AnalysisContext, EpochMetrics, Metric, Option, register_epoch_analysis
from probe.analyses.logits import _as_labels, _as_logits, _as_mask, margins
from probe.errors import ProbeInputError

#: default alpha grid: 61 points, 10 per decade, from 0.01 to 10^4 (alpha = 1 is the model as trained).
DEFAULT_ALPHAS = np.geomspace(1e-2, 1e4, 61)

_RTOL = 1e-9


def _check_alphas(alphas: Any) -> np.ndarray:
    arr = np.asarray(alphas, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ProbeInputError(f"alphas must be a non-empty 1-D array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ProbeInputError("alphas must be finite and positive")
    if np.any(np.diff(arr) <= 0):
        raise ProbeInputError("alphas must be strictly increasing")
    return arr


def _scaled_log_terms(logits: Any, y: Any, alphas: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``L_i(alpha) = logsumexp_{k != y_i} alpha (z_ik - z_iy)`` as ``(n, m)``, with the checked margins and alphas."""
    z = _as_logits(logits)
    n = len(z)
    y = _as_labels(y, z.shape[1], "y", n)
    alphas = _check_alphas(alphas)
    m = margins(z, y)  # = -max_{k != y} d_k
    rel = z - z[np.arange(n), y][:, None] + m[:, None]  # d_k - max_{k != y} d_k <= 0
    rel[np.arange(n), y] = -np.inf  # leave the true class out
    big_l = np.empty((n, len(alphas)))
    for j, alpha in enumerate(alphas):
        big_l[:, j] = -alpha * m + np.log(np.exp(alpha * rel).sum(axis=1))
    return big_l, m, alphas


def _log_softplus(x: np.ndarray) -> np.ndarray:
    """``log(log(1 + exp(x)))``, accurate for very negative ``x`` (where it tends to ``x``)."""
    out = np.empty_like(x)
    small = x < -40.0
    out[small] = x[small]  # log softplus(x) = x + log1p(-e^x / 2 + ...) and e^-40 is below float64 resolution
    out[~small] = np.log(np.logaddexp(0.0, x[~small]))
    return out


def scaled_cross_entropy(logits: Any, y: Any, alphas: Any) -> np.ndarray:
    """``l_i(alpha) = CE(softmax(alpha z_i), y_i)`` for every sample and alpha, shape ``(n, len(alphas))``, float64.

    Computed as ``softplus(logsumexp_{k != y} alpha (z_k - z_y))``, stable for any alpha.

    Example:
        >>> scaled_cross_entropy([[1.0, 0.0]], [0], [1.0, 2.0]).round(4).tolist()  # log(1 + e^-alpha)
        [[0.3133, 0.1269]]
    """
    big_l, _, _ = _scaled_log_terms(logits, y, alphas)
    return np.logaddexp(0.0, big_l)


def _log_ratio(log_l: np.ndarray, bc: np.ndarray) -> np.ndarray:
    """``log R(alpha) = log mean_BC l - log mean_BA l`` from per-sample ``log l`` (NaN if either set is empty)."""
    if not bc.any() or bc.all():
        return np.full(log_l.shape[1], np.nan)
    log_mean_bc = logsumexp(log_l[bc], axis=0) - np.log(bc.sum())
    log_mean_ba = logsumexp(log_l[~bc], axis=0) - np.log((~bc).sum())
    return log_mean_bc - log_mean_ba


def loss_ratio_curve(logits: Any, y: Any, is_bc: Any, alphas: Any = DEFAULT_ALPHAS) -> np.ndarray:
    """``R(alpha) = mean_BC l(alpha) / mean_BA l(alpha)`` on the grid, shape ``(len(alphas),)``.

    Evaluated in log space; an entry overflows to ``inf`` only when ``log R > 709``. NaN when BC or BA is empty.
    """
    big_l, _, _ = _scaled_log_terms(logits, y, alphas)
    bc = _as_mask(is_bc, len(big_l))
    with np.errstate(over="ignore"):
        return np.exp(_log_ratio(_log_softplus(big_l), bc))


@dataclass
class PropositionCheck:
    """The proposition checked on one set of logits (see the module doc for every definition).

    Attributes:
        alphas: the grid; ratio / log_ratio: ``R(alpha)`` and ``log R(alpha)`` on it.
        convex: every ``l_i`` is convex on the grid.
        turning_alpha: argmin of ``R`` on the grid; monotone_after_turning: ``R`` non-decreasing after it.
        fitted_rate: asymptotic exponential rate of ``R`` (NaN when not applicable); min_ba_margin: smallest BA
        margin ``m_min``; rate_rel_error: ``|fitted_rate - m_min| / m_min`` (NaN when not applicable). Their
        agreement is an identity of the definition: an implementation check, not evidence.
        bound_correct_ok: ``l_i <= (K-1) exp(-alpha m_i)`` for every correct sample on the grid.
        bound_mispredicted_ok: ``l_i >= alpha d_i`` for every mispredicted sample on the grid.
        applicable: every BA sample correct and at least one BC sample mispredicted; reason: why not, else "".
        fit_alphas: the alphas the rate was fitted on.
        n_ba_not_correct: BA samples not classified correctly (margin <= 0);
        n_bc_mispredicted: BC samples mispredicted (margin < 0).
    """

    alphas: np.ndarray
    ratio: np.ndarray
    log_ratio: np.ndarray
    convex: bool
    turning_alpha: float
    monotone_after_turning: bool
    fitted_rate: float
    min_ba_margin: float
    rate_rel_error: float
    bound_correct_ok: bool
    bound_mispredicted_ok: bool
    applicable: bool
    reason: str = ""
    fit_alphas: np.ndarray = field(default_factory=lambda: np.empty(0))
    n_ba_not_correct: int = 0
    n_bc_mispredicted: int = 0

    def as_metrics(self) -> dict[str, float]:
        """The scalar results as floats (flags as 0.0 / 1.0), keyed by metric id."""
        return {
            "fitted_rate": float(self.fitted_rate),
            "min_ba_margin": float(self.min_ba_margin),
            "rate_rel_error": float(self.rate_rel_error),
            "turning_alpha": float(self.turning_alpha),
            "monotone_after_turning": float(self.monotone_after_turning),
            "convex": float(self.convex),
            "bound_correct_ok": float(self.bound_correct_ok),
            "bound_mispredicted_ok": float(self.bound_mispredicted_ok),
            "applicable": float(self.applicable),
            "n_ba_not_correct": float(self.n_ba_not_correct),
            "n_bc_mispredicted": float(self.n_bc_mispredicted),
        }

    def plot(self, ax: Any = None) -> Any:
        """``log R(alpha)`` against alpha; returns the matplotlib axes."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot(self.alphas, self.log_ratio, marker=".", label="log R(alpha)")
        if np.isfinite(self.turning_alpha):
            ax.axvline(self.turning_alpha, color="grey", linestyle=":", label="turning point")
        ax.set_xscale("log")
        ax.set_xlabel("alpha (logit scale)")
        ax.set_ylabel("log (mean BC loss / mean BA loss)")
        title = f"smallest BA margin {self.min_ba_margin:.4g}"
        ax.set_title(f"{title} (the proposition applies)" if self.applicable
                     else f"{title}\n(the proposition does not apply: {self.reason})", fontsize=9)
        ax.legend(fontsize=8)
        return ax


def _applicability(m: np.ndarray, bc: np.ndarray) -> tuple[bool, str]:
    if not (~bc).any():
        return False, "no bias-aligned samples"
    if not bc.any():
        return False, "no bias-conflicting samples"
    wrong_ba = int(np.sum(m[~bc] <= 0))
    if wrong_ba:
        return False, f"{wrong_ba} bias-aligned samples are not classified correctly"
    if not np.any(m[bc] < 0):
        return False, "no bias-conflicting sample is mispredicted"
    return True, ""


def _is_convex_on_grid(alphas: np.ndarray, values: np.ndarray) -> bool:
    """True when every row of ``values`` (rows over samples, columns over ``alphas``) has non-decreasing chord
    slopes on the grid, up to a relative tolerance."""
    if values.shape[1] < 3:
        return True
    slopes = np.diff(values, axis=1) / np.diff(alphas)
    tol = _RTOL * (np.abs(slopes[:, 1:]) + np.abs(slopes[:, :-1])) + 1e-12
    return bool(np.all(np.diff(slopes, axis=1) >= -tol))


def check_proposition(
    logits: Any, y: Any, is_bc: Any, alphas: Any = DEFAULT_ALPHAS, n_fit: int = 5
) -> PropositionCheck:
    """Check the logit-scaling proposition on one set of logits.

    Args:
        logits: ``(n, K)`` logits; y: ``(n,)`` labels; is_bc: ``(n,)`` bool.
        alphas: increasing positive grid (default :data:`DEFAULT_ALPHAS`, 0.01 to 10^4).
        n_fit: number of largest grid alphas the asymptotic rate is fitted on (>= 2).

    Returns:
        A :class:`PropositionCheck`. Every field is computed even when the proposition does not apply
        (``applicable`` False, ``reason`` says why), except ``fitted_rate`` and ``rate_rel_error``, which are then
        NaN. Where it applies, ``fitted_rate`` equals ``min_ba_margin`` by construction (an implementation check).

    Example:
        >>> check = check_proposition([[2.0, 0.0], [0.0, 1.0]], [0, 0], [False, True])
        >>> check.applicable, round(check.fitted_rate, 6), check.min_ba_margin
        (True, 2.0, 2.0)
    """
    big_l, m, alphas = _scaled_log_terms(logits, y, alphas)
    n, k = np.shape(logits)
    bc = _as_mask(is_bc, n)
    n_fit = int(n_fit)
    if n_fit < 2 or n_fit > len(alphas):
        raise ProbeInputError(f"n_fit must lie in 2..{len(alphas)} (the grid size), got {n_fit}")
    applicable, reason = _applicability(m, bc)
    loss = np.logaddexp(0.0, big_l)
    log_l = _log_softplus(big_l)

    correct, wrong = m > 0, m < 0
    rhs = np.log(k - 1) - alphas[None, :] * m[correct, None]
    bound_correct_ok = bool(np.all(log_l[correct] <= rhs + _RTOL * (1.0 + np.abs(rhs))))
    lin = alphas[None, :] * (-m[wrong, None])
    bound_mispredicted_ok = bool(np.all(loss[wrong] >= lin - _RTOL * (1.0 + lin)))
    convex = _is_convex_on_grid(alphas, loss)

    log_ratio = _log_ratio(log_l, bc)
    with np.errstate(over="ignore"):
        ratio = np.exp(log_ratio)
    min_ba_margin = float(m[~bc].min()) if (~bc).any() else float("nan")
    fit_alphas = alphas[-n_fit:]
    if np.all(np.isfinite(log_ratio)):
        turn = int(np.argmin(log_ratio))
        turning_alpha = float(alphas[turn])
        steps = np.diff(log_ratio[turn:])
        monotone = bool(np.all(steps >= -_RTOL * (1.0 + np.abs(log_ratio[turn + 1 :]))))
        target = log_ratio[-n_fit:] - (np.log(fit_alphas) if np.any(m[bc] < 0) else 0.0)
        fitted_rate = float(np.polyfit(fit_alphas, target, 1)[0]) if applicable else float("nan")
    else:
        turning_alpha, monotone, fitted_rate = float("nan"), False, float("nan")
    rate_rel_error = abs(fitted_rate - min_ba_margin) / min_ba_margin if applicable else float("nan")
    return PropositionCheck(
        alphas=alphas,
        ratio=ratio,
        log_ratio=log_ratio,
        convex=convex,
        turning_alpha=turning_alpha,
        monotone_after_turning=monotone,
        fitted_rate=fitted_rate,
        min_ba_margin=min_ba_margin,
        rate_rel_error=float(rate_rel_error),
        bound_correct_ok=bound_correct_ok,
        bound_mispredicted_ok=bound_mispredicted_ok,
        applicable=applicable,
        reason=reason,
        fit_alphas=fit_alphas,
        n_ba_not_correct=int(np.sum(m[~bc] <= 0)),
        n_bc_mispredicted=int(np.sum(m[bc] < 0)),
    )


def _ratio_row(logits: Any, y: Any, is_bc: Any) -> dict[str, float]:
    z = _as_logits(logits)
    bc = _as_mask(is_bc, len(z))
    big_l, m, _ = _scaled_log_terms(z, y, [1.0])
    log_ratio = float(_log_ratio(_log_softplus(big_l), bc)[0])
    norms = np.linalg.norm(z, axis=1)
    applicable, _ = _applicability(m, bc)
    with np.errstate(over="ignore"):
        ratio = float(np.exp(log_ratio))
    return {
        "logit_norm": float(norms.mean()) if len(z) else float("nan"),
        "bc_ba_loss_ratio": ratio,
        "log_bc_ba_loss_ratio": log_ratio,
        "min_ba_margin": float(m[~bc].min()) if (~bc).any() else float("nan"),
        "applicable": applicable,
    }


def ratio_vs_logit_norm(run_or_logits: Any, y: Any = None, is_bc: Any = None, *, split: str = "train",
                        epochs: Any = None):
    """Across epochs, the measured BC/BA loss ratio next to the mean logit norm training produced.

    Args:
        run_or_logits: a run (reads ``run.records(split, epoch)`` for each epoch), or a sequence of ``(n, K)`` logit
            arrays (one per epoch, e.g. ``run.dynamics(split).logits``) together with ``y`` and ``is_bc``.
        y, is_bc: ``(n,)`` labels and BC flags (only with logit arrays).
        split: the run's split to read (default ``"train"``).
        epochs: epoch numbers (default: every committed epoch of the run, or ``0..E-1`` for arrays).

    Returns:
        ``pandas.DataFrame`` with one row per epoch: ``epoch``, ``step`` (runs only), ``logit_norm`` (mean
        ``||z||_2``), ``bc_ba_loss_ratio`` = ``R(1)`` (mean BC CE / mean BA CE of the logits as trained, computed in
        float64 from the logits), ``log_bc_ba_loss_ratio``, ``min_ba_margin`` and ``applicable`` (every BA sample
        correct and some BC sample mispredicted: the regime where the proposition predicts
        ``log R ~ logit scale x m_min``).
    """
    import pandas as pd

    rows = []
    if hasattr(run_or_logits, "records"):
        run = run_or_logits
        if split not in run.splits:
            raise ProbeInputError(f"split {split!r} is not recorded in run {run.name!r} (recorded: {list(run.splits)})")
        for epoch in run.epochs if epochs is None else epochs:
            rec = full_logit_records(run.records(split, epoch))
            rows.append({"epoch": int(epoch), "step": int(run.step_of(epoch)), **_ratio_row(rec.logits, rec.y,
                                                                                          rec.is_bc)})
    else:
        if y is None or is_bc is None:
            raise ProbeInputError("ratio_vs_logit_norm over logit arrays needs y and is_bc")
        seq = list(run_or_logits)
        labels = list(range(len(seq))) if epochs is None else list(epochs)
        if len(labels) != len(seq):
            raise ProbeInputError(f"{len(labels)} epochs given for {len(seq)} logit arrays")
        for epoch, logits in zip(labels, seq):
            rows.append({"epoch": int(epoch), **_ratio_row(logits, y, is_bc)})
    return pd.DataFrame(rows)


def ratio_curves(run: Any, split: str = "train", epochs: Any = None, alphas: Any = DEFAULT_ALPHAS):
    """Tidy ``R(alpha)`` curves of a run: ``pandas.DataFrame`` with columns ``epoch, alpha, ratio, log_ratio``."""
    import pandas as pd

    if split not in run.splits:
        raise ProbeInputError(f"split {split!r} is not recorded in run {run.name!r} (recorded: {list(run.splits)})")
    alphas = _check_alphas(alphas)
    frames = []
    for epoch in run.epochs if epochs is None else epochs:
        rec = full_logit_records(run.records(split, epoch))
        big_l, _, _ = _scaled_log_terms(rec.logits, rec.y, alphas)
        log_ratio = _log_ratio(_log_softplus(big_l), _as_mask(rec.is_bc, len(big_l)))
        with np.errstate(over="ignore"):
            ratio = np.exp(log_ratio)
        frames.append(pd.DataFrame({"epoch": int(epoch), "alpha": alphas, "ratio": ratio, "log_ratio": log_ratio}))
    if not frames:
        return pd.DataFrame(columns=["epoch", "alpha", "ratio", "log_ratio"])
    return pd.concat(frames, ignore_index=True)


# --- the empirical question: scale or direction ------------------------------------------------------------------

#: ``scale_share`` is NaN where ``|total| <`` this (log R unchanged: the share of no change is undefined).
SHARE_MIN_TOTAL = 1e-9

#: columns of :func:`scale_direction_decomposition` (``step_from``, ``step_to`` only when read from a run).
DECOMPOSITION_COLUMNS = ["epoch_from", "epoch_to", "step_from", "step_to", "log_r_from", "log_r_to", "log_r_scaled",
                         "total", "scale", "direction", "scale_share", "both_applicable"]


@dataclass(frozen=True)
class _EpochLogits:
    """One epoch's training logits, labels and BC flags (float64), with ``log R(1)``, ``|z|`` and applicability."""

    epoch: int
    step: int | None
    z: np.ndarray
    y: np.ndarray
    bc: np.ndarray
    log_r: float
    norm: float
    applicable: bool
    index: np.ndarray | None = None


def _log_r_at(z: np.ndarray, y: np.ndarray, bc: np.ndarray, alpha: float) -> float:
    """``log R(alpha)`` of one set of logits at one scale (NaN for a non-finite or non-positive ``alpha``)."""
    if not (np.isfinite(alpha) and alpha > 0):
        return float("nan")
    big_l, _, _ = _scaled_log_terms(z, y, [alpha])
    return float(_log_ratio(_log_softplus(big_l), bc)[0])


def _epoch_logits(epoch: int, step: int | None, logits: Any, y: Any, is_bc: Any,
                  index: np.ndarray | None = None) -> _EpochLogits:
    z = _as_logits(logits)
    y = _as_labels(y, z.shape[1], "y", len(z))
    bc = _as_mask(is_bc, len(z))
    applicable, _ = _applicability(margins(z, y), bc)
    norm = float(np.linalg.norm(z, axis=1).mean()) if len(z) else float("nan")
    return _EpochLogits(int(epoch), step, z, y, bc, _log_r_at(z, y, bc, 1.0), norm, applicable, index)


def _decompose(a: _EpochLogits, b: _EpochLogits, min_total: float) -> dict[str, Any]:
    """One row of :func:`scale_direction_decomposition`: epoch ``a`` -> epoch ``b`` (same samples)."""
    same_index = a.index is None or b.index is None or np.array_equal(a.index, b.index)
    if a.z.shape != b.z.shape or not (same_index and np.array_equal(a.y, b.y) and np.array_equal(a.bc, b.bc)):
        raise ProbeInputError(f"epochs {a.epoch} and {b.epoch} do not hold the same samples (shape, sample index, "
                              "labels or BC flags differ)")
    with np.errstate(divide="ignore", invalid="ignore"):
        s = b.norm / a.norm
    log_r_scaled = _log_r_at(a.z, a.y, a.bc, s)
    total = b.log_r - a.log_r
    scale = log_r_scaled - a.log_r
    share = scale / total if np.isfinite(total) and abs(total) >= min_total else float("nan")
    row: dict[str, Any] = {"epoch_from": a.epoch, "epoch_to": b.epoch}
    if a.step is not None:
        row.update(step_from=a.step, step_to=b.step)
    row.update(log_r_from=a.log_r, log_r_to=b.log_r, log_r_scaled=log_r_scaled, total=total, scale=scale,
               direction=total - scale, scale_share=share, both_applicable=bool(a.applicable and b.applicable))
    return row


def full_logit_records(rec: Any) -> Any:
    """Records with every logit: ``rec`` itself, or for a run recorded with ``record_logits topk:K`` its fixed subset
    with full logits (:meth:`probe.store.Records.with_full_logits`), on which the proposition's analyses run."""
    return rec.with_full_logits() if hasattr(rec, "with_full_logits") else rec


def _sorted_records(rec: Any) -> tuple[Any, Any, Any, np.ndarray]:
    """``(logits, y, is_bc, index)`` of a records object in increasing sample ``index`` order."""
    index = np.asarray(rec.index)
    if index.size == 0 or np.all(np.diff(index) > 0):
        return rec.logits, rec.y, rec.is_bc, index
    order = np.argsort(index, kind="stable")
    return rec.logits[order], rec.y[order], rec.is_bc[order], index[order]


def _run_epoch_logits(run: Any, split: str, epochs: Any) -> Any:
    """Yield :class:`_EpochLogits` for each epoch of ``run`` (each epoch file read once)."""
    if split not in run.splits:
        raise ProbeInputError(f"split {split!r} is not recorded in run {run.name!r} (recorded: {list(run.splits)})")
    for epoch in run.epochs if epochs is None else epochs:
        logits, y, is_bc, index = _sorted_records(full_logit_records(run.records(split, epoch)))
        yield _epoch_logits(int(epoch), int(run.step_of(epoch)), logits, y, is_bc, index)


def _array_epoch_logits(logits_seq: Any, y: Any, is_bc: Any, epochs: Any) -> Any:
    if y is None or is_bc is None:
        raise ProbeInputError("scale_direction_decomposition over logit arrays needs y and is_bc")
    seq = list(logits_seq)
    labels = list(range(len(seq))) if epochs is None else [int(e) for e in epochs]
    if len(labels) != len(seq):
        raise ProbeInputError(f"{len(labels)} epochs given for {len(seq)} logit arrays")
    for epoch, logits in zip(labels, seq):
        yield _epoch_logits(epoch, None, logits, y, is_bc)


def _pairs_table(items: Any, min_total: float, with_steps: bool):
    import pandas as pd

    rows, previous = [], None
    for item in items:
        if previous is not None:
            rows.append(_decompose(previous, item, min_total))
        previous = item
    columns = [c for c in DECOMPOSITION_COLUMNS if with_steps or not c.startswith("step_")]
    return pd.DataFrame(rows, columns=columns)


def scale_direction_decomposition(logits_seq: Any, y: Any = None, is_bc: Any = None, epochs: Any = None, *,
                                  split: str = "train", min_total: float = SHARE_MIN_TOTAL):
    """How much of each change of ``log R(1)`` between consecutive recorded epochs the logits' scale alone explains.

    For consecutive epochs ``t``, ``t+1`` with logits ``z_t`` (``(n, K)``), ``|z|`` = mean over samples of
    ``||z_i||_2`` (``logit_norm``) and ``R(z)`` = mean BC CE / mean BA CE of ``softmax(z)``::

        total = log R(z_{t+1}) - log R(z_t)
        scale = log R(z_t * s) - log R(z_t),   s = |z_{t+1}| / |z_t|
        direction = total - scale,             scale_share = scale / total

    Pure scaling (``z_{t+1} = c z_t``) gives ``scale_share = 1``; a rotation of every ``z_i`` at a fixed norm gives
    ``scale = 0``. ``scale_share`` is NaN when ``|total| < min_total``: log R did not change, so no share is defined.
    ``log R`` is computed in log space (exact where the BA losses underflow).

    Args:
        logits_seq: a run (reads ``run.records(split, epoch)``), or a sequence of ``(n, K)`` logit arrays of the same
            samples, one per epoch (e.g. ``run.dynamics("train").logits``).
        y, is_bc: ``(n,)`` labels and BC flags (only with logit arrays).
        epochs: epoch numbers (default: every committed epoch of the run, or ``0..E-1`` for arrays); consecutive
            entries form the pairs.
        split: the run's split to read (default ``"train"``).
        min_total: ``|total|`` below which ``scale_share`` is NaN (default :data:`SHARE_MIN_TOTAL`).

    Returns:
        ``pandas.DataFrame``, one row per consecutive pair: ``epoch_from, epoch_to, step_from, step_to`` (runs only),
        ``log_r_from, log_r_to, log_r_scaled`` (``log R(z_t * s)``), ``total, scale, direction, scale_share`` and
        ``both_applicable`` (the proposition applies at both epochs: the pair lies in the window).

    Example:
        >>> z = np.array([[2.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
        >>> table = scale_direction_decomposition([z, 3 * z], y=[0, 0, 0], is_bc=[False, False, True])
        >>> float(table["scale_share"].round(9).iloc[0]), bool(table["both_applicable"].iloc[0])
        (1.0, True)
    """
    if hasattr(logits_seq, "records"):
        return _pairs_table(_run_epoch_logits(logits_seq, split, epochs), min_total, with_steps=True)
    return _pairs_table(_array_epoch_logits(logits_seq, y, is_bc, epochs), min_total, with_steps=False)


def _curve_frame(item: _EpochLogits, alphas: np.ndarray):
    import pandas as pd

    big_l, _, _ = _scaled_log_terms(item.z, item.y, alphas)
    log_ratio = _log_ratio(_log_softplus(big_l), item.bc)
    with np.errstate(over="ignore"):
        ratio = np.exp(log_ratio)
    return pd.DataFrame({"epoch": item.epoch, "alpha": alphas, "ratio": ratio, "log_ratio": log_ratio})


def proposition_tables(run: Any, split: str = "train", epochs: Any = None, curve_epochs: Any = (),
                       alphas: Any = DEFAULT_ALPHAS, min_total: float = SHARE_MIN_TOTAL):
    """The decomposition and the ``R(alpha)`` curves of a run, reading each epoch file once.

    Returns:
        ``(steps, curves)``: :func:`scale_direction_decomposition` over ``epochs`` (default: every committed epoch),
        and :func:`ratio_curves` (``epoch, alpha, ratio, log_ratio``) at the window's epochs (those of ``epochs``
        where the proposition applies) and at ``curve_epochs`` (those of them among ``epochs``).
    """
    import pandas as pd

    alphas = _check_alphas(alphas)
    wanted = {int(e) for e in curve_epochs}
    frames = []

    def items():
        for item in _run_epoch_logits(run, split, epochs):
            if item.applicable or item.epoch in wanted:
                frames.append(_curve_frame(item, alphas))
            yield item

    steps = _pairs_table(items(), min_total, with_steps=True)
    curves = (pd.concat(frames, ignore_index=True) if frames
              else pd.DataFrame(columns=["epoch", "alpha", "ratio", "log_ratio"]))
    return steps, curves


# --- summaries (pure functions of the tables) ----------------------------------------------------------------------

_ID = ["run", "sweep", "lr", "seed", "budget"]


def _epoch_list(epochs: Any) -> str:
    """``[1, 2, 3, 5, 7, 8]`` -> ``"1-3, 5, 7-8"``."""
    values = sorted(int(e) for e in epochs)
    parts: list[str] = []
    start = prev = None
    for e in [*values, None]:
        if e is not None and prev is not None and e == prev + 1:
            prev = e
            continue
        if start is not None:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = e
    return ", ".join(parts)


def _never_reason(part: Any) -> str:
    """Why the proposition applies at no epoch of one run's proposition rows."""
    if "n_ba_not_correct" in part:
        ba_wrong = part["n_ba_not_correct"].to_numpy(dtype=float) > 0
    else:  # older tables: the smallest BA margin says it
        ba_wrong = ~(part["min_ba_margin"].to_numpy(dtype=float) > 0)
    bc_none = (part["n_bc_mispredicted"].to_numpy(dtype=float) == 0 if "n_bc_mispredicted" in part
               else ~ba_wrong)
    n = len(part)
    if ba_wrong.all():
        return f"some BA training sample is not classified correctly at every recorded epoch ({n})"
    if bc_none.all():
        return f"no BC training sample is mispredicted at any recorded epoch ({n})"
    return (f"at every recorded epoch either some BA training sample is not classified correctly "
            f"({int(ba_wrong.sum())} of {n} epochs) or no BC sample is mispredicted ({int(bc_none.sum())} of {n})")


def window_table(proposition: Any):
    """Per run, the window: the recorded epochs where the proposition applies, or why there are none.

    Args:
        proposition: one row per (run, epoch) with ``run, epoch, applicable`` (and ``lr, seed, budget, step,
            n_ba_not_correct, n_bc_mispredicted, min_ba_margin`` when present), as
            :attr:`~probe.analyses.engine.result.AnalysisResult.proposition`.

    Returns:
        ``pandas.DataFrame``, one row per run: its identity, ``n_epochs`` (analysed), ``n_window`` (where it
        applies), ``window_epochs`` (``"3-7, 9"``), ``first_window_step``, ``last_window_step`` and ``reason`` (why it
        never applies; ``""`` when it does somewhere).

    Example:
        >>> import pandas as pd
        >>> prop = pd.DataFrame({"run": ["a"] * 4, "epoch": [0, 1, 2, 3], "applicable": [0, 1, 1, 0]})
        >>> window_table(prop)[["n_epochs", "n_window", "window_epochs"]].values.tolist()
        [[4, 2, '1-2']]
    """
    import pandas as pd

    ident = [c for c in _ID if c in proposition.columns]
    rows = []
    for _, part in proposition.groupby("run", sort=False):
        part = part.sort_values("epoch")
        inside = part[part["applicable"].to_numpy(dtype=float) > 0.5]
        has_steps = "step" in part.columns and len(inside) > 0
        rows.append({**{c: part[c].iloc[0] for c in ident}, "n_epochs": len(part), "n_window": len(inside),
                     "window_epochs": _epoch_list(inside["epoch"]),
                     "first_window_step": int(inside["step"].iloc[0]) if has_steps else None,
                     "last_window_step": int(inside["step"].iloc[-1]) if has_steps else None,
                     "reason": "" if len(inside) else _never_reason(part)})
    columns = [*ident, "n_epochs", "n_window", "window_epochs", "first_window_step", "last_window_step", "reason"]
    return pd.DataFrame(rows, columns=columns)


def window_summary(proposition: Any, steps: Any, runs: Any = None):
    """Per run: the window and the scale / direction decomposition over it.

    Over the steps of a run that lie in the window (``both_applicable``):
    ``median_scale_share`` (median of the finite ``scale_share``), ``log_r_change`` = sum of ``total`` (the change
    of ``log R(1)`` over the window's steps), ``scale_change`` = sum of ``scale`` and ``pooled_scale_share`` =
    ``scale_change / log_r_change`` (NaN when ``|log_r_change| <`` :data:`SHARE_MIN_TOTAL`).

    Args:
        proposition: the per-epoch proposition table (see :func:`window_table`).
        steps: the decomposition of every run (``run`` plus :data:`DECOMPOSITION_COLUMNS`), as
            :attr:`~probe.analyses.engine.result.AnalysisResult.proposition_steps`.
        runs: the run table; when given, its ``status`` column is added.

    Returns:
        :func:`window_table`'s columns plus ``n_window_steps``, ``median_scale_share``, ``log_r_change``,
        ``scale_change``, ``pooled_scale_share`` (and ``status``).

    Example:
        >>> import pandas as pd
        >>> prop = pd.DataFrame({"run": ["a"] * 3, "epoch": [0, 1, 2], "applicable": [1, 1, 1]})
        >>> steps = pd.DataFrame({"run": ["a", "a"], "total": [1.0, 2.0], "scale": [0.5, 2.0],
        ...                       "scale_share": [0.5, 1.0], "both_applicable": [True, True]})
        >>> window_summary(prop, steps)[["n_window_steps", "median_scale_share", "log_r_change"]].values.tolist()
        [[2.0, 0.75, 3.0]]
    """
    table = window_table(proposition)
    inside = steps[steps["both_applicable"].astype(bool)] if len(steps) else steps
    stats = []
    for run in table["run"]:
        part = inside[inside["run"] == run] if len(inside) else inside
        shares = part["scale_share"].to_numpy(dtype=float) if len(part) else np.empty(0)
        shares = shares[np.isfinite(shares)]
        total = float(part["total"].sum()) if len(part) else float("nan")
        scale = float(part["scale"].sum()) if len(part) else float("nan")
        stats.append({"n_window_steps": len(part),
                      "median_scale_share": float(np.median(shares)) if shares.size else float("nan"),
                      "log_r_change": total, "scale_change": scale,
                      "pooled_scale_share": scale / total if abs(total) >= SHARE_MIN_TOTAL else float("nan")})
    import pandas as pd

    out = pd.concat([table, pd.DataFrame(stats, index=table.index,
                                         columns=["n_window_steps", "median_scale_share", "log_r_change",
                                                  "scale_change", "pooled_scale_share"])], axis=1)
    if runs is not None and "status" in runs.columns:
        out = out.merge(runs[["run", "status"]], on="run", how="left")
    return out


def scale_share_by_rate(summary: Any):
    """Across rates, per budget and learning rate over the runs of :func:`window_summary` (only ``status == "ok"``
    runs when the summary has a status): ``seeds`` (runs), ``seeds_with_window`` (runs with at least one step in the
    window), ``window_steps`` (all of them), ``median_scale_share`` (median over those runs of each run's median)
    and ``mean_log_r_change`` (mean over those runs of ``log_r_change``).

    Example:
        >>> import pandas as pd
        >>> summary = pd.DataFrame({"lr": [0.1, 0.1, 1.0], "n_window_steps": [2, 0, 3],
        ...                         "median_scale_share": [0.2, float("nan"), 0.9], "log_r_change": [1.0, 0.0, 2.0]})
        >>> scale_share_by_rate(summary)[["lr", "seeds", "seeds_with_window", "median_scale_share"]].values.tolist()
        [[0.1, 2.0, 1.0, 0.2], [1.0, 1.0, 1.0, 0.9]]
    """
    import pandas as pd

    columns = ["budget", "lr", "seeds", "seeds_with_window", "window_steps", "median_scale_share",
               "mean_log_r_change"]
    frame = summary if "status" not in summary.columns else summary[summary["status"] == "ok"]
    if "budget" not in frame.columns:
        frame = frame.assign(budget="fixed")
    rows = []
    for (budget, lr), part in frame.groupby(["budget", "lr"], sort=True):
        has = part[part["n_window_steps"] > 0]
        medians = has["median_scale_share"].to_numpy(dtype=float)
        medians = medians[np.isfinite(medians)]
        changes = has["log_r_change"].to_numpy(dtype=float)
        rows.append({"budget": budget, "lr": float(lr), "seeds": len(part), "seeds_with_window": len(has),
                     "window_steps": int(part["n_window_steps"].sum()),
                     "median_scale_share": float(np.median(medians)) if medians.size else float("nan"),
                     "mean_log_r_change": float(changes.mean()) if changes.size else float("nan")})
    return pd.DataFrame(rows, columns=columns)


_DOCS = "metrics-logits.md#the-logit-scaling-proposition--analysis-proposition-split-train"
_CODE = "probe.analyses.proposition:check_proposition"


@register_epoch_analysis(
    "proposition",
    needs_model=False,
    version=2,
    options=(
        Option("alphas", "list[float]", tuple(DEFAULT_ALPHAS.tolist()), "the grid of logit scales alpha of R(alpha)",
               low=0.0),
    ),
    metrics=(
        Metric("fitted_rate", "asymptotic slope of log R(alpha) - log alpha on the largest alphas of the grid, "
               "R(alpha) = mean_BC CE(softmax(alpha z), y) / mean_BA CE(softmax(alpha z), y); NaN where the "
               "proposition does not apply. It equals min_ba_margin by definition: an implementation check, not "
               "evidence", _DOCS, _CODE),
        Metric("min_ba_margin", "the smallest margin over BA training samples (fitted_rate equals it by definition)",
               _DOCS, _CODE),
        Metric("rate_rel_error", "|fitted_rate - min_ba_margin| / min_ba_margin (NaN where the proposition does not "
               "apply)", _DOCS, _CODE),
        Metric("turning_alpha", "the grid alpha at which log R(alpha) is smallest", _DOCS, _CODE),
        Metric("monotone_after_turning", "1 when log R(alpha) does not decrease on the grid after turning_alpha, "
               "else 0", _DOCS, _CODE),
        Metric("convex", "1 when every per-sample loss l_i(alpha) is convex on the grid, else 0", _DOCS, _CODE),
        Metric("bound_correct_ok", "1 when every correct sample satisfies l_i(alpha) <= (K-1) exp(-alpha m_i) on the "
               "grid, else 0", _DOCS, _CODE),
        Metric("bound_mispredicted_ok", "1 when every mispredicted sample satisfies l_i(alpha) >= alpha d_i on the "
               "grid, else 0", _DOCS, _CODE),
        Metric("applicable", "1 when every BA training sample is correct and some BC sample is mispredicted, else 0",
               _DOCS, _CODE),
        Metric("n_ba_not_correct", "number of BA training samples not classified correctly (margin <= 0)",
               _DOCS, _CODE),
        Metric("n_bc_mispredicted", "number of BC training samples mispredicted (margin < 0)", _DOCS, _CODE),
    ),
)
def proposition_epoch(ctx: AnalysisContext, epoch: int) -> EpochMetrics:
    """:meth:`PropositionCheck.as_metrics` of the ``train`` split's logits (alpha grid from
    the option ``alphas``, default :data:`DEFAULT_ALPHAS`); nothing when the run records no ``train`` split."""
    run = ctx.run
    if "train" not in run.splits:
        return {}
    rec = full_logit_records(run.records("train", epoch))
    check = check_proposition(rec.logits, rec.y, rec.is_bc, ctx.option("alphas"))
    return {"train": check.as_metrics()}
