"""The study's claims about a learning-rate sweep, as data, and how a sweep's runs are judged against them.

A claim says that a metric rises (or falls) with the learning rate. A sweep is summarised as a *run table*: one row
per run with columns ``run``, the axis (``lr``), ``seed``, ``budget`` (``"fixed"`` or ``"matched"``), ``status``
(:func:`classify_run`) and one column per claim, named ``"<phase>:<split>/<metric>"`` where ``phase`` is ``final``
(the last epoch) or ``early`` (an early epoch chosen by whoever builds the table).

The statistics (:func:`evaluate_claims`), per claim and budget, over the runs with ``status == "ok"`` and a finite
value:

- ``spearman``: Spearman rank correlation between the rate and the metric over the runs (every seed is a point;
  tied rates get average ranks).
- ``p_value``: one-sided permutation p-value of ``spearman`` in the claim's direction (metric values permuted over the
  runs; exact enumeration when ``n_runs! <= 9999``, otherwise 9999 random permutations with a fixed seed).
  ``p_value_opposite`` is the same test in the other direction.
- ``ci_low``, ``ci_high``: 95% percentile bootstrap interval of ``spearman`` over seeds: each of 2000 resamples
  redraws, within every rate, that rate's runs with replacement. Defined only when some rate has two or more runs;
  otherwise NaN and the permutation p-value alone carries the uncertainty. (Resampled duplicates add ties, so
  for a nearly perfect ordering the interval can sit slightly above ``spearman``.)
- ``verdict``: ``"agrees"`` when ``n_rates >= 3``, ``p_value <= 0.05`` and (when the interval is defined) the whole
  interval lies on the claimed side of 0; ``"disagrees"`` when the same holds in the opposite direction;
  ``"cannot tell"`` otherwise; ``"not measured"`` when the column is missing or has no finite value.
  With one seed per rate, 4 rates agree only when perfectly ordered (p = 1/24) and 3 rates can never agree (p >= 1/6).
- ``survives_control`` (only when the table has both budgets; the same value on every row of the claim): ``"yes"``
  when the claim agrees at fixed and at matched budget, ``"no"`` when it agrees at fixed budget but disagrees at
  matched budget, ``"cannot tell"`` when it agrees at fixed budget and the matched-budget verdict is neither,
  ``"n/a"`` when it does not agree at fixed budget (there is no effect to control for).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import permutation_test, rankdata

from probe.errors import ProbeInputError

#: significance level of the verdicts.
ALPHA_LEVEL = 0.05
#: bootstrap resamples of the seed interval; permutation resamples when exact enumeration is too large.
N_BOOTSTRAP = 2000
N_PERMUTATIONS = 9999
#: fixed seed of every random resampling, so that a report is reproducible.
RESAMPLING_SEED = 0
#: a run whose final training accuracy is below this multiple of chance (1/K) has collapsed.
COLLAPSE_FACTOR = 1.5

PHASES = ("final", "early")
DIRECTIONS = ("up", "down")
BUDGETS = ("fixed", "matched")


@dataclass(frozen=True)
class Claim:
    """One prediction of the study.

    Attributes:
        name: short id (``"unbiased_acc_up"``).
        column: run-table column ``"<phase>:<split>/<metric>"``.
        direction: ``"up"`` (rises with the rate) or ``"down"``.
        phase: ``"final"`` or ``"early"`` (the prefix of ``column``).
        description: one plain sentence for the report.
    """

    name: str
    column: str
    direction: str
    phase: str
    description: str

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ProbeInputError(f"claim {self.name!r}: direction must be one of {DIRECTIONS}, got {self.direction!r}")
        if self.phase not in PHASES or not self.column.startswith(f"{self.phase}:"):
            raise ProbeInputError(f"claim {self.name!r}: column {self.column!r} must start with its phase {PHASES}")

    @property
    def sign(self) -> int:
        return 1 if self.direction == "up" else -1


#: The claims of SPEC section 5, in report order.
CLAIMS: tuple[Claim, ...] = (
    Claim("unbiased_acc_up", "final:test/unbiased_acc", "up", "final",
          "Unbiased test accuracy rises with the learning rate."),
    Claim("wga_up", "final:test/wga", "up", "final",
          "Worst-group test accuracy rises with the learning rate."),
    Claim("retention_up", "final:test/retention@0.9", "up", "final",
          "Accuracy kept after pruning 90% of the weights rises with the learning rate."),
    Claim("activation_sparsity_up", "final:test/activation_sparsity", "up", "final",
          "Activations get sparser as the learning rate rises."),
    Claim("probe_core_up", "final:val/probe_core", "up", "final",
          "A linear probe reads the core label from the features better as the learning rate rises."),
    Claim("probe_gap_up", "final:val/probe_gap", "up", "final",
          "The features favour the core over the spurious attribute more as the learning rate rises "
          "(probe_core - probe_spurious)."),
    Claim("class_separation_up", "final:test/class_separation", "up", "final",
          "Classes are better separated in feature space as the learning rate rises."),
    Claim("core_attr_share_up", "final:test/core_attr_share@ig", "up", "final",
          "Integrated Gradients put more attribution on the core region as the learning rate rises."),
    Claim("early_logit_norm_up", "early:train/logit_norm", "up", "early",
          "Early in training, logit norms are larger at larger learning rates."),
    Claim("early_cmr_up", "early:train/cmr@0.9", "up", "early",
          "Early in training, more bias-conflicting samples are confidently mispredicted at larger learning rates."),
    Claim("early_bc_loss_share_up", "early:train/bc_loss_share", "up", "early",
          "Early in training, bias-conflicting samples carry more of the loss at larger learning rates."),
)


def classify_run(final_train_acc: float, num_classes: int, diverged: bool) -> str:
    """``"diverged"`` when the loss went non-finite; ``"collapsed"`` when it stayed finite but the final training
    accuracy is below ``1.5 / K`` (1.5x chance); ``"ok"`` otherwise."""
    if diverged:
        return "diverged"
    k = int(num_classes)
    if k < 2:
        raise ProbeInputError(f"num_classes must be >= 2, got {num_classes}")
    acc = float(final_train_acc)
    if not math.isfinite(acc) or not 0.0 <= acc <= 1.0:
        raise ProbeInputError(f"final training accuracy must lie in [0, 1], got {final_train_acc}")
    return "collapsed" if acc < COLLAPSE_FACTOR / k else "ok"


# --- statistics --------------------------------------------------------------------------------------------------


def _rank_corr(x_ranks: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman correlation of fixed ``x_ranks`` with each row of ``y`` (last axis = runs); NaN for a constant row."""
    y_ranks = rankdata(y, axis=-1)
    xc = x_ranks - x_ranks.mean()
    yc = y_ranks - y_ranks.mean(axis=-1, keepdims=True)
    den = np.sqrt((xc**2).sum()) * np.sqrt((yc**2).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (yc * xc).sum(axis=-1) / np.where(den > 0, den, 1.0), np.nan)


