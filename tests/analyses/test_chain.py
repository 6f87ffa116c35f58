"""The mechanism chain: its statistics against scipy and brute force, its lags on constructed curves whose lag is
known, each link's verdict on constructed runs, and the tables ``analyze`` writes."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest, permutation_test, rankdata, spearmanr

from probe.analyses.chain import (
    CHAIN_COLUMNS,
    CHAIN_RUN_COLUMNS,
    chain_curves,
    half_rise,
    lag_verdict,
    mechanism_chain,
    peak,
    sign_test_p,
    spearman_permutation_p,
    spearman_rho,
)
from probe.errors import ProbeInputError

STEPS_PER_EPOCH = 10


def logistic(d: np.ndarray, centre: float, width: float = 1.0) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(d - centre) / width))


def run_rows(run: str, lr: float, curves: dict[tuple[str, str], np.ndarray], *, seed: int = 0,
             budget: str = "fixed") -> list[dict]:
    """Epochs-table rows of one run recorded every epoch (``STEPS_PER_EPOCH`` steps); ``curves[(split, metric)]``
    holds one value per epoch (the ``sgd`` value of epoch 0 is dropped: no minibatch before training)."""
    rows = []
    for (split, metric), values in curves.items():
        for epoch, value in enumerate(values):
            if split == "sgd" and epoch == 0:
                continue
            rows.append({"run": run, "sweep": "s", "lr": lr, "seed": seed, "budget": budget, "epoch": epoch,
                         "step": epoch * STEPS_PER_EPOCH, "analysis": "losses", "split": split, "metric": metric,
                         "value": float(value)})
    return rows


def tables(runs: list[tuple[str, float, dict, int, str, str]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Epochs and run tables from ``(run, lr, curves, seed, budget, status)``."""
    rows, run_table = [], []
    for name, lr, curves, seed, budget, status in runs:
        rows += run_rows(name, lr, curves, seed=seed, budget=budget)
        n = max(len(v) for v in curves.values())
        run_table.append({"run": name, "sweep": "s", "lr": lr, "seed": seed, "budget": budget, "status": status,
                          "final_step": (n - 1) * STEPS_PER_EPOCH})
    return pd.DataFrame(rows), pd.DataFrame(run_table)


def one_run(curves: dict, lr: float = 0.1, status: str = "ok") -> pd.DataFrame:
    chain, chain_runs = mechanism_chain(*tables([("r", lr, curves, 0, "fixed", status)]))
    return chain_runs.set_index("link")


def chain_run_curves(n: int, lr: float, *, cmr_at: float, share_at: float, acc_at: float,
                     share_peak: float | None = None) -> dict:
    """The four curves of a run of ``n + 1`` recorded epochs: cmr and the sgd share rise (logistic, half-rise at
    the given distances), the share then falls after ``share_peak``, acc_bc dips then rises (half-rise at
    ``acc_at``). Distances are lr x step; the sgd value of epoch e sits at lr x (10 e - 5)."""
    epochs = np.arange(n + 1)
    d = lr * epochs * STEPS_PER_EPOCH
    d_sgd = lr * (epochs * STEPS_PER_EPOCH - STEPS_PER_EPOCH / 2)
    width = lr * STEPS_PER_EPOCH
    share = logistic(d_sgd, share_at, width)
    if share_peak is not None:
        share = np.where(d_sgd <= share_peak, share, logistic(share_peak, share_at, width)
                         - 0.5 * (d_sgd - share_peak) / d.max())
    return {("train", "logit_norm"): 1.0 + d, ("train", "cmr@0.9"): logistic(d, cmr_at, width),
            ("sgd", "bc_loss_share"): share,
            ("train", "acc_bc"): 0.2 - 0.1 * (epochs == 1) + 0.7 * logistic(d, acc_at, width) * (epochs > 1)}


# --- statistics against independent computations --------------------------------------------------------------------


