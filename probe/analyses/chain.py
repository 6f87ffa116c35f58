"""The mechanism chain (SPEC section 4): four links from a larger learning rate to better bias-conflicting (BC)
accuracy, each a statistic with a verdict, per run and across a sweep.

Everything is a pure function of two tables of ``analyze``: the long epochs table (``run, lr, seed, budget, epoch,
step, split, metric, value``) and the run table (``run, lr, seed, budget, status``; only runs with status ``ok``
enter the sweep statistics). No run file is opened.

The axis is the distance budget ``d = lr * step`` (the run's nominal rate times its global step), so that rates are
compared at equal rate x steps. A value of a recorded split (``train``) sits at its epoch's step. A value of split
``sgd`` summarises the minibatches SGD trained on during the epoch, before each update, so it sits at the middle of
that epoch: ``step_e - n_e / 2`` with ``n_e = step_e - (e - 1) * S`` the epoch's steps, ``S`` the steps per epoch
(``step / epoch`` of the run's first recorded epoch after 0).

The curves (``CURVES``): ``N(d)`` = train ``logit_norm``, ``C(d)`` = train ``cmr@0.9``, ``B(d)`` = sgd
``bc_loss_share``, ``A(d)`` = train ``acc_bc``.

Events on a curve ``c`` recorded at distances ``d_0 < d_1 < ... < d_{n-1}`` (linear interpolation between them):

- peak ``d_peak(c)`` = ``d_p`` with ``p`` the first index of ``max c``; its resolution is the larger gap to a
  neighbouring recorded point.
- half-rise ``d_half(c)``: the rise runs from a base ``b`` to a top ``t > b`` (``"peak"`` anchor: ``t = p``, ``b``
  the first minimum before it, for curves that rise and fall, ``C`` and ``B``; ``"trough"`` anchor: ``b`` the first
  global minimum, ``t`` the first maximum after it, for ``A``, which may dip before it improves). ``d_half`` is where
  ``c`` first reaches ``(c_b + c_t) / 2`` after ``b``, interpolated between the two recorded points ``d_{j-1}, d_j``
  that bracket the crossing; its resolution is ``d_j - d_{j-1}``. Undefined when ``c_t <= c_b`` (no rise).

The links (``LINKS``):

1. *Early logit norm grows faster at larger rates* (across runs). Shared budget ``D`` = the smallest ``lr *
   final_step`` over the ok runs of the budget kind (the smallest rate's, at fixed steps); target ``d* = 0.1 D``.
   Per run, ``g = (N(d_e) - N(0)) / d_e`` with ``d_e`` the recorded distance after step 0 nearest ``d*`` (earlier on
   a tie): the growth of the logit norm per unit distance over the early window. Not measurable when ``d_e`` is more
   than ``MAX_DISTANCE_RATIO`` times from ``d*`` either way (the runs would not be compared at equal distance: record
   more densely early). Across the ok runs: Spearman ``rho(lr, g)`` with a one-sided permutation p-value
   (:func:`spearman_permutation_p`, greater); ``holds`` when ``rho > 0`` and ``p <= 0.05``, ``fails`` when ``rho <
   0`` and the opposite one-sided p <= 0.05, ``cannot tell`` otherwise, ``not measurable`` with fewer than two rates.
   With one run per rate and three rates the smallest p is 1/6: it can never hold.
2. *cmr rises as the logit norm rises* (within a run). Window: the train points up to the epoch at which ``B``
   peaks (the whole run when ``B`` was not recorded). Statistic: Spearman ``rho(N, C)`` over the window with a
   one-sided permutation p-value; ``holds`` when ``rho > 0`` and ``p <= 0.05``, ``fails`` when ``rho < 0`` and the
   opposite p <= 0.05, ``cannot tell`` otherwise; ``not measurable`` with fewer than ``MIN_POINTS`` (4) points or a
   constant ``N`` or ``C`` in the window (4 points perfectly ordered give p = 1/24).
3. *The SGD BC loss share rises after cmr* (within a run): ``lag = d_half(B) - d_half(C)`` (both "peak" anchored).
4. *BC training accuracy improves after the BC loss share peaks* (within a run): ``lag = d_half(A) - d_peak(B)``
   (``A`` "trough" anchored); ``cannot tell`` when ``B`` peaks at its last recorded point (still rising).

   A lag is decided only beyond the resolution ``r`` = the larger resolution of its two events (the spacing of the
   recorded points there): ``holds`` when ``lag >= r``, ``fails`` when ``lag <= -r``, ``cannot tell`` when ``|lag| <
   r``; ``not measurable`` when a curve is missing, has fewer than 3 points or does not rise. The table's ``value``
   is ``lag / r`` (decided when ``|value| >= 1``).

Links 2-4 rest on the BC training samples (``cmr@0.9``, the BC loss share and ``acc_bc``): in a run with fewer than
``MIN_BC_SAMPLES`` (20) of them (train ``n_bc``) they are ``not measurable``, as a claim on fewer than 20 samples is.

Across the sweep (links 2-4), per budget kind over the ok runs: counts of ``holds`` / ``fails`` / ``cannot tell`` /
``not measurable`` and a one-sided sign test over the runs with a decisive result: ``p = P(X >= n_hold)``, ``X ~
Binomial(n_hold + n_fail, 1/2)``; ``holds`` when ``p <= 0.05``, ``fails`` when ``P(X >= n_fail) <= 0.05``, ``cannot
tell`` otherwise, ``not measurable`` when no ok run is measurable. At least 5 decisive runs, all holding, are
needed (p = 1/32).

Example:
    >>> from probe.analyses.chain import mechanism_chain
    >>> chain, chain_runs = mechanism_chain(result.epochs, result.runs)   # doctest: +SKIP
    >>> chain[["budget", "link", "verdict", "p_value"]]                    # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from probe.errors import ProbeInputError

__all__ = ["CHAIN_COLUMNS", "CHAIN_RUN_COLUMNS", "CURVES", "LINKS", "Event", "Link", "chain_curves", "half_rise",
           "lag_verdict", "mechanism_chain", "peak", "sign_test_p", "spearman_permutation_p", "spearman_rho"]

#: significance level of every verdict.
ALPHA_LEVEL = 0.05
#: links 2-4 of a run with fewer BC training samples than this are not measurable (as the claims' sample floor).
MIN_BC_SAMPLES = 20
#: random permutations when exact enumeration (n! <= N_PERMUTATIONS) is too large; fixed seed for reproducibility.
N_PERMUTATIONS = 9999
RESAMPLING_SEED = 0
#: the early window of link 1 ends at this fraction of the shared distance budget (as plan.EARLY_FRACTION).
EARLY_DISTANCE_FRACTION = 0.1
#: link 1: the recorded distance used must lie within this factor of the target distance.
MAX_DISTANCE_RATIO = 2.0
#: link 2: fewest points in the window.
MIN_POINTS = 4
#: links 3 and 4: fewest recorded points of a curve.
MIN_CURVE_POINTS = 3

VERDICTS = ("holds", "fails", "cannot tell", "not measurable")

#: the four curves of the chain: (key, split, metric).
CURVES: tuple[tuple[str, str, str], ...] = (
    ("logit_norm", "train", "logit_norm"),
    ("cmr", "train", "cmr@0.9"),
    ("bc_loss_share", "sgd", "bc_loss_share"),
    ("acc_bc", "train", "acc_bc"),
)
_LABEL = {key: f"{split}/{metric}" for key, split, metric in CURVES}

#: columns of ``chain_runs`` (per run and link) and ``chain`` (per budget kind and link).
CHAIN_RUN_COLUMNS = ["run", "sweep", "lr", "seed", "budget", "status", "link", "statistic", "value", "p_value", "lag",
                     "resolution", "d_from", "d_to", "n_points", "verdict", "reason"]
CHAIN_COLUMNS = ["budget", "link", "name", "n_runs", "n_hold", "n_fail", "n_cannot_tell", "n_not_measurable",
                 "n_excluded", "statistic", "value", "p_value", "verdict", "description"]


@dataclass(frozen=True)
class Link:
    """One link of the chain: its number, short name, the statistic it reports and a plain sentence."""

    number: int
    name: str
    statistic: str
    description: str


LINKS: tuple[Link, ...] = (
    Link(1, "early_logit_norm_growth", "spearman(lr, (N(d_e) - N(0)) / d_e)",
         "Early in training (to 10% of the shared distance budget), the train logit norm grows faster per unit "
         "distance lr x step at larger rates."),
    Link(2, "cmr_rises_with_logit_norm", "spearman(train/logit_norm, train/cmr@0.9)",
         "Within a run, confident BC mispredictions (train cmr@0.9) rise as the train logit norm rises, up to the "
         "peak of the SGD BC loss share."),
    Link(3, "bc_loss_share_rises_after_cmr", "lag / resolution, lag = d_half(sgd/bc_loss_share) - "
         "d_half(train/cmr@0.9)",
         "The BC share of the loss in the minibatches SGD saw rises (half of its rise) after cmr@0.9 does."),
    Link(4, "acc_bc_improves_after_share_peak", "lag / resolution, lag = d_half(train/acc_bc) - "
         "d_peak(sgd/bc_loss_share)",
         "BC training accuracy improves (half of its rise) after the SGD BC loss share peaks."),
)


# --- statistics ----------------------------------------------------------------------------------------------------


def _pair(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ProbeInputError(f"x and y must have the same length, got {x.size} and {y.size}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ProbeInputError("x and y must be finite")
    return x, y


def spearman_rho(x: Any, y: Any) -> float:
    """Spearman rank correlation (tied values get average ranks); NaN when fewer than 2 points or x or y is
    constant."""
    from probe.analyses.claims_stats import average_ranks

    x, y = _pair(x, y)
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    rx, ry = average_ranks(x) - (x.size + 1) / 2, average_ranks(y) - (y.size + 1) / 2
    return float(rx @ ry / math.sqrt(float(rx @ rx) * float(ry @ ry)))


def spearman_permutation_p(x: Any, y: Any, alternative: str = "greater", n_resamples: int = N_PERMUTATIONS,
                           seed: int = RESAMPLING_SEED) -> float:
    """One-sided permutation p-value of Spearman's rho between ``x`` and ``y``, the claims' test
    (:func:`probe.analyses.claims_stats.rank_correlation_test`): the pairing of ``y`` with ``x`` is permuted, all
    ``n!`` pairings when ``n! <= n_resamples`` (``p = #{rho_pi >= rho} / n!``), else ``n_resamples`` random ones
    drawn with ``seed`` (``p = (1 + #{rho_pi >= rho}) / (1 + n_resamples)``). ``alternative`` ``"less"`` counts
    ``rho_pi <= rho``. NaN when rho is undefined or there are fewer than 3 points."""
    from probe.analyses.claims_stats import rank_correlation_test

    if alternative not in ("greater", "less"):
        raise ProbeInputError(f"alternative must be 'greater' or 'less', got {alternative!r}")
    x, y = _pair(x, y)
    _, p_up, p_down = rank_correlation_test(x, y, n_permutations=n_resamples, seed=seed)
    return p_up if alternative == "greater" else p_down


def _permutation_ps(x: Any, y: Any) -> tuple[float, float]:
    """``(p greater, p less)`` of :func:`spearman_permutation_p`, from one pass over the permutations."""
    from probe.analyses.claims_stats import rank_correlation_test

    x, y = _pair(x, y)
    _, p_up, p_down = rank_correlation_test(x, y, n_permutations=N_PERMUTATIONS, seed=RESAMPLING_SEED)
    return p_up, p_down


def sign_test_p(n_hold: int, n_fail: int) -> float:
    """One-sided sign test: ``P(X >= n_hold) = sum_{i >= n_hold} C(n, i) / 2^n`` for ``X ~ Binomial(n, 1/2)``,
    ``n = n_hold + n_fail``, summed exactly in integers (no scipy); NaN when both are 0."""
    if n_hold < 0 or n_fail < 0:
        raise ProbeInputError(f"counts must be >= 0, got {n_hold} and {n_fail}")
    n = int(n_hold) + int(n_fail)
    if n == 0:
        return float("nan")
    return sum(math.comb(n, i) for i in range(int(n_hold), n + 1)) / 2**n


@dataclass(frozen=True)
class Event:
    """A point on the distance axis (a curve's peak or half-rise) and the spacing of the recorded points there."""

    distance: float
    resolution: float
    index: int  # the recorded point at (peak) or just after (half-rise) the event
    at_end: bool  # the event is the last recorded point (a peak there may still be rising)


def _curve(d: Any, c: Any) -> tuple[np.ndarray, np.ndarray]:
    d, c = np.asarray(d, dtype=np.float64).ravel(), np.asarray(c, dtype=np.float64).ravel()
    if d.shape != c.shape:
        raise ProbeInputError(f"distances and values must have the same length, got {d.size} and {c.size}")
    keep = np.isfinite(d) & np.isfinite(c)
    d, c = d[keep], c[keep]
    order = np.argsort(d, kind="stable")
    d, c = d[order], c[order]
    if d.size and np.any(np.diff(d) <= 0):
        raise ProbeInputError("distances must be distinct")
    return d, c


def peak(d: Any, c: Any) -> Event | None:
    """The first recorded point where ``c`` is largest (None for an empty curve); resolution = the larger gap to a
    neighbouring recorded point (0 for a single point)."""
    d, c = _curve(d, c)
    if d.size == 0:
        return None
    p = int(np.argmax(c))
    gaps = [d[p] - d[p - 1]] if p > 0 else []
    gaps += [d[p + 1] - d[p]] if p < d.size - 1 else []
    return Event(float(d[p]), float(max(gaps, default=0.0)), p, p == d.size - 1)


def half_rise(d: Any, c: Any, anchor: str = "peak") -> Event | None:
    """Where ``c`` first reaches half of its rise, interpolated linearly between recorded points (module doc).

    ``anchor="peak"``: the rise ends at the first global maximum and starts at the first minimum before it;
    ``anchor="trough"``: it starts at the first global minimum and ends at the first maximum after it. None when the
    curve does not rise (or is empty).
    """
    if anchor not in ("peak", "trough"):
        raise ProbeInputError(f"anchor must be 'peak' or 'trough', got {anchor!r}")
    d, c = _curve(d, c)
    if d.size < 2:
        return None
    if anchor == "peak":
        top = int(np.argmax(c))
        base = int(np.argmin(c[: top + 1]))
    else:
        base = int(np.argmin(c))
        top = base + int(np.argmax(c[base:]))
    rise = c[top] - c[base]
    if not rise > 0:
        return None
    level = c[base] + rise / 2
    j = base + 1 + int(np.argmax(c[base + 1: top + 1] >= level))
    frac = (level - c[j - 1]) / (c[j] - c[j - 1])
    return Event(float(d[j - 1] + frac * (d[j] - d[j - 1])), float(d[j] - d[j - 1]), j, j == d.size - 1)


def lag_verdict(lag: float, resolution: float) -> str:
    """``holds`` when ``lag >= resolution``, ``fails`` when ``lag <= -resolution``, ``cannot tell`` in between
    (``not measurable`` for a non-finite lag)."""
    if not (math.isfinite(lag) and math.isfinite(resolution)):
        return "not measurable"
    if lag >= resolution:
        return "holds"
    if lag <= -resolution:
        return "fails"
    return "cannot tell"


def _correlation_verdict(rho: float, p_up: float, p_down: float) -> str:
    if rho > 0 and p_up <= ALPHA_LEVEL:
        return "holds"
    if rho < 0 and p_down <= ALPHA_LEVEL:
        return "fails"
    return "cannot tell"


# --- the tables ----------------------------------------------------------------------------------------------------


def _check_tables(epochs: Any, runs: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    for name, table, need in (("epochs", epochs, ("run", "epoch", "step", "split", "metric", "value")),
                              ("runs", runs, ("run", "lr", "status"))):
        if not isinstance(table, pd.DataFrame):
            raise ProbeInputError(f"the {name} table must be a pandas DataFrame, got {type(table).__name__}")
        missing = [c for c in need if c not in table.columns]
        if missing:
            raise ProbeInputError(f"the {name} table has no column {missing[0]!r}")
    runs = runs.copy()
    for col, default in (("sweep", ""), ("seed", np.nan), ("budget", "fixed")):
        if col not in runs.columns:
            runs[col] = default
    runs["lr"] = pd.to_numeric(runs["lr"], errors="coerce")
    return epochs, runs


@dataclass
class _RunCurves:
    """One run's four curves on the distance axis: key -> (distances, values, epochs)."""

    lr: float
    curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
    final_distance: float

    def get(self, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        empty = np.empty(0)
        return self.curves.get(key, (empty, empty, empty))


def _run_curves(rows: pd.DataFrame, lr: float, steps: pd.Series | None = None) -> _RunCurves:
    """The four curves of one run's epochs-table rows, each sorted by distance (module doc: where sgd values sit).
    ``steps``: the run's step per epoch (index: epoch, sorted), when ``rows`` holds only some of its rows."""
    if steps is None:
        steps = _epoch_steps(rows)
    trained = steps[steps.index > 0]
    per_epoch = float(trained.iloc[0] / trained.index[0]) if len(trained) else float("nan")
    curves = {}
    split_of, metric_of = rows["split"].to_numpy(), rows["metric"].to_numpy()
    for key, split, metric in CURVES:
        part = rows[(split_of == split) & (metric_of == metric)].drop_duplicates("epoch").sort_values("epoch")
        part = part[np.isfinite(part["value"].to_numpy(dtype=np.float64))]
        epoch = part["epoch"].to_numpy(dtype=np.int64)
        step = part["step"].to_numpy(dtype=np.float64)
        if split == "sgd":
            in_epoch = np.clip(step - (epoch - 1) * per_epoch, 0.0, per_epoch)
            step = step - in_epoch / 2
        curves[key] = (lr * step, part["value"].to_numpy(dtype=np.float64), epoch)
    final = float(lr * steps.iloc[-1]) if len(steps) else float("nan")
    return _RunCurves(lr, curves, final)


def _epoch_steps(rows: pd.DataFrame) -> pd.Series:
    """One run's step per epoch (the first row of each epoch), sorted by epoch, as float64."""
    return rows.drop_duplicates("epoch").set_index("epoch")["step"].astype(np.float64).sort_index()


def _by_run(epochs: pd.DataFrame) -> tuple[dict[Any, pd.DataFrame], dict[Any, pd.Series]]:
    """Per run: its rows of the chain's curves and of train ``n_bc`` (in table order), and its step per epoch
    (:func:`_epoch_steps` of all its rows). Filtering first keeps the per-run work to the few rows the chain reads."""
    if not len(epochs):
        return {}, {}
    first = epochs.drop_duplicates(["run", "epoch"])[["run", "epoch", "step"]]
    steps = {run: part.set_index("epoch")["step"].astype(np.float64).sort_index()
             for run, part in first.groupby("run", sort=False)}
    split, metric = epochs["split"].to_numpy(), epochs["metric"].to_numpy()
    wanted = np.zeros(len(epochs), dtype=bool)
    for _, s, m in (*CURVES, ("n_bc", "train", "n_bc")):
        wanted |= (split == s) & (metric == m)
    needed = epochs[wanted]
    by_run = dict(tuple(needed.groupby("run", sort=False)))
    empty = needed.iloc[:0]
    return {run: by_run.get(run, empty) for run in steps}, steps


def _row(link: int, statistic: str, **values: Any) -> dict[str, Any]:
    row = {"link": link, "statistic": statistic, "value": np.nan, "p_value": np.nan, "lag": np.nan,
           "resolution": np.nan, "d_from": np.nan, "d_to": np.nan, "n_points": 0, "verdict": "not measurable",
           "reason": ""}
    row.update(values)
    return row


def _link1(rc: _RunCurves, target: float) -> dict[str, Any]:
    stat = LINKS[0].statistic
    d, n, _ = rc.get("logit_norm")
    if not np.any(d == 0):
        return _row(1, stat, reason="train/logit_norm not recorded at step 0")
    if not math.isfinite(target) or target <= 0:
        return _row(1, stat, reason="no shared distance budget (no ok run with a final step)")
    later = np.flatnonzero(d > 0)
    if later.size == 0:
        return _row(1, stat, reason="train/logit_norm recorded only at step 0")
    i = later[int(np.argmin(np.abs(d[later] - target)))]
    n0 = float(n[np.flatnonzero(d == 0)[0]])
    ratio = d[i] / target
    common = {"d_from": 0.0, "d_to": float(d[i]), "n_points": 2}
    if not 1 / MAX_DISTANCE_RATIO <= ratio <= MAX_DISTANCE_RATIO:
        return _row(1, stat, **common, reason=f"nearest recorded distance {d[i]:.3g} is {ratio:.3g}x the target "
                    f"{target:.3g} (more than {MAX_DISTANCE_RATIO:g}x off): record more densely early")
    growth = (float(n[i]) - n0) / float(d[i])
    return _row(1, stat, **common, value=growth, verdict="measured",
                reason=f"logit norm {n0:.3g} -> {float(n[i]):.3g} over distance {d[i]:.3g} (target {target:.3g})")


def _link2(rc: _RunCurves) -> dict[str, Any]:
    stat = LINKS[1].statistic
    dn, n, en = rc.get("logit_norm")
    dc, c, ec = rc.get("cmr")
    _, b, eb = rc.get("bc_loss_share")
    if n.size == 0 or c.size == 0:
        missing = "train/logit_norm" if n.size == 0 else "train/cmr@0.9"
        return _row(2, stat, reason=f"{missing} not recorded")
    both = np.intersect1d(en, ec)
    if b.size:
        last = int(eb[int(np.argmax(b))])
        where = f"up to epoch {last}, where sgd/bc_loss_share peaks"
        both = both[both <= last]
    else:
        where = "the whole run (sgd/bc_loss_share not recorded)"
    x = n[np.isin(en, both)]
    y = c[np.isin(ec, both)]
    d_to = float(dn[np.isin(en, both)].max()) if both.size else np.nan
    common = {"d_from": 0.0, "d_to": d_to, "n_points": int(both.size)}
    if both.size < MIN_POINTS:
        return _row(2, stat, **common, reason=f"{both.size} recorded point(s) {where}; at least {MIN_POINTS} needed")
    if np.ptp(y) == 0 or np.ptp(x) == 0:
        what = "train/cmr@0.9" if np.ptp(y) == 0 else "train/logit_norm"
        return _row(2, stat, **common, reason=f"{what} is constant ({float((y if np.ptp(y) == 0 else x)[0]):.3g}) "
                    f"{where}")
    rho = spearman_rho(x, y)
    p_up, p_down = _permutation_ps(x, y)
    return _row(2, stat, **common, value=rho, p_value=p_up, verdict=_correlation_verdict(rho, p_up, p_down),
                reason=f"rho {rho:.3g}, one-sided p {p_up:.3g} over {both.size} points {where}")


#: the events of links 3 and 4: (curve key, event, half-rise anchor).
_EVENTS = {"cmr_half": ("cmr", "half-rise", "peak"), "share_half": ("bc_loss_share", "half-rise", "peak"),
           "share_peak": ("bc_loss_share", "peak", ""), "acc_half": ("acc_bc", "half-rise", "trough")}


def _curve_event(rc: _RunCurves, event: str) -> tuple[Event | None, str]:
    key, kind, anchor = _EVENTS[event]
    d, c, _ = rc.get(key)
    label = _LABEL[key]
    if d.size == 0:
        return None, f"{label} not recorded"
    if d.size < MIN_CURVE_POINTS:
        return None, f"{label} has {d.size} recorded point(s); at least {MIN_CURVE_POINTS} needed"
    found = peak(d, c) if kind == "peak" else half_rise(d, c, anchor=anchor)
    if found is None or (kind == "peak" and np.ptp(c) == 0):
        return None, f"{label} does not rise"
    return found, ""


def _event_name(event: str) -> str:
    key, kind, _ = _EVENTS[event]
    return f"{'d_peak' if kind == 'peak' else 'd_half'}({_LABEL[key]})"


def _lag_link(number: int, rc: _RunCurves, later: str, earlier: str) -> dict[str, Any]:
    """Link 3 or 4: ``lag = d(later event) - d(earlier event)`` against the resolution of both events."""
    stat = LINKS[number - 1].statistic
    ev_late, why_late = _curve_event(rc, later)
    ev_early, why_early = _curve_event(rc, earlier)
    if ev_late is None or ev_early is None:
        return _row(number, stat, reason="; ".join(w for w in (why_early, why_late) if w))
    lag = ev_late.distance - ev_early.distance
    resolution = max(ev_late.resolution, ev_early.resolution)
    common = {"lag": lag, "resolution": resolution, "d_from": ev_early.distance, "d_to": ev_late.distance,
              "n_points": int(rc.get(_EVENTS[later][0])[0].size + rc.get(_EVENTS[earlier][0])[0].size),
              "value": lag / resolution if resolution > 0 else np.nan}
    text = (f"{_event_name(later)} {ev_late.distance:.3g} - {_event_name(earlier)} {ev_early.distance:.3g} = "
            f"{lag:.3g} (resolution {resolution:.3g})")
    if _EVENTS[earlier][1] == "peak" and ev_early.at_end:
        return _row(number, stat, **common, verdict="cannot tell",
                    reason=f"{_LABEL[_EVENTS[earlier][0]]} peaks at its last recorded point (still rising); {text}")
    return _row(number, stat, **common, verdict=lag_verdict(lag, resolution), reason=text)


def _bc_count(rows: pd.DataFrame | None) -> float:
    """The run's number of BC training samples (train ``n_bc``; infinite when not recorded, so that nothing is
    refused for a count the run never reported)."""
    if rows is None:
        return math.inf
    counts = rows.loc[(rows["split"] == "train") & (rows["metric"] == "n_bc"), "value"]
    return float(counts.iloc[0]) if len(counts) else math.inf


def chain_run_table(epochs: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """``chain_runs``: per run of ``runs`` and link, the statistic, its value and the run's verdict (module doc).

    Link 1's per-run verdict is ``measured`` (its verdict is the sweep's). A run whose status is not ``ok`` gets
    verdict ``excluded``, its statistic still computed and its own verdict in ``reason``."""
    epochs, runs = _check_tables(epochs, runs)
    targets = {}
    by_run, steps = _by_run(epochs)
    curves = {}
    for _, r in runs.iterrows():
        rows = by_run.get(r["run"])
        curves[r["run"]] = _run_curves(rows, float(r["lr"]), steps[r["run"]]) if rows is not None else None
    for budget, part in runs.groupby("budget", sort=False):
        finals = [curves[name].final_distance for name in part.loc[part["status"] == "ok", "run"]
                  if curves[name] is not None]
        finals = [f for f in finals if math.isfinite(f) and f > 0]
        targets[budget] = EARLY_DISTANCE_FRACTION * min(finals) if finals else float("nan")
    out = []
    for _, r in runs.iterrows():
        ident = {"run": r["run"], "sweep": r["sweep"], "lr": float(r["lr"]), "seed": r["seed"], "budget": r["budget"],
                 "status": r["status"]}
        rc = curves[r["run"]]
        if rc is None:
            rows = [_row(k, link.statistic, reason="no recorded values") for k, link in enumerate(LINKS, 1)]
        else:
            rows = [_link1(rc, targets[r["budget"]]), _link2(rc),
                    _lag_link(3, rc, "share_half", "cmr_half"),
                    _lag_link(4, rc, "acc_half", "share_peak")]
            n_bc = _bc_count(by_run.get(r["run"]))
            if n_bc < MIN_BC_SAMPLES:  # cmr@0.9, the BC loss share and acc_bc rest on the BC training samples
                for row in rows[1:]:
                    alone = row["verdict"] + (f": {row['reason']}" if row["reason"] else "")
                    row["verdict"] = "not measurable"
                    row["reason"] = (f"{n_bc:.0f} BC training samples, fewer than {MIN_BC_SAMPLES}: cmr and acc_bc "
                                     f"move in steps of 1/{n_bc:.0f} (alone: {alone})")
        for row in rows:
            if r["status"] != "ok":
                row["reason"] = (f"status {r['status']}: left out of the sweep; alone: {row['verdict']}"
                                 + (f" ({row['reason']})" if row["reason"] else ""))
                row["verdict"] = "excluded"
            out.append({**ident, **row})
    table = pd.DataFrame(out, columns=CHAIN_RUN_COLUMNS)
    return table.astype({"link": np.int64, "n_points": np.int64})


def chain_sweep_table(chain_runs: pd.DataFrame) -> pd.DataFrame:
    """``chain``: per budget kind and link, the counts over the ok runs and the sweep's verdict (module doc)."""
    out = []
    for budget, part in chain_runs.groupby("budget", sort=False):
        for link in LINKS:
            rows = part[part["link"] == link.number]
            ok = rows[rows["verdict"] != "excluded"]
            counts = ok["verdict"].value_counts()
            row: dict[str, Any] = {"budget": budget, "link": link.number, "name": link.name, "n_runs": len(ok),
                                   "n_not_measurable": int(counts.get("not measurable", 0)),
                                   "n_excluded": int(len(rows) - len(ok)), "description": link.description}
            if link.number == 1:
                row.update(_sweep_link1(ok))
            else:
                n_hold, n_fail = int(counts.get("holds", 0)), int(counts.get("fails", 0))
                n_cannot = int(counts.get("cannot tell", 0))
                p_hold, p_fail = sign_test_p(n_hold, n_fail), sign_test_p(n_fail, n_hold)
                if n_hold + n_fail + n_cannot == 0:
                    verdict = "not measurable"
                elif p_hold <= ALPHA_LEVEL:
                    verdict = "holds"
                elif p_fail <= ALPHA_LEVEL:
                    verdict = "fails"
                else:
                    verdict = "cannot tell"
                row.update(n_hold=n_hold, n_fail=n_fail, n_cannot_tell=n_cannot,
                           statistic="sign test: share of decisive runs that hold",
                           value=n_hold / (n_hold + n_fail) if n_hold + n_fail else np.nan, p_value=p_hold,
                           verdict=verdict)
            out.append(row)
    return pd.DataFrame(out, columns=CHAIN_COLUMNS)


def _sweep_link1(ok: pd.DataFrame) -> dict[str, Any]:
    measured = ok[ok["verdict"] == "measured"]
    row = {"n_hold": np.nan, "n_fail": np.nan, "n_cannot_tell": np.nan, "statistic": LINKS[0].statistic,
           "value": np.nan, "p_value": np.nan, "verdict": "not measurable"}
    lr, g = measured["lr"].to_numpy(dtype=np.float64), measured["value"].to_numpy(dtype=np.float64)
    if np.unique(lr).size < 2:
        return row
    rho = spearman_rho(lr, g)
    if not math.isfinite(rho):
        return {**row, "verdict": "cannot tell"}
    p_up, p_down = _permutation_ps(lr, g)
    return {**row, "value": rho, "p_value": p_up, "verdict": _correlation_verdict(rho, p_up, p_down)}


def mechanism_chain(epochs: pd.DataFrame, runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The chain of a sweep: ``(chain, chain_runs)`` from the epochs and run tables of ``analyze``.

    Args:
        epochs: long table with ``run, epoch, step, split, metric, value`` (``EPOCH_COLUMNS`` of the engine).
        runs: one row per run with ``run, lr, status`` (and ``sweep, seed, budget``; budget default ``"fixed"``).

    Returns:
        ``chain`` (columns :data:`CHAIN_COLUMNS`, one row per budget kind and link) and ``chain_runs`` (columns
        :data:`CHAIN_RUN_COLUMNS`, one row per run and link).

    Raises:
        ProbeInputError: a table is not a DataFrame or lacks a column named above.
    """
    chain_runs = chain_run_table(epochs, runs)
    return chain_sweep_table(chain_runs), chain_runs


# --- the figure's data ---------------------------------------------------------------------------------------------


def chain_curves(epochs: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """The four curves for the figure: per ok run each rescaled to [0, 1] (``(c - min c) / (max c - min c)`` over
    the run's recorded points; a constant curve is left out), then averaged over the runs (seeds) of each budget kind
    and rate at each distance ``lr * step``.

    Returns:
        long table ``budget, lr, curve, split, metric, distance, value, n_runs``.
    """
    epochs, runs = _check_tables(epochs, runs)
    parts = []
    by_run, steps = _by_run(epochs)
    for _, r in runs[runs["status"] == "ok"].iterrows():
        rows = by_run.get(r["run"])
        if rows is None:
            continue
        rc = _run_curves(rows, float(r["lr"]), steps[r["run"]])
        for key, split, metric in CURVES:
            d, c, _ = rc.get(key)
            if c.size == 0 or np.ptp(c) == 0:
                continue
            parts.append(pd.DataFrame({"budget": r["budget"], "lr": float(r["lr"]), "curve": key, "split": split,
                                       "metric": metric, "distance": d, "value": (c - c.min()) / np.ptp(c)}))
    columns = ["budget", "lr", "curve", "split", "metric", "distance", "value", "n_runs"]
    if not parts:
        return pd.DataFrame(columns=columns)
    long = pd.concat(parts, ignore_index=True)
    keys = ["budget", "lr", "curve", "split", "metric", "distance"]
    mean = long.groupby(keys, sort=True)["value"].agg(value="mean", n_runs="size").reset_index()
    return mean[columns]