def _permutation_p(x_ranks: np.ndarray, y: np.ndarray, sign: int) -> float:
    """One-sided permutation p-value of the rank correlation in direction ``sign``."""
    res = permutation_test(
        (y,),
        lambda yy, axis=-1: _rank_corr(x_ranks, yy),
        permutation_type="pairings",
        vectorized=True,
        n_resamples=N_PERMUTATIONS,
        alternative="greater" if sign > 0 else "less",
        random_state=RESAMPLING_SEED,
    )
    return float(res.pvalue)


def _bootstrap_interval(rates: np.ndarray, y: np.ndarray, x_ranks: np.ndarray) -> tuple[float, float]:
    """95% percentile interval of the rank correlation when each rate's runs are redrawn with replacement."""
    rng = np.random.default_rng(RESAMPLING_SEED)
    groups = [np.flatnonzero(rates == r) for r in np.unique(rates)]
    idx = np.concatenate([rng.choice(g, size=(N_BOOTSTRAP, len(g)), replace=True) for g in groups], axis=1)
    order = np.concatenate(groups)  # the x ranks follow this order: resampling within a rate keeps them fixed
    boot = _rank_corr(x_ranks[order], y[idx])
    boot = boot[np.isfinite(boot)]
    if boot.size == 0:
        return float("nan"), float("nan")
    return float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))


def _judge(rates: np.ndarray, values: np.ndarray, sign: int) -> dict[str, Any]:
    n_rates, n_runs = len(np.unique(rates)), len(values)
    out: dict[str, Any] = {
        "n_rates": n_rates, "n_runs": n_runs, "spearman": float("nan"), "ci_low": float("nan"),
        "ci_high": float("nan"), "p_value": float("nan"), "p_value_opposite": float("nan"),
        "uncertainty": "", "verdict": "cannot tell",
    }
    if n_runs == 0:
        out["verdict"] = "not measured"
        return out
    if n_rates < 2:
        return out
    x_ranks = rankdata(rates)
    rho = float(_rank_corr(x_ranks, values))
    out["spearman"] = rho
    if not math.isfinite(rho):  # the metric is constant over the runs
        return out
    out["p_value"] = _permutation_p(x_ranks, values, sign)
    out["p_value_opposite"] = _permutation_p(x_ranks, values, -sign)
    if n_runs > n_rates:
        out["ci_low"], out["ci_high"] = _bootstrap_interval(rates, values, x_ranks)
        out["uncertainty"] = "bootstrap over seeds + permutation"
    else:
        out["uncertainty"] = "permutation (one seed per rate)"
    if n_rates < 3:
        return out
    has_ci = math.isfinite(out["ci_low"])
    above, below = out["ci_low"] > 0, out["ci_high"] < 0  # the whole interval on one side of 0
    claimed_side, opposite_side = (above, below) if sign > 0 else (below, above)
    if out["p_value"] <= ALPHA_LEVEL and (not has_ci or claimed_side):
        out["verdict"] = "agrees"
    elif out["p_value_opposite"] <= ALPHA_LEVEL and (not has_ci or opposite_side):
        out["verdict"] = "disagrees"
    return out


