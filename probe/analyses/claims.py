"""The study's claims about a learning-rate sweep, as data, and how a sweep's runs are judged against them.

A claim says that a metric rises (or falls) with the learning rate. A sweep is summarised as a *run table*: one row
per run with columns ``run``, the axis (``lr``), ``seed``, ``budget`` (``"fixed"`` or ``"matched"``), ``status``
(:func:`classify_run`) and one column per claim, named ``"<phase>:<split>/<metric>"`` where ``phase`` is ``final``
(the last epoch) or ``early`` (the recorded point at 10% of the sweep's distance budget rate x steps). A claim may
name a *count column*, the number of samples its metric rests on in each run.

How a claim is judged (:func:`evaluate_claims`), per budget, over the runs with ``status == "ok"`` and a finite
value; every run is a point and seeds are the replicates (the statistics are in
:mod:`probe.analyses.claims_stats`):

- ``not measurable`` first, with its ``reason``: no finite value (the analysis did not run, or the dataset has no
  mask, no group large enough), fewer than 2 rates, the same value in every run, or fewer than :data:`MIN_SAMPLES`
  contributing samples in some run (its count column).
- ``spearman`` with ``p_value`` / ``p_value_opposite``: one-sided permutation p-values in the claimed / opposite
  direction; ``p_adjusted`` / ``p_adjusted_opposite``: Holm-adjusted over every judged row of the table (one family
  per direction).
- Effect sizes in the metric's units: ``effect`` = mean of the rate most extreme in the direction of ``spearman``
  minus the lowest rate's mean (``effect_rate`` names that rate; ``effect_low`` / ``effect_high`` its 95% interval:
  bootstrap over seeds with >= 3 seeds at every rate, else t), and ``slope`` per decade of rate with its 95%
  t-interval (``slope_low`` / ``slope_high``), both from the seed-level residuals; ``change`` = slope x the decades
  the rates span, the fitted change across the sweep.
- ``floor``: the smallest effect that matters, declared with the claim (absolute, or relative to the lowest rate's
  mean).
- ``agrees`` / ``disagrees``: at least 3 rates, adjusted p <= 0.05 in the claimed / opposite direction, and
  ``|effect| >= floor`` in that direction. ``no effect``: the equivalence test (two one-sided t-tests at 0.05,
  ``equivalence_p``) puts ``change`` inside ``(-floor, floor)`` and ``|effect| < floor``: across the rates the
  metric moves by less than the smallest effect that matters.
  ``cannot tell`` otherwise.

The matched-budget control (when the table holds both budgets): the fixed-steps sweep is judged a second time over
the matched sweep's rates only (``rates == "matched"``; the full-range rows have ``rates == "all"``), and
``survives_control`` compares that verdict with the matched one: ``yes`` (the matched sweep agrees), ``vanishes``
(no effect at matched budget: the effect follows rate x steps), ``reverses`` (disagrees), ``cannot tell``; ``n/a``
when the fixed sweep does not agree over those rates (there is nothing to control).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from probe.analyses import claims_stats as st
from probe.errors import ProbeInputError

#: significance level of the verdicts (family-wise, after Holm's adjustment) and of the equivalence test.
ALPHA_LEVEL = 0.05
#: a claim resting on fewer samples than this in some run is not measurable.
MIN_SAMPLES = 20
#: a run whose final training accuracy is below this multiple of chance (1/K) has collapsed.
COLLAPSE_FACTOR = 1.5

PHASES = ("final", "early")
DIRECTIONS = ("up", "down")
BUDGETS = ("fixed", "matched")
VERDICTS = ("agrees", "disagrees", "no effect", "cannot tell", "not measurable")
CONTROL_OUTCOMES = ("yes", "vanishes", "reverses", "cannot tell", "n/a")


@dataclass(frozen=True)
class Claim:
    """One prediction of the study.

    Attributes:
        name: short id (``"unbiased_acc_up"``).
        column: run-table column ``"<phase>:<split>/<metric>"``.
        direction: ``"up"`` (rises with the rate) or ``"down"``.
        phase: ``"final"`` or ``"early"`` (the prefix of ``column``).
        description: one plain sentence for the report.
        floor: the smallest effect that matters, in the metric's units (or a fraction of the lowest rate's mean when
            ``relative_floor``).
        relative_floor: ``floor`` is relative to the lowest rate's mean (norms).
        count_column: run-table column holding the number of samples the metric rests on in each run (None: the
            metric has no sample count).
        undefined: why the metric can be NaN in every run (the reason given when it is).
    """

    name: str
    column: str
    direction: str
    phase: str
    description: str
    floor: float = 0.02
    relative_floor: bool = False
    count_column: str | None = None
    undefined: str = "the metric is undefined (NaN) in every ok run"

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ProbeInputError(f"claim {self.name!r}: direction must be one of {DIRECTIONS}, got {self.direction!r}")
        if self.phase not in PHASES or not self.column.startswith(f"{self.phase}:"):
            raise ProbeInputError(f"claim {self.name!r}: column {self.column!r} must start with its phase {PHASES}")
        if not (math.isfinite(self.floor) and self.floor > 0):
            raise ProbeInputError(f"claim {self.name!r}: floor must be a positive number, got {self.floor}")

    @property
    def sign(self) -> int:
        return 1 if self.direction == "up" else -1

    @property
    def floor_text(self) -> str:
        """The floor as the report states it: ``"0.02"`` or ``"10% of the lowest rate's mean"``."""
        return f"{self.floor:.0%} of the lowest rate's mean" if self.relative_floor else f"{self.floor:g}"


#: The claims of SPEC section 5, in report order. Floors: accuracies, shares and fractions 0.02 absolute; norms 10%
#: of the lowest rate's mean; class separation (a difference of mean cosine distances in [0, 1]) 0.02.
CLAIMS: tuple[Claim, ...] = (
    Claim("unbiased_acc_up", "final:test/unbiased_acc", "up", "final",
          "Unbiased test accuracy rises with the learning rate.", count_column="final:test/n"),
    Claim("wga_up", "final:test/wga", "up", "final",
          "Worst-group test accuracy rises with the learning rate.", count_column="final:test/wga_min_group_n",
          undefined="no test group has min_group_size (default 20) samples, so the worst group is undefined"),
    Claim("retention_up", "final:test/retention@0.9", "up", "final",
          "Accuracy kept after pruning 90% of the weights rises with the learning rate.",
          count_column="final:test/n_pruning"),
    Claim("activation_sparsity_up", "final:test/activation_sparsity", "up", "final",
          "Activations get sparser as the learning rate rises.", count_column="final:test/n_sparsity"),
    Claim("probe_core_up", "final:val/probe_core", "up", "final",
          "A linear probe reads the core label from the features better as the learning rate rises.",
          count_column="final:val/n_probe_eval"),
    Claim("probe_gap_up", "final:val/probe_gap", "up", "final",
          "The features favour the core over the spurious attribute more as the learning rate rises "
          "(probe_core - probe_spurious).", count_column="final:val/n_probe_eval"),
    Claim("class_separation_up", "final:test/class_separation", "up", "final",
          "Classes are better separated in feature space as the learning rate rises.",
          count_column="final:test/n_features"),
    Claim("core_attr_share_up", "final:test/core_attr_share@ig", "up", "final",
          "Integrated Gradients put more attribution on the core region as the learning rate rises.",
          count_column="final:test/n_attributed", undefined="the dataset has no core-region mask"),
    Claim("early_logit_norm_up", "early:train/logit_norm", "up", "early",
          "Early in training, logit norms are larger at larger learning rates.", floor=0.1, relative_floor=True,
          count_column="early:train/n"),
    Claim("early_cmr_up", "early:train/cmr@0.9", "up", "early",
          "Early in training, more bias-conflicting samples are confidently mispredicted at larger learning rates.",
          count_column="early:train/n_bc"),
    Claim("early_bc_loss_share_up", "early:train/bc_loss_share", "up", "early",
          "Early in training, bias-conflicting samples carry more of the loss at larger learning rates.",
          count_column="early:train/n_bc"),
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


# --- one claim on one set of runs --------------------------------------------------------------------------------

#: columns of the claims table, in order.
COLUMNS = ["claim", "column", "direction", "budget", "rates", "n_rates", "n_runs", "n_excluded", "min_seeds",
           "min_samples", "spearman", "p_value", "p_value_opposite", "p_adjusted", "p_adjusted_opposite", "effect",
           "effect_low", "effect_high", "effect_interval", "effect_rate", "slope", "slope_low", "slope_high",
           "change", "floor", "equivalence_p", "verdict", "reason", "description"]


def _nan_row() -> dict[str, Any]:
    return {c: float("nan") for c in ("spearman", "p_value", "p_value_opposite", "p_adjusted", "p_adjusted_opposite",
                                      "effect", "effect_low", "effect_high", "effect_rate", "slope", "slope_low",
                                      "slope_high", "change", "floor", "equivalence_p", "min_samples")} | {
        "effect_interval": "", "min_seeds": 0}


def _measure(claim: Claim, rates: np.ndarray, values: np.ndarray, counts: np.ndarray | None,
             n_permutations: int, n_bootstrap: int, present: bool) -> dict[str, Any]:
    """Everything but the adjusted p-values and the verdicts that depend on them; ``verdict`` is set only when the
    claim is not measurable."""
    out = _nan_row()
    n_rates = len(np.unique(rates))
    out.update(n_rates=n_rates, n_runs=len(values), verdict="", reason="")
    if len(values) == 0:
        reason = (claim.undefined if present else
                  f"not computed: its analysis did not run, or does not apply to this dataset ({claim.undefined})")
        out.update(verdict="not measurable", reason=reason)
        return out
    _, _, per_rate = st.rate_means(rates, values)
    out["min_seeds"] = int(per_rate.min())
    if counts is not None and len(counts):
        out["min_samples"] = float(np.nanmin(counts)) if np.isfinite(counts).any() else float("nan")
        if np.isfinite(out["min_samples"]) and out["min_samples"] < MIN_SAMPLES:
            out.update(verdict="not measurable", reason=f"fewer than {MIN_SAMPLES} contributing samples per run "
                       f"(smallest: {out['min_samples']:.0f}, {claim.count_column})")
            return out
    if np.ptp(values) == 0:
        out.update(verdict="not measurable", reason=f"the same value ({values[0]:.4g}) in every run")
        return out
    if n_rates < 2:
        out.update(verdict="not measurable", reason="fewer than 2 learning rates")
        return out
    rho, p_up, p_down = st.rank_correlation_test(rates, values, n_permutations=n_permutations)
    sign = claim.sign
    out.update(spearman=rho, p_value=p_up if sign > 0 else p_down, p_value_opposite=p_down if sign > 0 else p_up)
    var = st.seed_variance(rates, values)
    slope = st.slope_per_decade(rates, values, var)
    direction = sign if not math.isfinite(rho) or rho * sign >= 0 else -sign
    diff, best = st.difference_vs_lowest(rates, values, direction, var, n_bootstrap=n_bootstrap)
    _, means, _ = st.rate_means(rates, values)
    floor = claim.floor * abs(means[0]) if claim.relative_floor else claim.floor
    out.update(effect=diff.value, effect_low=diff.low, effect_high=diff.high, effect_interval=diff.interval,
               effect_rate=best, slope=slope.value, slope_low=slope.low, slope_high=slope.high, floor=floor)
    decades = float(np.log10(rates.max() / rates.min()))
    change = st.Estimate(slope.value * decades, slope.se * decades, slope.df, slope.low * decades,
                         slope.high * decades, slope.interval)
    out["change"] = change.value
    if floor > 0:
        out["equivalence_p"] = st.equivalence_p(change, floor)
    return out


def _verdict(claim: Claim, row: dict[str, Any]) -> tuple[str, str]:
    """The verdict and its reason from a measured row with adjusted p-values."""
    if row["verdict"] == "not measurable":
        return row["verdict"], row["reason"]
    floor, effect = row["floor"], row["effect"]
    said = f"effect {effect:+.3g} vs floor {floor:.3g}"
    if row["n_rates"] < 3:
        return "cannot tell", f"only {row['n_rates']} rates (at least 3 are needed)"
    small = ""
    for name, p, sign in (("agrees", row["p_adjusted"], claim.sign), ("disagrees", row["p_adjusted_opposite"],
                                                                      -claim.sign)):
        if math.isfinite(p) and p <= ALPHA_LEVEL:
            if sign * effect >= floor:
                return name, f"adjusted p {p:.2g}; {said}"
            small = f"adjusted p {p:.2g}, but the effect is below the floor; "
    tost = row["equivalence_p"]
    if math.isfinite(tost) and tost <= ALPHA_LEVEL and abs(effect) < floor:
        return "no effect", (f"{small}equivalence p {tost:.2g}: the fitted change across the rates "
                             f"({row['change']:+.3g}) and the {said} lie inside the floor")
    p = min(row["p_adjusted"], row["p_adjusted_opposite"])
    return "cannot tell", small + (f"adjusted p {p:.2g}; " if not small else "") + \
        f"{said}; equivalence p {tost:.2g}"


def _points(claim: Claim, columns: dict[str, np.ndarray], axis: str) -> tuple[np.ndarray, np.ndarray,
                                                                              np.ndarray | None]:
    """The rates, finite values and sample counts of one claim from the numeric ``columns`` of some runs."""
    if claim.column not in columns:
        return np.empty(0), np.empty(0), None
    values = columns[claim.column]
    keep = np.isfinite(values)
    counts = columns[claim.count_column][keep] if claim.count_column in columns else None
    return columns[axis][keep], values[keep], counts


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


def evaluate_claims(run_table: Any, claims: Any = CLAIMS, axis: str = "lr", *,
                    n_permutations: int = st.N_PERMUTATIONS, n_bootstrap: int = st.N_BOOTSTRAP):
    """Judge a sweep against the claims (see the module doc for every statistic and the verdict rule).

    Args:
        run_table: ``pandas.DataFrame``, one row per run, with columns ``run``, ``axis``, ``seed``, ``budget``
            (default ``"fixed"``), ``status`` (default ``"ok"``), the claims' columns and their count columns.
        claims: the claims to judge (default :data:`CLAIMS`).
        axis: the sweep axis column (default ``"lr"``).
        n_permutations: Monte-Carlo permutations of the rank-correlation test.
        n_bootstrap: bootstrap resamples of the effect interval (0: t-intervals only; no verdict depends on it).

    Returns:
        ``pandas.DataFrame`` with :data:`COLUMNS`, one row per claim, budget and rate range present (the fixed
        budget over the matched rates is added when both budgets are present), plus ``survives_control`` (the same
        value on every row of a claim) when both budgets are present.
    """
    import pandas as pd

    table = _normalise_table(run_table, axis)
    numeric = {axis} | {c for claim in claims for c in (claim.column, claim.count_column) if c in table.columns}
    for column in numeric - {axis}:
        table[column] = pd.to_numeric(table[column], errors="coerce")
    budgets = [b for b in BUDGETS if (table["budget"] == b).any()]
    both = set(budgets) == set(BUDGETS)
    scopes = [(b, "all") for b in budgets] + ([("fixed", "matched")] if both else [])
    matched_rates = np.unique(table.loc[table["budget"] == "matched", axis]) if both else None
    rows = []
    for budget, rates_scope in scopes:
        part = table[table["budget"] == budget]
        if rates_scope == "matched":
            part = part[np.isin(part[axis].to_numpy(dtype=np.float64), matched_rates)]
        ok = part[part["status"] == "ok"]
        columns = {c: ok[c].to_numpy(dtype=np.float64) for c in numeric}
        for claim in claims:
            rates, values, counts = _points(claim, columns, axis)
            row = {"claim": claim.name, "column": claim.column, "direction": claim.direction, "budget": budget,
                   "rates": rates_scope, "n_excluded": int(len(part) - len(ok)), "description": claim.description}
            present = claim.column in columns and len(columns[claim.column]) > 0
            row.update(_measure(claim, rates, values, counts, n_permutations, n_bootstrap, present))
            rows.append(row)
    order = {c.name: i for i, c in enumerate(claims)}
    rows.sort(key=lambda r: order[r["claim"]])  # claim by claim, scopes in order (a stable sort)
    result = pd.DataFrame(rows, columns=COLUMNS)
    if result.empty:
        return result
    result["p_adjusted"] = st.holm(result["p_value"].to_numpy(dtype=np.float64))
    result["p_adjusted_opposite"] = st.holm(result["p_value_opposite"].to_numpy(dtype=np.float64))
    by_name = {c.name: c for c in claims}
    verdicts = [_verdict(by_name[r["claim"]], r) for r in result.to_dict(orient="records")]
    result["verdict"] = [v for v, _ in verdicts]
    result["reason"] = [r for _, r in verdicts]
    if both:
        index = result.set_index(["claim", "budget", "rates"])["verdict"]
        result["survives_control"] = [survives_control(index[(name, "fixed", "matched")],
                                                       index[(name, "matched", "all")]) for name in result["claim"]]
    return result


def survives_control(fixed_over_matched_rates: str, matched: str) -> str:
    """The control's outcome from the fixed-steps verdict over the matched rates and the matched-budget verdict."""
    if fixed_over_matched_rates != "agrees":
        return "n/a"
    return {"agrees": "yes", "no effect": "vanishes", "disagrees": "reverses"}.get(matched, "cannot tell")


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
