"""Figures of the report, checked on constructed tables against values computed here."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from probe.report.figures import (
    claim_columns,
    claims_wide,
    dynamics,
    metric_over_training,
    proposition_panels,
    rate_summary,
    save_figure,
    sweep_overview,
)

RATES = [0.01, 0.1, 1.0, 3.0]


@pytest.fixture
def runs() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for budget, rates in (("fixed", RATES), ("matched", [0.1, 1.0])):
        for lr in rates:
            for seed in (0, 1, 2):
                status = "diverged" if lr == 3.0 else ("collapsed" if (lr, seed) == (1.0, 2) else "ok")
                rows.append({"run": f"{budget}/lr{lr}_s{seed}", "lr": lr, "seed": seed, "budget": budget,
                             "status": status, "final:test/unbiased_acc": np.log10(lr) + rng.normal(0, 0.1),
                             "early:train/logit_norm": lr * 10 + seed})
    return pd.DataFrame(rows)


def test_rate_summary_matches_pandas_over_ok_runs(runs):
    summary = rate_summary(runs, "final:test/unbiased_acc")
    ok = runs[runs["status"] == "ok"]
    for _, row in summary.iterrows():
        vals = ok[(ok["budget"] == row["budget"]) & (ok["lr"] == row["lr"])]["final:test/unbiased_acc"].to_numpy()
        assert row["n"] == len(vals)
        assert row["mean"] == pytest.approx(vals.mean())
        assert row["std"] == pytest.approx(vals.std(ddof=1) if len(vals) > 1 else 0.0)
    assert 3.0 not in set(summary["lr"])  # the diverged rate has no ok run


def test_overview_plots_seed_means_and_marks_failures(runs, tmp_path):
    assert claim_columns(runs) == ["final:test/unbiased_acc", "early:train/logit_norm"]
    fig = sweep_overview(runs)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_title() == "final:test/unbiased_acc"
    summary = rate_summary(runs, "final:test/unbiased_acc")
    fixed = summary[summary["budget"] == "fixed"]
    line = ax.lines[0]
    np.testing.assert_allclose(np.asarray(line.get_xdata(), float), fixed["lr"].to_numpy(float))
    np.testing.assert_allclose(np.asarray(line.get_ydata(), float), fixed["mean"].to_numpy(float))
    labels = [t.get_text() for t in ax.texts]
    assert "diverged 3/3" in labels and "collapsed 1/3" in labels
    lo, hi = ax.get_xlim()
    assert lo < 0.01 and hi > 3.0  # the diverged rate is on the axis
    path = save_figure(fig, tmp_path / "o.png")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 400


def _epochs_table() -> pd.DataFrame:
    rows = []
    for lr in (0.1, 1.0):
        for epoch, step in ((0, 0), (1, 10), (2, 20)):
            for split, metric, value in (("test", "acc_bc", epoch * lr), ("train", "logit_norm_ba", step * lr),
                                         ("train", "logit_norm_bc", 2 * step * lr), ("model", "param_norm", 1 + lr),
                                         ("train", "bc_loss_share", 0.1), ("sgd", "bc_loss_share", 0.2)):
                rows.append({"run": f"lr{lr}", "sweep": "s", "lr": lr, "seed": 0, "budget": "fixed", "epoch": epoch,
                             "step": step, "analysis": "x", "split": split, "metric": metric, "value": value})
    return pd.DataFrame(rows)


def test_metric_over_training_one_line_per_run():
    ax = metric_over_training(_epochs_table(), "logit_norm_bc", "train")
    assert len(ax.lines) == 2
    for line in ax.lines:
        lr = float(line.get_label().split()[1])
        np.testing.assert_allclose(np.asarray(line.get_ydata(), float), 2 * np.array([0, 10, 20]) * lr)
    assert ax.get_xscale() == "symlog"


def test_dynamics_panels_show_what_is_measured():
    fig = dynamics(_epochs_table())
    by_title = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
    assert len(by_title["train logit_norm_ba (dashed) and logit_norm_bc (solid)"].lines) == 4
    assert len(by_title["bc_loss_share: train split (solid), SGD minibatches (dotted)"].lines) == 4
    missing = by_title["train cmr@0.9"]
    assert not missing.lines and "not measured" in missing.texts[0].get_text()


def test_proposition_panels_and_claims_wide():
    alphas = np.geomspace(0.01, 100, 9)
    curves = pd.DataFrame({"run": "r", "lr": 0.1, "phase": "final", "epoch": 3, "alpha": alphas,
                           "log_ratio": 0.5 * alphas})
    prop = pd.DataFrame({"run": ["r", "r"], "lr": [0.1, 0.1], "epoch": [1, 3], "fitted_rate": [0.5, 1.0],
                         "min_ba_margin": [0.5, 1.0], "rate_rel_error": [0.0, 0.001], "applicable": [1.0, 1.0]})
    norm = pd.DataFrame({"run": ["r", "r"], "lr": [0.1, 0.1], "epoch": [1, 3], "logit_norm": [1.0, 5.0],
                         "bc_ba_loss_ratio": [2.0, 50.0]})
    fig = proposition_panels(curves, prop, norm)
    ax_r, ax_fit, ax_norm = fig.axes[:3]
    np.testing.assert_allclose(np.asarray(ax_r.lines[0].get_ydata(), float), 0.5 * alphas)
    assert "fitted" not in ax_fit.get_title()  # fitted_rate = min_ba_margin is an identity, never drawn
    np.testing.assert_allclose(np.asarray(ax_norm.lines[0].get_xdata(), float), [1.0, 5.0])

    claims = pd.DataFrame({"claim": ["a", "a"], "column": ["final:test/wga"] * 2, "description": ["d"] * 2,
                           "budget": ["fixed", "matched"], "verdict": ["agrees", "cannot tell"],
                           "spearman": [0.9, 0.2], "ci_low": [0.5, np.nan], "ci_high": [1.0, np.nan],
                           "p_value": [0.01, 0.4], "n_rates": [4, 3], "n_runs": [8, 3], "n_excluded": [0, 0],
                           "survives_control": ["cannot tell"] * 2})
    wide = claims_wide(claims)
    assert len(wide) == 1
    row = wide.iloc[0]
    assert (row["verdict_fixed"], row["verdict_matched"], row["survives_control"]) == ("agrees", "cannot tell",
                                                                                       "cannot tell")


def test_a_metric_undefined_in_every_run_says_so():
    """wga is NaN when no group reaches min_group_size: its dynamics panel says so instead of staying blank."""
    from probe.report.figures import metric_over_training

    epochs = pd.DataFrame({"run": ["a", "a"], "sweep": "s", "lr": 0.1, "seed": 0, "budget": "fixed",
                           "epoch": [0, 1], "step": [0, 10], "analysis": "groups", "split": "test",
                           "metric": "wga", "value": [np.nan, np.nan]})
    ax = metric_over_training(epochs, "wga", "test")
    assert [t.get_text() for t in ax.texts] == ["test/wga undefined (NaN) in every run"] and not ax.lines
