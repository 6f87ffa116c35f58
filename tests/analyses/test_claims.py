"""Claims on synthetic run tables whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from probe.analyses.claims import CLAIMS, Claim, classify_run, evaluate_claims, failures_table
from probe.errors import ProbeInputError

RATES = [0.01, 0.03, 0.1, 0.3, 1.0]
COL = "final:test/unbiased_acc"
CLAIM = [c for c in CLAIMS if c.column == COL]


def _table(values_fn, rates=RATES, seeds=(0, 1, 2), budget="fixed", seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i, lr in enumerate(rates):
        for s in seeds:
            rows.append({"run": f"{budget}_lr{lr}_s{s}", "lr": lr, "seed": s, "budget": budget, "status": "ok",
                         COL: values_fn(i, rng)})
    return pd.DataFrame(rows)


def _one(result, budget="fixed"):
    row = result[(result.claim == "unbiased_acc_up") & (result.budget == budget)]
    assert len(row) == 1
    return row.iloc[0]


def test_claims_cover_spec_columns():
    assert [c.column for c in CLAIMS] == [
        "final:test/unbiased_acc", "final:test/wga", "final:test/retention@0.9", "final:test/activation_sparsity",
        "final:val/probe_core", "final:val/probe_gap", "final:test/class_separation",
        "final:test/core_attr_share@ig", "early:train/logit_norm", "early:train/cmr@0.9",
        "early:train/bc_loss_share",
    ]
    assert all(c.direction == "up" and c.column.startswith(c.phase + ":") for c in CLAIMS)
    with pytest.raises(ProbeInputError):
        Claim("x", "final:test/wga", "sideways", "final", "")
    with pytest.raises(ProbeInputError):
        Claim("x", "final:test/wga", "up", "early", "")


def test_monotone_agrees_with_seeds():
    table = _table(lambda i, rng: 0.2 + 0.1 * i + rng.normal(0, 0.01))
    row = _one(evaluate_claims(table, CLAIM))
    assert row.verdict == "agrees"
    assert row.n_rates == 5 and row.n_runs == 15 and row.n_excluded == 0
    assert row.spearman == pytest.approx(spearmanr(table.lr, table[COL]).statistic)
    # the within-rate resamples duplicate values, which adds ties: the interval can sit just above the estimate
    assert 0.5 < row.ci_low <= row.ci_high <= 1.0
    assert row.p_value < 0.001
    assert "bootstrap" in row.uncertainty


def test_reversed_disagrees():
    table = _table(lambda i, rng: 0.9 - 0.1 * i + rng.normal(0, 0.01))
    row = _one(evaluate_claims(table, CLAIM))
    assert row.verdict == "disagrees"
    assert row.ci_high < 0 and row.p_value_opposite < 0.05


def test_noise_cannot_tell():
    table = _table(lambda i, rng: rng.normal(0.5, 0.1), seed=7)
    row = _one(evaluate_claims(table, CLAIM))
    assert row.verdict == "cannot tell"
    assert row.ci_low < 0 < row.ci_high


def test_down_claim_follows_direction():
    down = Claim("loss_down", COL, "down", "final", "falls")
    table = _table(lambda i, rng: 0.9 - 0.1 * i + rng.normal(0, 0.01))
    result = evaluate_claims(table, [down])
    assert result.iloc[0].verdict == "agrees"


def test_one_seed_uses_exact_permutation():
    table = _table(lambda i, rng: 0.1 * i, seeds=(0,))
    row = _one(evaluate_claims(table, CLAIM))
    assert row.p_value == pytest.approx(1 / math.factorial(5))  # exact: one ordering of 5! is as extreme
    assert row.verdict == "agrees" and math.isnan(row.ci_low) and "permutation" in row.uncertainty
    three = _table(lambda i, rng: 0.1 * i, rates=RATES[:3], seeds=(0,))
    row = _one(evaluate_claims(three, CLAIM))
    assert row.spearman == pytest.approx(1.0)
    assert row.p_value == pytest.approx(1 / 6) and row.verdict == "cannot tell"


def test_failed_runs_excluded_but_listed():
    table = _table(lambda i, rng: 0.2 + 0.1 * i + rng.normal(0, 0.01))
    bad = pd.DataFrame([
        {"run": "lr3", "lr": 3.0, "seed": 0, "budget": "fixed", "status": "diverged", COL: 0.0,
         "diverged_epoch": 2, "diverged_step": 57},
        {"run": "lr2", "lr": 2.0, "seed": 0, "budget": "fixed", "status": "collapsed", COL: 0.1},
    ])
    full = pd.concat([table, bad], ignore_index=True)
    row = _one(evaluate_claims(full, CLAIM))
    assert row.verdict == "agrees" and row.n_runs == 15 and row.n_rates == 5 and row.n_excluded == 2
    failures = failures_table(full)
    assert list(failures["run"]) == ["lr2", "lr3"]
    assert list(failures["status"]) == ["collapsed", "diverged"]
    assert failures.loc[1, "diverged_epoch"] == 2 and failures.loc[1, "diverged_step"] == 57
    assert math.isnan(failures.loc[0, "diverged_epoch"])
    assert failures_table(table).empty


def test_not_measured():
    table = _table(lambda i, rng: np.nan)
    result = evaluate_claims(table)
    assert set(result.verdict) == {"not measured"}
    assert len(result) == len(CLAIMS)
    assert "survives_control" not in result.columns


def test_matched_budget_control():
    fixed = _table(lambda i, rng: 0.2 + 0.1 * i + rng.normal(0, 0.01))
    for matched_fn, expected in [
        (lambda i, rng: 0.3 + 0.05 * i + rng.normal(0, 0.01), "yes"),
        (lambda i, rng: 0.9 - 0.1 * i + rng.normal(0, 0.01), "no"),
        (lambda i, rng: rng.normal(0.5, 0.1), "cannot tell"),
    ]:
        matched = _table(matched_fn, budget="matched", seed=7)
        result = evaluate_claims(pd.concat([fixed, matched], ignore_index=True), CLAIM)
        assert set(result.budget) == {"fixed", "matched"}
        assert set(result["survives_control"]) == {expected}
    flat_fixed = _table(lambda i, rng: rng.normal(0.5, 0.1), seed=7)
    matched = _table(lambda i, rng: 0.1 * i, budget="matched")
    result = evaluate_claims(pd.concat([flat_fixed, matched], ignore_index=True), CLAIM)
    assert set(result["survives_control"]) == {"n/a"}


def test_constant_metric_cannot_tell():
    row = _one(evaluate_claims(_table(lambda i, rng: 0.5), CLAIM))
    assert row.verdict == "cannot tell" and math.isnan(row.spearman)


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