def scipy_spearman_p(x, y, alternative, n_resamples=9999):
    """scipy's permutation test of Spearman's rho (the statistic vectorised over resamples with scipy's ranks)."""
    xr = rankdata(x) - rankdata(x).mean()

    def rho(yy, axis=-1):
        yr = rankdata(yy, axis=axis)
        yr = yr - yr.mean(axis=axis, keepdims=True)
        return (yr * xr).sum(axis=axis) / np.sqrt((xr**2).sum() * (yr**2).sum(axis=axis))

    assert rho(np.asarray(y, float)) == pytest.approx(spearmanr(x, y).statistic)
    res = permutation_test((np.asarray(y, float),), rho, permutation_type="pairings", vectorized=True,
                           n_resamples=n_resamples, alternative=alternative, random_state=0)
    return float(res.pvalue)


@pytest.mark.parametrize("n", [3, 4, 5, 6, 7])
@pytest.mark.parametrize("alternative", ["greater", "less"])
def test_exact_permutation_p_equals_scipy(n, alternative):
    rng = np.random.default_rng(n)
    x = rng.normal(size=n)
    y = np.round(x + rng.normal(size=n), 0)  # ties in y
    x[0] = x[1]  # and in x
    if np.ptp(y) == 0:
        y[0] += 1
    assert spearman_permutation_p(x, y, alternative) == pytest.approx(scipy_spearman_p(x, y, alternative), abs=1e-12)


def test_monte_carlo_permutation_p_agrees_with_scipy_within_sampling_error():
    rng = np.random.default_rng(3)
    x = rng.normal(size=12)
    y = 0.4 * x + rng.normal(size=12)
    ours, theirs = spearman_permutation_p(x, y), scipy_spearman_p(x, y, "greater")
    se = math.sqrt(theirs * (1 - theirs) / 9999)
    assert 0.005 < theirs < 0.5 and abs(ours - theirs) < 5 * se + 1e-3
    assert spearman_permutation_p(x, y) == ours  # fixed seed: reproducible


def test_spearman_rho_equals_scipy_with_ties_and_nan_when_constant():
    x, y = [1, 2, 2, 3, 5, 4], [0.1, 0.3, 0.2, 0.2, 0.9, 0.5]
    assert spearman_rho(x, y) == pytest.approx(spearmanr(x, y).statistic)
    assert math.isnan(spearman_rho(x, [1, 1, 1, 1, 1, 1]))
    assert math.isnan(spearman_permutation_p(x, [1, 1, 1, 1, 1, 1]))


@pytest.mark.parametrize(("n_hold", "n_fail"), [(5, 0), (4, 1), (2, 2), (0, 3), (9, 3)])
def test_sign_test_equals_binomtest_and_brute_force(n_hold, n_fail):
    n = n_hold + n_fail
    brute = sum(math.comb(n, k) for k in range(n_hold, n + 1)) / 2**n
    assert sign_test_p(n_hold, n_fail) == pytest.approx(brute)
    assert sign_test_p(n_hold, n_fail) == pytest.approx(binomtest(n_hold, n, 0.5, alternative="greater").pvalue)
    assert math.isnan(sign_test_p(0, 0))


# --- events and lags on constructed curves ---------------------------------------------------------------------------


@pytest.mark.parametrize("spacing", [0.5, 1.0, 2.0])
def test_half_rise_of_a_logistic_is_its_centre_within_the_spacing(spacing):
    d = np.arange(0.0, 60.0, spacing)
    event = half_rise(d, logistic(d, 23.3, 3.0))
    assert abs(event.distance - 23.3) < spacing and event.resolution == pytest.approx(spacing)


def test_half_rise_anchors():
    d = np.arange(10.0)
    rise_fall = np.array([0, 0, 1, 2, 4, 3, 2, 1, 0, 0], float)  # half of 0 -> 4 reached between d=2 and d=3
    assert half_rise(d, rise_fall).distance == pytest.approx(3.0)
    dip_rise = np.array([5, 1, 1, 1, 3, 5, 9, 9, 9, 9], float)  # from the trough 1 to 9: level 5 at d=5
    assert half_rise(d, dip_rise, anchor="trough").distance == pytest.approx(5.0)
    early_peak = np.array([2, 8, 4, 0, 0, 3, 6, 7, 7, 7], float)
    assert half_rise(d, early_peak, anchor="peak").distance == pytest.approx(0.5)  # 2 -> 8: level 5 at d = 0.5
    assert half_rise(d, early_peak, anchor="trough").distance == pytest.approx(5 + 0.5 / 3)  # 0 -> 7: level 3.5
    assert half_rise(d, np.full(10, 0.3)) is None
    assert half_rise(d, np.arange(10.0)[::-1]) is None  # falls only
    with pytest.raises(ProbeInputError, match="anchor"):
        half_rise(d, dip_rise, anchor="middle")


