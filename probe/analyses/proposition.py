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
- ``rate_rel_error = |fitted_rate - m_min| / m_min`` (NaN when the proposition does not apply).
- ``convex``, ``bound_correct_ok``, ``bound_mispredicted_ok``: (i)-(iii) verified sample by sample on the grid (with
  a floating-point tolerance of 1e-9 relative).
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
        fitted_rate: asymptotic exponential rate of ``R``; min_ba_margin: smallest BA margin ``m_min``;
        rate_rel_error: ``|fitted_rate - m_min| / m_min`` (NaN when not applicable).
        bound_correct_ok: ``l_i <= (K-1) exp(-alpha m_i)`` for every correct sample on the grid.
        bound_mispredicted_ok: ``l_i >= alpha d_i`` for every mispredicted sample on the grid.
        applicable: every BA sample correct and at least one BC sample mispredicted; reason: why not, else "".
        fit_alphas: the alphas the rate was fitted on.
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
        }

    def plot(self, ax: Any = None) -> Any:
        """``log R(alpha)`` against alpha with the fitted asymptote; returns the matplotlib axes."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot(self.alphas, self.log_ratio, marker=".", label="log R(alpha)")
        if np.isfinite(self.turning_alpha):
            ax.axvline(self.turning_alpha, color="grey", linestyle=":", label="turning point")
        ax.set_xscale("log")
        ax.set_xlabel("alpha (logit scale)")
        ax.set_ylabel("log (mean BC loss / mean BA loss)")
        title = f"fitted rate {self.fitted_rate:.4g}, smallest BA margin {self.min_ba_margin:.4g}"
        ax.set_title(title if self.applicable else f"{title}\n(not applicable: {self.reason})", fontsize=9)
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
        (``applicable`` False, ``reason`` says why), except ``rate_rel_error``, which is then NaN.
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
        fitted_rate = float(np.polyfit(fit_alphas, target, 1)[0])
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
            rec = run.records(split, epoch)
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
        rec = run.records(split, epoch)
        big_l, _, _ = _scaled_log_terms(rec.logits, rec.y, alphas)
        log_ratio = _log_ratio(_log_softplus(big_l), _as_mask(rec.is_bc, len(big_l)))
        with np.errstate(over="ignore"):
            ratio = np.exp(log_ratio)
        frames.append(pd.DataFrame({"epoch": int(epoch), "alpha": alphas, "ratio": ratio, "log_ratio": log_ratio}))
    if not frames:
        return pd.DataFrame(columns=["epoch", "alpha", "ratio", "log_ratio"])
    return pd.concat(frames, ignore_index=True)


_DOCS = "metrics-logits.md#the-logit-scaling-proposition--analysis-proposition-split-train"
_CODE = "probe.analyses.proposition:check_proposition"


@register_epoch_analysis(
    "proposition",
    needs_model=False,
    version=1,
    options=(
        Option("alphas", "list[float]", tuple(DEFAULT_ALPHAS.tolist()), "the grid of logit scales alpha of R(alpha)",
               low=0.0),
    ),
    metrics=(
        Metric("fitted_rate", "asymptotic slope of log R(alpha) - log alpha on the largest alphas of the grid, "
               "R(alpha) = mean_BC CE(softmax(alpha z), y) / mean_BA CE(softmax(alpha z), y)", _DOCS, _CODE),
        Metric("min_ba_margin", "the smallest margin over BA training samples, which fitted_rate should equal",
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
    ),
)
def proposition_epoch(ctx: AnalysisContext, epoch: int) -> EpochMetrics:
    """:meth:`PropositionCheck.as_metrics` of the ``train`` split's logits (alpha grid from
    the option ``alphas``, default :data:`DEFAULT_ALPHAS`); nothing when the run records no ``train`` split."""
    run = ctx.run
    if "train" not in run.splits:
        return {}
    rec = run.records("train", epoch)
    check = check_proposition(rec.logits, rec.y, rec.is_bc, ctx.option("alphas"))
    return {"train": check.as_metrics()}
