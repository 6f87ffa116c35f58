"""Claims on run tables whose answer is known: verdict rules, sample sizes, the control, and calibration over
simulated sweeps (how often a verdict is wrong or missed)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from probe.analyses.claims import (
    CLAIMS,
    MIN_SAMPLES,
    Claim,
    classify_run,
    evaluate_claims,
    failures_table,
    survives_control,
)
from probe.errors import ProbeInputError

RATES = [0.01, 0.03, 0.1, 0.3, 1.0]
COL = "final:test/unbiased_acc"
CLAIM = [c for c in CLAIMS if c.column == COL]
#: a typical level and seed spread of each claim's metric (norms around 5, everything else a fraction).
LEVEL = {c.name: (5.0 if c.relative_floor else 0.5) for c in CLAIMS}


def _table(values_fn, rates=RATES, seeds=(0, 1, 2), budget="fixed", seed=0, column=COL):
    rng = np.random.default_rng(seed)
    rows = []
    for i, lr in enumerate(rates):
        for s in seeds:
            rows.append({"run": f"{budget}_lr{lr}_s{s}", "lr": lr, "seed": s, "budget": budget, "status": "ok",
                         column: values_fn(i, rng)})
    return pd.DataFrame(rows)


def _row(result, claim="unbiased_acc_up", budget="fixed", rates="all"):
    row = result[(result.claim == claim) & (result.budget == budget) & (result.rates == rates)]
    assert len(row) == 1
    return row.iloc[0]


def _sweep(rng, effect_in_sd, sd_in_floors, budget="fixed", rates=RATES, seeds=3):
    """One simulated run table for every claim: metric = level + effect x (position of the rate in [0, 1]) + seed
    noise. The seed spread is ``sd_in_floors`` times the claim's floor (0.02, or 10% of the level for norms) and the
    effect across the range ``effect_in_sd`` seed spreads; every run has 100 contributing samples."""
    rows = []
    pos = np.linspace(0, 1, len(rates))
    for i, lr in enumerate(rates):
        for s in range(seeds):
            row = {"run": f"{budget}-{lr}-{s}", "lr": lr, "seed": s, "budget": budget, "status": "ok"}
            for c in CLAIMS:
                sd = sd_in_floors * c.floor * (LEVEL[c.name] if c.relative_floor else 1.0)
                row[c.column] = LEVEL[c.name] + effect_in_sd * sd * pos[i] + rng.normal(0, sd)
                row[c.count_column] = 100
            rows.append(row)
    return pd.DataFrame(rows)


# --- verdict rules ---------------------------------------------------------------------------------------------------


def test_claims_cover_spec_columns():
    assert [c.column for c in CLAIMS] == [
        "final:test/unbiased_acc", "final:test/wga", "final:test/retention@0.9", "final:test/activation_sparsity",
        "final:val/probe_core", "final:val/probe_gap", "final:test/class_separation",
        "final:test/core_attr_share@ig", "early:train/logit_norm", "early:train/cmr@0.9",
        "early:train/bc_loss_share",
    ]
    assert all(c.direction == "up" and c.column.startswith(c.phase + ":") for c in CLAIMS)
    assert all(c.count_column for c in CLAIMS)
    norm = next(c for c in CLAIMS if c.name == "early_logit_norm_up")
    assert norm.relative_floor and norm.floor == 0.1 and norm.floor_text == "10% of the lowest rate's mean"
    assert {c.floor for c in CLAIMS if not c.relative_floor} == {0.02}
    with pytest.raises(ProbeInputError):
        Claim("x", "final:test/wga", "sideways", "final", "")
    with pytest.raises(ProbeInputError):
        Claim("x", "final:test/wga", "up", "early", "")
    with pytest.raises(ProbeInputError, match="floor"):
        Claim("x", "final:test/wga", "up", "final", "", floor=0.0)


def test_clear_rise_agrees_with_effect_and_intervals():
    table = _table(lambda i, rng: 0.2 + 0.1 * i + rng.normal(0, 0.01))
    row = _row(evaluate_claims(table, CLAIM))
    assert row.verdict == "agrees", row.reason
    assert row.n_rates == 5 and row.n_runs == 15 and row.n_excluded == 0 and row.min_seeds == 3
    assert row.effect_rate == 1.0 and row.effect == pytest.approx(0.4, abs=0.02)
    assert row.effect_interval == "bootstrap" and row.effect_low <= row.effect <= row.effect_high
    assert row.slope_low < row.slope < row.slope_high and row.slope == pytest.approx(0.2, abs=0.02)
    assert row.p_value < 0.001 and row.p_adjusted == row.p_value  # one claim, one budget: a family of one


def test_reversed_disagrees():
    table = _table(lambda i, rng: 0.9 - 0.1 * i + rng.normal(0, 0.01))
    row = _row(evaluate_claims(table, CLAIM))
    assert row.verdict == "disagrees" and row.effect < -0.02 and row.p_value_opposite < 0.001


def test_noise_cannot_tell():
    row = _row(evaluate_claims(_table(lambda i, rng: rng.normal(0.5, 0.1), seed=7), CLAIM))
    assert row.verdict == "cannot tell" and row.effect_low <= row.effect <= row.effect_high


def test_tiny_significant_trend_is_not_agrees():
    """Rate means 0.150 ... 0.155 over 6 rates, 2 seeds: a perfect ordering, but far below the 0.02 floor."""
    rates = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0]
    table = _table(lambda i, rng: 0.150 + 0.001 * i + rng.normal(0, 0.0002), rates=rates, seeds=(0, 1))
    row = _row(evaluate_claims(table, CLAIM))
    assert row.spearman > 0.9 and row.p_adjusted <= 0.05
    assert row.verdict == "no effect", row.reason
    assert "below the floor" in row.reason
    assert row.effect_interval == "t"  # 2 seeds: no bootstrap interval


def test_down_claim_follows_direction():
    down = Claim("loss_down", COL, "down", "final", "falls")
    table = _table(lambda i, rng: 0.9 - 0.1 * i + rng.normal(0, 0.01))
    assert evaluate_claims(table, [down]).iloc[0].verdict == "agrees"


def test_relative_floor_of_norms():
    norm = next(c for c in CLAIMS if c.name == "early_logit_norm_up")
    small = _table(lambda i, rng: 10.0 + 0.1 * i + rng.normal(0, 0.01), column=norm.column)  # +4%: under 10%
    big = _table(lambda i, rng: 10.0 + 1.0 * i + rng.normal(0, 0.01), column=norm.column)  # +40%
    assert _row(evaluate_claims(small, [norm]), norm.name).floor == pytest.approx(1.0, rel=0.01)
    assert _row(evaluate_claims(small, [norm]), norm.name).verdict == "no effect"
    assert _row(evaluate_claims(big, [norm]), norm.name).verdict == "agrees"


def test_one_seed_uses_exact_permutation():
    table = _table(lambda i, rng: 0.1 * i, seeds=(0,))
    row = _row(evaluate_claims(table, CLAIM))
    assert row.p_value == pytest.approx(1 / math.factorial(5))  # exact: one ordering of 5! is as extreme
    assert row.verdict == "agrees" and row.effect_interval == "t"  # one run per rate: residuals of the line
    three = _table(lambda i, rng: 0.1 * i, rates=RATES[:3], seeds=(0,))
    row = _row(evaluate_claims(three, CLAIM))
    assert row.spearman == pytest.approx(1.0) and row.p_value == pytest.approx(1 / 6)
    assert row.verdict == "cannot tell"


# --- not measurable ----------------------------------------------------------------------------------------------


def test_wga_zero_everywhere_is_not_measurable():
    wga = next(c for c in CLAIMS if c.name == "wga_up")
    table = _table(lambda i, rng: 0.0, column=wga.column)
    row = _row(evaluate_claims(table, [wga]), "wga_up")
    assert row.verdict == "not measurable" and "same value (0) in every run" in row.reason


def test_too_few_samples_is_not_measurable():
    cmr = next(c for c in CLAIMS if c.name == "early_cmr_up")
    table = _table(lambda i, rng: 0.1 * i + rng.normal(0, 0.01), column=cmr.column)
    table[cmr.count_column] = 9
    row = _row(evaluate_claims(table, [cmr]), "early_cmr_up")
    assert row.verdict == "not measurable" and row.min_samples == 9
    assert f"fewer than {MIN_SAMPLES} contributing samples" in row.reason and cmr.count_column in row.reason
    table[cmr.count_column] = 44
    assert _row(evaluate_claims(table, [cmr]), "early_cmr_up").verdict == "agrees"


def test_missing_metric_is_not_measurable_with_reason():
    result = evaluate_claims(_table(lambda i, rng: np.nan)).set_index("claim")
    assert set(result.verdict) == {"not measurable"} and len(result) == len(CLAIMS)
    assert result.loc["unbiased_acc_up", "reason"] == "the metric is undefined (NaN) in every ok run"
    assert "not computed" in result.loc["wga_up", "reason"]
    wga = next(c for c in CLAIMS if c.name == "wga_up")
    undefined = evaluate_claims(_table(lambda i, rng: np.nan, column=wga.column), [wga]).iloc[0]
    assert undefined.verdict == "not measurable" and "min_group_size" in undefined.reason
    assert "survives_control" not in result.columns


def test_failed_runs_excluded_but_listed():
    table = _table(lambda i, rng: 0.2 + 0.1 * i + rng.normal(0, 0.01))
    bad = pd.DataFrame([
        {"run": "lr3", "lr": 3.0, "seed": 0, "budget": "fixed", "status": "diverged", COL: 0.0,
         "diverged_epoch": 2, "diverged_step": 57},
        {"run": "lr2", "lr": 2.0, "seed": 0, "budget": "fixed", "status": "collapsed", COL: 0.1},
    ])
    full = pd.concat([table, bad], ignore_index=True)
    row = _row(evaluate_claims(full, CLAIM))
    assert row.verdict == "agrees" and row.n_runs == 15 and row.n_rates == 5 and row.n_excluded == 2
    failures = failures_table(full)
    assert list(failures["run"]) == ["lr2", "lr3"]
    assert list(failures["status"]) == ["collapsed", "diverged"]
    assert failures.loc[1, "diverged_epoch"] == 2 and failures.loc[1, "diverged_step"] == 57
    assert math.isnan(failures.loc[0, "diverged_epoch"])
    assert failures_table(table).empty


# --- the control ---------------------------------------------------------------------------------------------------


def test_control_outcomes():
    assert survives_control("agrees", "agrees") == "yes"
    assert survives_control("agrees", "no effect") == "vanishes"
    assert survives_control("agrees", "disagrees") == "reverses"
    assert survives_control("agrees", "cannot tell") == "cannot tell"
    assert survives_control("agrees", "not measurable") == "cannot tell"
    assert survives_control("no effect", "agrees") == "n/a"


def test_matched_budget_control_over_the_same_rates():
    """The fixed sweep rises only below rate 0.1; the matched sweep covers 0.1 ... 1 and is flat there. Over the
    full range the fixed sweep agrees, over the matched rates it does not: nothing to control (n/a)."""
    fixed = _table(lambda i, rng: 0.2 + 0.2 * min(i, 2) + rng.normal(0, 0.005))
    matched = _table(lambda i, rng: 0.6 + rng.normal(0, 0.005), rates=RATES[2:], budget="matched", seed=5)
    result = evaluate_claims(pd.concat([fixed, matched], ignore_index=True), CLAIM)
    assert set(zip(result.budget, result.rates)) == {("fixed", "all"), ("matched", "all"), ("fixed", "matched")}
    assert _row(result).verdict == "agrees"
    restricted = _row(result, rates="matched")
    assert restricted.n_rates == 3 and restricted.verdict != "agrees"
    assert set(result["survives_control"]) == {"n/a"}


def test_matched_budget_control_verdicts():
    fixed = _table(lambda i, rng: 0.2 + 0.1 * i + rng.normal(0, 0.005))
    for matched_fn, expected in [
        (lambda i, rng: 0.3 + 0.05 * i + rng.normal(0, 0.005), "yes"),
        (lambda i, rng: 0.6 + rng.normal(0, 0.003), "vanishes"),
        (lambda i, rng: 0.9 - 0.1 * i + rng.normal(0, 0.005), "reverses"),
        (lambda i, rng: rng.normal(0.5, 0.1), "cannot tell"),
    ]:
        matched = _table(matched_fn, budget="matched", seed=7)
        result = evaluate_claims(pd.concat([fixed, matched], ignore_index=True), CLAIM)
        assert set(result["survives_control"]) == {expected}, result[["budget", "rates", "verdict", "reason"]]


# --- calibration over simulated sweeps ---------------------------------------------------------------------------

N_SWEEPS = 400


@pytest.mark.slow
def test_calibration_no_effect_rarely_agrees():
    """No claim depends on the rate (5 rates x 3 seeds, seed noise only): some claim of the report `agrees` in at
    most 7% of 400 sweeps (5% family-wise, plus sampling error)."""
    rng = np.random.default_rng(11)
    any_agrees = any_disagrees = 0
    for _ in range(N_SWEEPS):
        result = evaluate_claims(_sweep(rng, 0.0, 1.0), n_permutations=999, n_bootstrap=0)
        any_agrees += bool((result.verdict == "agrees").any())
        any_disagrees += bool((result.verdict == "disagrees").any())
    assert any_agrees / N_SWEEPS <= 0.07
    assert any_disagrees / N_SWEEPS <= 0.07


@pytest.mark.slow
def test_calibration_effect_of_three_seed_sds_agrees():
    """Every claim rises by 3 seed standard deviations across the range, the seed spread being one floor (0.02, or
    10% of the level for norms): each claim `agrees` in at least 80% of 400 sweeps. (With the other claims flat, one
    claim's power is lower, about 75%: Holm's first step asks p <= 0.05 / 11; docs/analyze.md gives the figures of
    benchmarks/claims_calibration.py.)"""
    rng = np.random.default_rng(12)
    agrees = {c.name: 0 for c in CLAIMS}
    for _ in range(N_SWEEPS):
        result = evaluate_claims(_sweep(rng, 3.0, 1.0), n_permutations=999, n_bootstrap=0)
        for name in result.loc[result.verdict == "agrees", "claim"]:
            agrees[name] += 1
    rates = {k: v / N_SWEEPS for k, v in agrees.items()}
    assert min(rates.values()) >= 0.8, rates


@pytest.mark.slow
def test_calibration_matched_flat_vanishes():
    """The fixed sweep rises by 3 floors across the range while the matched one is flat, both with a seed spread of
    a quarter floor: `vanishes` in at least 80% of 400 sweeps for every claim. (An equivalence test can only say
    "no effect" when the seed noise is small against the floor.)"""
    rng = np.random.default_rng(13)
    vanishes = {c.name: 0 for c in CLAIMS}
    for _ in range(N_SWEEPS):
        table = pd.concat([_sweep(rng, 12.0, 0.25), _sweep(rng, 0.0, 0.25, budget="matched")], ignore_index=True)
        result = evaluate_claims(table, n_permutations=999, n_bootstrap=0)
        fixed_rows = result[(result.budget == "fixed") & (result.rates == "all")]
        for name, outcome in zip(fixed_rows.claim, fixed_rows.survives_control):
            vanishes[name] += outcome == "vanishes"
    rates = {k: v / N_SWEEPS for k, v in vanishes.items()}
    assert min(rates.values()) >= 0.8, rates


# --- input --------------------------------------------------------------------------------------------------------


def test_bad_tables():
    with pytest.raises(ProbeInputError, match="lr"):
        evaluate_claims(pd.DataFrame({"run": ["a"]}))
    with pytest.raises(ProbeInputError, match="budget"):
        evaluate_claims(pd.DataFrame({"run": ["a"], "lr": [0.1], "budget": ["weird"]}))
    with pytest.raises(ProbeInputError):
        evaluate_claims([{"lr": 0.1}])


def test_classify_run():
    assert classify_run(0.99, 10, diverged=True) == "diverged"
    assert classify_run(0.14, 10, diverged=False) == "collapsed"  # below 1.5 x 0.1
    assert classify_run(0.16, 10, diverged=False) == "ok"
    assert classify_run(0.74, 2, diverged=False) == "collapsed"
    assert classify_run(0.95, 2, diverged=False) == "ok"
    with pytest.raises(ProbeInputError):
        classify_run(float("nan"), 10, diverged=False)