def test_peak_and_its_resolution():
    d = np.array([0.0, 1.0, 3.0, 7.0])
    event = peak(d, [0.0, 2.0, 5.0, 1.0])
    assert (event.distance, event.resolution, event.at_end) == (3.0, 4.0, False)
    assert peak(d, [0.0, 1.0, 2.0, 3.0]).at_end
    assert peak([], []) is None


@pytest.mark.parametrize(("lag", "resolution", "verdict"),
                         [(2.0, 1.0, "holds"), (1.0, 1.0, "holds"), (0.5, 1.0, "cannot tell"),
                          (-1.0, 1.0, "fails"), (float("nan"), 1.0, "not measurable")])
def test_lag_verdict(lag, resolution, verdict):
    assert lag_verdict(lag, resolution) == verdict


@pytest.mark.parametrize("lr", [0.05, 0.5])
@pytest.mark.parametrize("shift_epochs", [6, -6])
def test_link3_estimates_a_known_lag_and_its_sign(lr, shift_epochs):
    width = lr * STEPS_PER_EPOCH  # the spacing of recorded points on the distance axis
    cmr_at = 20 * width
    curves = chain_run_curves(60, lr, cmr_at=cmr_at, share_at=cmr_at + shift_epochs * width, acc_at=55 * width)
    row = one_run(curves, lr).loc[3]
    assert abs(row["lag"] - shift_epochs * width) < width
    assert row["resolution"] == pytest.approx(width)
    assert row["verdict"] == ("holds" if shift_epochs > 0 else "fails")
    assert row["value"] == pytest.approx(row["lag"] / row["resolution"])


def test_link3_cannot_tell_a_lag_below_the_spacing():
    lr, width = 0.1, 1.0
    curves = chain_run_curves(60, lr, cmr_at=20.0, share_at=20.3, acc_at=55.0)
    row = one_run(curves, lr).loc[3]
    assert abs(row["lag"]) < width and row["verdict"] == "cannot tell"


@pytest.mark.parametrize("shift_epochs", [8, -8])
def test_link4_estimates_the_lag_after_the_share_peak(shift_epochs):
    lr = 0.1
    width = lr * STEPS_PER_EPOCH
    share_peak = 30 * width - width / 2  # an sgd point (the middle of epoch 30)
    curves = chain_run_curves(60, lr, cmr_at=10.0, share_at=15.0, acc_at=share_peak + shift_epochs * width,
                              share_peak=share_peak)
    row = one_run(curves, lr).loc[4]
    assert row["d_from"] == pytest.approx(share_peak)
    assert abs(row["lag"] - shift_epochs * width) < width
    assert row["verdict"] == ("holds" if shift_epochs > 0 else "fails")


def test_link4_cannot_tell_while_the_share_still_rises():
    curves = chain_run_curves(40, 0.1, cmr_at=10.0, share_at=30.0, acc_at=5.0)  # share rising to the last epoch
    row = one_run(curves, 0.1).loc[4]
    assert row["verdict"] == "cannot tell" and "still rising" in row["reason"]


def test_sgd_values_sit_at_the_middle_of_their_epoch():
    lr = 0.2
    curves = chain_run_curves(20, lr, cmr_at=1.0, share_at=3.0, acc_at=3.5, share_peak=2.0 * 10 * lr - lr * 5)
    share = chain_curves(*tables([("r", lr, curves, 0, "fixed", "ok")]))
    share = share[share["curve"] == "bc_loss_share"]
    assert np.allclose(share["distance"], lr * (np.arange(1, 21) * STEPS_PER_EPOCH - STEPS_PER_EPOCH / 2))