def _normalise_table(run_table: Any, axis: str):
    import pandas as pd

    if not isinstance(run_table, pd.DataFrame):
        raise ProbeInputError(f"run_table must be a pandas DataFrame, got {type(run_table).__name__}")
    if axis not in run_table.columns:
        raise ProbeInputError(f"run table has no column {axis!r} (the sweep axis)")
    table = run_table.copy()
    if "status" not in table.columns:
        table["status"] = "ok"
    if "budget" not in table.columns:
        table["budget"] = "fixed"
    bad = sorted(set(table["budget"].dropna().astype(str)) - set(BUDGETS))
    if bad:
        raise ProbeInputError(f"unknown budget {bad[0]!r} in run table (expected one of {BUDGETS})")
    rates = pd.to_numeric(table[axis], errors="coerce")
    if rates.isna().any() or not np.all(np.isfinite(rates)):
        raise ProbeInputError(f"column {axis!r} must hold a finite number for every run")
    table[axis] = rates.astype(np.float64)
    return table


def evaluate_claims(run_table: Any, claims: Any = CLAIMS, axis: str = "lr"):
    """Judge a sweep against the claims (see the module doc for every statistic and the verdict rule).

    Args:
        run_table: ``pandas.DataFrame``, one row per run, with columns ``run``, ``axis``, ``seed``, ``budget``
            (default ``"fixed"``), ``status`` (default ``"ok"``) and the claims' columns.
        claims: the claims to judge (default :data:`CLAIMS`).
        axis: the sweep axis column (default ``"lr"``).

    Returns:
        ``pandas.DataFrame``, one row per claim and budget present: ``claim``, ``column``, ``direction``,
        ``budget``, ``n_rates``, ``n_runs``, ``n_excluded`` (runs not ``ok``), ``spearman``, ``ci_low``,
        ``ci_high``, ``p_value``, ``p_value_opposite``, ``uncertainty``, ``verdict``, ``description``, and
        ``survives_control`` when both budgets are present.
    """
    import pandas as pd

    table = _normalise_table(run_table, axis)
    budgets = [b for b in BUDGETS if (table["budget"] == b).any()]
    rows = []
    for claim in claims:
        for budget in budgets:
            part = table[table["budget"] == budget]
            ok = part[part["status"] == "ok"]
            row: dict[str, Any] = {"claim": claim.name, "column": claim.column, "direction": claim.direction,
                                   "budget": budget, "n_excluded": int(len(part) - len(ok))}
            if claim.column in ok.columns:
                values = pd.to_numeric(ok[claim.column], errors="coerce").to_numpy(dtype=np.float64)
            else:
                values = np.empty(0)
            keep = np.isfinite(values)
            rates = ok[axis].to_numpy(dtype=np.float64)[keep] if values.size else np.empty(0)
            row.update(_judge(rates, values[keep], claim.sign))
            row["description"] = claim.description
            rows.append(row)
    columns = ["claim", "column", "direction", "budget", "n_rates", "n_runs", "n_excluded", "spearman", "ci_low",
               "ci_high", "p_value", "p_value_opposite", "uncertainty", "verdict", "description"]
    result = pd.DataFrame(rows, columns=columns)
    if set(budgets) == set(BUDGETS):
        verdicts = result.set_index(["claim", "budget"])["verdict"]
        result["survives_control"] = [
            _survives(verdicts[(name, "fixed")], verdicts[(name, "matched")]) for name in result["claim"]
        ]
    return result


def _survives(fixed: str, matched: str) -> str:
    if fixed != "agrees":
        return "n/a"
    if matched == "agrees":
        return "yes"
    if matched == "disagrees":
        return "no"
    return "cannot tell"


def failures_table(run_table: Any, axis: str = "lr"):
    """Every run left out of the claims: diverged and collapsed runs (and any other status but ``ok``).

    Returns:
        ``pandas.DataFrame`` with columns ``run``, ``axis``, ``seed``, ``budget``, ``status``, ``diverged_epoch``,
        ``diverged_step`` (NaN where the table has no such column or value), sorted by budget, rate and seed.
    """
    import pandas as pd

    table = _normalise_table(run_table, axis)
    failed = table[table["status"] != "ok"].copy()
    columns = ["run", axis, "seed", "budget", "status", "diverged_epoch", "diverged_step"]
    for col in columns:
        if col not in failed.columns:
            failed[col] = np.nan
    failed = failed[columns].sort_values(["budget", axis, "seed"], kind="stable").reset_index(drop=True)
    return pd.DataFrame(failed)