# --- link 2 ---------------------------------------------------------------------------------------------------------


def link2_curves(cmr: np.ndarray, share_peak_epoch: int | None = None) -> dict:
    n = len(cmr)
    curves = {("train", "logit_norm"): np.linspace(1.0, 5.0, n), ("train", "cmr@0.9"): cmr,
              ("train", "acc_bc"): np.linspace(0.1, 0.9, n)}
    if share_peak_epoch is not None:
        curves[("sgd", "bc_loss_share")] = -np.abs(np.arange(n) - share_peak_epoch).astype(float)
    return curves


def test_link2_holds_for_monotone_and_fails_for_anti_monotone_curves():
    up = one_run(link2_curves(np.linspace(0.0, 0.5, 6), share_peak_epoch=5)).loc[2]
    assert up["value"] == pytest.approx(1.0) and up["verdict"] == "holds" and up["n_points"] == 6
    assert up["p_value"] == pytest.approx(1 / math.factorial(6))  # exact: only the identity pairing reaches rho = 1
    down = one_run(link2_curves(np.linspace(0.5, 0.0, 6), share_peak_epoch=5)).loc[2]
    assert down["value"] == pytest.approx(-1.0) and down["verdict"] == "fails"
    assert down["p_value"] == pytest.approx(1.0)


def test_link2_window_ends_where_the_sgd_share_peaks():
    cmr = np.r_[np.linspace(0.0, 0.5, 5), np.linspace(0.5, 0.0, 10)]  # rises to epoch 4, then falls
    row = one_run(link2_curves(cmr, share_peak_epoch=4)).loc[2]
    assert row["n_points"] == 5 and row["verdict"] == "holds"
    whole = one_run(link2_curves(cmr)).loc[2]  # no sgd share: the whole run, where rise and fall cancel
    assert whole["n_points"] == 15 and "whole run" in whole["reason"] and whole["verdict"] != "holds"
    x, y = np.linspace(1.0, 5.0, 15), cmr
    assert whole["value"] == pytest.approx(spearmanr(x, y).statistic)


def test_link2_not_measurable_with_a_constant_cmr_or_too_few_points():
    flat = one_run(link2_curves(np.zeros(8), share_peak_epoch=7)).loc[2]
    assert flat["verdict"] == "not measurable" and "constant" in flat["reason"]
    short = one_run(link2_curves(np.linspace(0.0, 0.5, 8), share_peak_epoch=2)).loc[2]
    assert short["verdict"] == "not measurable" and short["n_points"] == 3 and "at least 4" in short["reason"]


# --- link 1 and the sweep -------------------------------------------------------------------------------------------


def link1_sweep(slopes: dict[float, float], seeds=(0, 1), budget: str = "matched", distance: float = 10.0,
                n_epochs: int = 10) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A matched-budget sweep: each rate trains ``distance / lr`` steps recorded at 10% steps; train logit_norm
    grows ``slopes[lr]`` per unit distance (plus the seed)."""
    rows, runs = [], []
    for lr, slope in slopes.items():
        total = distance / lr
        for seed in seeds:
            name = f"lr{lr}_s{seed}"
            for epoch in range(n_epochs + 1):
                step = epoch * total / n_epochs
                rows.append({"run": name, "lr": lr, "seed": seed, "budget": budget, "epoch": epoch, "step": step,
                             "split": "train", "metric": "logit_norm",
                             "value": 1.0 + (slope + 0.01 * seed) * lr * step})
            runs.append({"run": name, "lr": lr, "seed": seed, "budget": budget, "status": "ok"})
    return pd.DataFrame(rows), pd.DataFrame(runs)


def test_link1_holds_when_the_early_growth_per_distance_rises_with_the_rate():
    slopes = {0.01: 0.1, 0.03: 0.2, 0.1: 0.3, 0.3: 0.5}
    chain, chain_runs = mechanism_chain(*link1_sweep(slopes))
    per_run = chain_runs[chain_runs["link"] == 1]
    assert (per_run["verdict"] == "measured").all()
    assert np.allclose(per_run["d_to"], 1.0)  # 10% of the shared budget 10
    expected = [slopes[lr] + 0.01 * s for lr, s in zip(per_run["lr"], per_run["seed"])]
    assert np.allclose(per_run["value"], expected)
    row = chain[chain["link"] == 1].iloc[0]
    assert row["value"] == pytest.approx(spearmanr(per_run["lr"], per_run["value"]).statistic)
    assert row["p_value"] == pytest.approx(scipy_spearman_p(per_run["lr"].to_numpy(), per_run["value"], "greater"),
                                           abs=0.01)
    assert row["verdict"] == "holds" and row["n_runs"] == 8
    falling = mechanism_chain(*link1_sweep({0.01: 0.5, 0.03: 0.3, 0.1: 0.2, 0.3: 0.1}))[0]
    assert falling.loc[falling["link"] == 1, "verdict"].item() == "fails"


def test_link1_at_fixed_steps_uses_the_smallest_rates_budget_and_refuses_distant_points():
    _, runs = link1_sweep({0.01: 0.1, 0.1: 0.2}, seeds=(0,), budget="fixed")
    # fixed steps: both rates train the 1000 steps of the smaller one
    epochs = pd.concat([link1_sweep({0.01: 0.1}, seeds=(0,), budget="fixed")[0],
                        link1_sweep({0.1: 0.2}, seeds=(0,), budget="fixed", distance=100.0)[0]])
    per_run = mechanism_chain(epochs, runs)[1].set_index("lr")
    assert per_run.loc[0.01].query("link == 1")["verdict"].item() == "measured"
    far = per_run.loc[0.1].query("link == 1")
    assert far["verdict"].item() == "not measurable" and "more than 2x off" in far["reason"].item()


def test_sweep_counts_ok_runs_only_and_uses_a_sign_test():
    runs = []
    for i in range(6):
        status = "diverged" if i == 5 else "ok"
        lr = 0.1
        runs.append((f"r{i}", lr, chain_run_curves(60, lr, cmr_at=10.0, share_at=16.0, acc_at=55.0), i, "fixed",
                     status))
    chain, chain_runs = mechanism_chain(*tables(runs))
    link3 = chain[chain["link"] == 3].iloc[0]
    assert (link3["n_runs"], link3["n_hold"], link3["n_fail"], link3["n_excluded"]) == (5, 5, 0, 1)
    assert link3["p_value"] == pytest.approx(1 / 32) and link3["verdict"] == "holds"
    excluded = chain_runs[(chain_runs["run"] == "r5") & (chain_runs["link"] == 3)].iloc[0]
    assert excluded["verdict"] == "excluded" and "alone: holds" in excluded["reason"]
    four = mechanism_chain(*tables(runs[:4]))[0]
    assert four.loc[four["link"] == 3, "verdict"].item() == "cannot tell"  # 4 of 4: p = 1/16
    assert list(chain.columns) == CHAIN_COLUMNS and list(chain_runs.columns) == CHAIN_RUN_COLUMNS


def test_a_run_without_the_curves_is_not_measurable_and_bad_tables_are_refused():
    epochs, runs = tables([("r", 0.1, {("train", "acc_bc"): np.linspace(0, 1, 5)}, 0, "fixed", "ok")])
    runs = pd.concat([runs, pd.DataFrame([{"run": "damaged", "lr": 0.1, "status": "damaged", "budget": "fixed"}])])
    chain, chain_runs = mechanism_chain(epochs, runs)
    assert (chain_runs.loc[chain_runs["run"] == "r", "verdict"] == "not measurable").all()
    assert (chain_runs.loc[chain_runs["run"] == "damaged", "verdict"] == "excluded").all()
    assert (chain["verdict"] == "not measurable").all()
    with pytest.raises(ProbeInputError, match="'status'"):
        mechanism_chain(epochs, runs.drop(columns="status"))
    with pytest.raises(ProbeInputError, match="DataFrame"):
        mechanism_chain(epochs.to_dict(), runs)


def test_chain_curves_rescale_per_run_and_average_over_seeds():
    curves_a = {("train", "logit_norm"): np.array([1.0, 3.0, 5.0])}
    curves_b = {("train", "logit_norm"): np.array([2.0, 2.5, 4.0])}
    out = chain_curves(*tables([("a", 0.1, curves_a, 0, "fixed", "ok"), ("b", 0.1, curves_b, 1, "fixed", "ok"),
                                ("c", 0.1, curves_b, 2, "fixed", "diverged")]))
    assert np.allclose(out["value"], [0.0, (0.5 + 0.25) / 2, 1.0]) and (out["n_runs"] == 2).all()
    assert np.allclose(out["distance"], [0.0, 1.0, 2.0])


def test_brute_force_exact_p_on_four_points():
    x, y = [1, 2, 3, 4], [0.1, 0.4, 0.2, 0.9]
    rho = spearmanr(x, y).statistic
    null = [spearmanr(x, [y[i] for i in p]).statistic for p in itertools.permutations(range(4))]
    assert spearman_permutation_p(x, y) == pytest.approx(np.mean(np.array(null) >= rho - 1e-12))


# --- analyze --------------------------------------------------------------------------------------------------------


def test_analyze_holds_and_writes_the_chain(tiny_colored_sweep, tmp_path):
    from probe.analyses.engine import analyze, load_analysis

    result = analyze(tiny_colored_sweep, out=tmp_path / "a", model_epochs="none", progress=False,
                     analyses=["groups", "logits", "losses"])
    assert list(result.chain.columns) == CHAIN_COLUMNS and list(result.chain_runs.columns) == CHAIN_RUN_COLUMNS
    assert len(result.chain_runs) == 4 * len(result.runs) and set(result.chain["link"]) == {1, 2, 3, 4}
    expected = mechanism_chain(result.epochs, result.runs)
    pd.testing.assert_frame_equal(result.chain, expected[0])
    loaded = load_analysis(result.out)
    assert (result.out / "chain.csv").is_file() and (result.out / "chain_runs.csv").is_file()
    assert list(loaded.chain["verdict"]) == list(result.chain["verdict"])
    assert list(loaded.chain_runs["reason"].fillna("")) == list(result.chain_runs["reason"])


def test_links_on_too_few_bc_samples_are_not_measurable():
    """With 9 BC training samples cmr@0.9 moves in steps of 1/9: links 2-4 are not measurable, link 1 is not."""
    d = np.linspace(0.0, 10.0, 30)
    curves = {"logit_norm": d, "cmr@0.9": 1 / (1 + np.exp(-(d - 4))), "acc_bc": 1 / (1 + np.exp(-(d - 7)))}
    rows = []
    for epoch, x in enumerate(d):
        for metric, values in curves.items():
            rows.append({"run": "r", "sweep": "s", "lr": 1.0, "seed": 0, "budget": "fixed", "epoch": epoch,
                         "step": x, "analysis": "a", "split": "train", "metric": metric, "value": values[epoch]})
        rows.append({"run": "r", "sweep": "s", "lr": 1.0, "seed": 0, "budget": "fixed", "epoch": epoch, "step": x,
                     "analysis": "a", "split": "train", "metric": "n_bc", "value": 9.0})
    runs = pd.DataFrame([{"run": "r", "sweep": "s", "lr": 1.0, "seed": 0, "budget": "fixed", "status": "ok"}])
    table = mechanism_chain(pd.DataFrame(rows), runs)[1].set_index("link")
    assert (table.loc[[2, 3, 4], "verdict"] == "not measurable").all()
    assert table.loc[2, "reason"].startswith("9 BC training samples, fewer than 20")
    assert "BC training samples" not in table.loc[1, "reason"]  # link 1 rests on the logit norm of every sample
    rows = [r for r in rows if r["metric"] != "n_bc"]  # a run that never reported its count is judged as before
    assert not mechanism_chain(pd.DataFrame(rows), runs)[1]["reason"].str.contains("BC training samples").any()
