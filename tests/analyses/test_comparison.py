"""The comparison of swept axes (probe.analyses.comparison) on constructed run tables whose answer is known, the
statistics checked against scipy."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from probe.analyses.comparison import (
    COMPARISON_COLUMNS,
    DOMINANCE_COLUMNS,
    Property,
    claims_runs,
    compare_axes,
    comparison_points,
    dominance,
    orientation,
    oriented_positions,
    pareto_front,
    verdict_matrix,
)
from probe.errors import ProbeInputError

ACC, RET, SEP = "final:test/unbiased_acc", "final:test/retention@0.9", "final:test/class_separation"
PROPS = (Property("robustness", ACC), Property("compressibility", RET), Property("separation", SEP))
#: the penalty axis the acceptance names; weight_decay is the one the sweeps record today
PENALTY_AXES = ["weight_decay", "l2"]


def sweep(label: str, axes: dict[str, list], metrics, seeds=(0, 1, 2)) -> tuple[pd.DataFrame, dict]:
    """A run table and a source dict of a sweep over ``axes`` x ``seeds``; ``metrics(values, seed) -> {column: v}``."""
    names = list(axes)
    rows, run_axes = [], {}
    for combo in itertools.product(*axes.values()):
        values = dict(zip(names, combo))
        for seed in seeds:
            name = "_".join(f"{a}{v:g}" for a, v in values.items()) + f"_seed{seed}"
            run_axes[name] = {**values, "seed": seed}
            rows.append({"run": f"{label}/{name}", "sweep": label, "seed": seed, "status": "ok", "budget": "fixed",
                         **({"lr": 0.1} if "lr" not in values else {}), **values, **metrics(values, seed)})
    source = {"label": label, "axes": {**axes, "seed": list(seeds)}, "run_axes": run_axes}
    return pd.DataFrame(rows), source


def noise(seed: int, scale: float = 0.002) -> float:
    return scale * (seed - 1)  # -scale, 0, +scale: the seeds' spread, mean zero


@pytest.mark.parametrize("axis", PENALTY_AXES)
def test_rising_metric_agrees_flat_has_no_effect_falling_disagrees(axis):
    levels = [0.0, 1e-4, 1e-3, 1e-2]

    def metrics(v, seed):
        k = levels.index(v[axis])
        return {ACC: 0.5 + 0.1 * k + noise(seed), RET: 0.9 + noise(seed, 0.001), SEP: 0.6 - 0.05 * k + noise(seed)}

    runs, source = sweep("pen", {axis: levels}, metrics)
    table = compare_axes(runs, [source], PROPS)
    assert list(table.columns) == COMPARISON_COLUMNS
    by = table.set_index("column")
    assert by.loc[ACC, "verdict"] == "agrees" and by.loc[ACC, "direction"] == "up"
    assert by.loc[RET, "verdict"] == "no effect"
    assert by.loc[SEP, "verdict"] == "disagrees" and by.loc[SEP, "direction"] == "down"
    assert set(table["axis"]) == {axis} and set(table["at"]) == {""} and set(table["sweep"]) == {"pen"}
    assert by.loc[ACC, "orientation"] == orientation(axis).orientation and "larger" in by.loc[ACC, "orientation"]
    # the statistics: Spearman of the metric with the level (scipy), the effect = best level's mean - level 0's
    x = runs[axis].to_numpy()
    assert by.loc[ACC, "spearman"] == pytest.approx(stats.spearmanr(x, runs[ACC]).statistic)
    assert by.loc[SEP, "spearman"] == pytest.approx(stats.spearmanr(x, runs[SEP]).statistic)
    means = runs.groupby(axis)[ACC].mean()
    assert by.loc[ACC, "effect"] == pytest.approx(means[1e-2] - means[0.0])
    assert by.loc[ACC, "effect_level"] == 1e-2 and by.loc[SEP, "effect_level"] == 1e-2
    assert by.loc[ACC, "effect_low"] <= by.loc[ACC, "effect"] <= by.loc[ACC, "effect_high"]
    # slope per grid step: the least-squares slope of the metric on the level's position 0..3
    k = np.array([levels.index(v) for v in x], dtype=float)
    assert by.loc[ACC, "slope"] == pytest.approx(np.polyfit(k, runs[ACC], 1)[0])
    assert by.loc[ACC, "levels"] == "0 0.0001 0.001 0.01" and (by["n_levels"] == 4).all()


def test_batch_size_is_read_towards_smaller_batches():
    sizes = [16, 32, 64, 128]

    def metrics(v, seed):  # robustness rises as the batch shrinks
        return {ACC: 0.9 - 0.1 * sizes.index(v["batch_size"]) + noise(seed)}

    runs, source = sweep("bs", {"batch_size": sizes}, metrics)
    row = compare_axes(runs, [source], PROPS[:1]).iloc[0]
    assert row["verdict"] == "agrees" and row["direction"] == "up"
    assert row["effect_level"] == 16 and row["levels"] == "128 64 32 16"
    assert row["effect"] == pytest.approx(0.3)
    assert row["orientation"].startswith("smaller batch_size")


def test_undeclared_axis_is_assumed_larger_and_says_so():
    runs, source = sweep("x", {"mixup_alpha": [0.0, 0.2, 0.4]}, lambda v, s: {ACC: 0.5 + v["mixup_alpha"] + noise(s)})
    row = compare_axes(runs, [source], PROPS[:1]).iloc[0]
    assert row["axis"] == "mixup_alpha" and "not declared" in row["orientation"] and row["verdict"] == "agrees"


def test_two_levels_cannot_tell_and_seed_is_never_an_axis():
    runs, source = sweep("bs", {"batch_size": [32, 128]}, lambda v, s: {ACC: 1 - v["batch_size"] / 256 + noise(s)})
    table = compare_axes(runs, [source], PROPS[:1])
    assert list(table["axis"]) == ["batch_size"]
    assert table["verdict"].iloc[0] == "cannot tell" and "only 2 levels" in table["reason"].iloc[0]


def test_excluded_runs_and_missing_metrics():
    runs, source = sweep("wd", {"weight_decay": [0.0, 1e-3, 1e-2]},
                         lambda v, s: {ACC: 0.5 + 10 * v["weight_decay"] + noise(s)})
    runs.loc[0, "status"] = "collapsed"
    table = compare_axes(runs, [source], PROPS).set_index("column")
    assert table.loc[ACC, "n_excluded"] == 1 and table.loc[ACC, "n_runs"] == len(runs) - 1
    assert table.loc[RET, "verdict"] == "not measurable"


def test_a_grid_compares_each_axis_within_each_level_of_the_other():
    def metrics(v, seed):  # robustness rises with lr everywhere and with l2 only at the large lr
        return {ACC: 0.5 + v["lr"] + (v["l2"] * 100 if v["lr"] == 0.3 else 0) + noise(seed)}

    runs, source = sweep("grid", {"lr": [0.01, 0.1, 0.3], "l2": [0.0, 1e-3, 1e-2]}, metrics)
    table = compare_axes(runs, [source], PROPS[:1])
    got = {(a, at): v for a, at, v in zip(table["axis"], table["at"], table["verdict"])}
    assert got == {("lr", "l2=0"): "agrees", ("lr", "l2=0.001"): "agrees", ("lr", "l2=0.01"): "agrees",
                   ("l2", "lr=0.01"): "no effect", ("l2", "lr=0.1"): "no effect",
                   ("l2", "lr=0.3"): "agrees"}
    wide = verdict_matrix(table)
    assert list(wide.columns[:3]) == ["sweep", "axis", "at"] and wide["test/unbiased_acc"].tolist() == [
        got[(a, at)] for a, at in zip(wide["axis"], wide["at"])]


def test_oriented_positions():
    x, levels = oriented_positions([64, 16, 32, 16], -1)
    assert levels == [64.0, 32.0, 16.0] and x.tolist() == [1.0, 100.0, 10.0, 100.0]
    with pytest.raises(ProbeInputError):
        oriented_positions([0.0, np.nan], +1)


def test_pareto_front_matches_a_brute_force_loop():
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 6, 40).astype(float), rng.integers(0, 6, 40).astype(float)
    brute = [not any(x[j] >= x[i] and y[j] >= y[i] and (x[j] > x[i] or y[j] > y[i]) for j in range(40))
             for i in range(40)]
    assert pareto_front(x, y).tolist() == brute
    assert pareto_front([1, 2, 3], [3, 2, 1]).all() and pareto_front([1, 2], [1, 2]).tolist() == [False, True]


def test_comparison_points_are_seed_means_with_their_standard_errors():
    def metrics(v, seed):
        return {ACC: 0.5 + v["lr"] + 0.01 * seed, RET: 0.8 - v["lr"] + 0.02 * seed}

    runs, src = sweep("lr", {"lr": [0.01, 0.1, 0.3]}, metrics)
    points = comparison_points(runs, [src])
    grouped = runs.groupby("lr")
    assert points["y_mean"].tolist() == pytest.approx(grouped[ACC].mean().tolist())
    assert points["x_sem"].tolist() == pytest.approx(grouped[RET].sem().tolist())
    assert points["step"].tolist() == [0, 1, 2] and points["n"].tolist() == [3, 3, 3]
    # a larger rate buys robustness and costs compressibility here: every point is on the front
    assert points["pareto"].all()


# --- dominance -------------------------------------------------------------------------------------------------------


def grid(axis, cells, seeds=(0, 1, 2)):
    """A lr x ``axis`` grid whose cell (lr, p) has (robustness, compressibility) ``cells[(lr, p)]``."""
    lrs = sorted({lr for lr, _ in cells})
    ps = sorted({p for _, p in cells})

    def metrics(v, seed):
        acc, ret = cells[(v["lr"], v[axis])]
        return {ACC: acc + noise(seed), RET: ret + noise(seed)}

    return sweep("grid", {"lr": lrs, axis: ps}, metrics, seeds)


@pytest.mark.parametrize("axis", PENALTY_AXES)
def test_large_rate_plus_penalty_dominates_either_alone(axis):
    runs, source = grid(axis, {(0.01, 0.0): (0.5, 0.6), (0.01, 1e-3): (0.55, 0.7),
                               (0.3, 0.0): (0.7, 0.8), (0.3, 1e-3): (0.8, 0.9)})
    table = dominance(runs, [source])
    assert list(table.columns) == DOMINANCE_COLUMNS and len(table) == 4
    assert set(table["outcome"]) == {"better"} and set(table["verdict"]) == {"dominates"}
    assert set(table["overall"]) == {"dominates"}
    row = table[(table["baseline"] == "large lr, penalty 0") & (table["property"] == "robustness")].iloc[0]
    assert row["difference"] == pytest.approx(0.1) and row["large_lr"] == 0.3 and row["small_lr"] == 0.01
    combo = runs[(runs["lr"] == 0.3) & (runs[axis] == 1e-3)][ACC]
    base = runs[(runs["lr"] == 0.3) & (runs[axis] == 0.0)][ACC]
    assert row["p_better"] == pytest.approx(stats.ttest_ind(combo, base, alternative="greater").pvalue)
    assert row["low"] <= row["difference"] <= row["high"]


def test_worse_in_one_property_does_not_dominate():
    # the penalty buys compressibility at the large rate but costs robustness beyond the floor
    runs, source = grid("l2", {(0.01, 0.0): (0.5, 0.6), (0.01, 1e-3): (0.55, 0.7),
                               (0.3, 0.0): (0.8, 0.8), (0.3, 1e-3): (0.7, 0.9)})
    table = dominance(runs, [source]).set_index(["baseline", "property"])
    assert table.loc[("large lr, penalty 0", "robustness"), "outcome"] == "worse"
    assert table.loc[("large lr, penalty 0", "compressibility"), "outcome"] == "better"
    assert table.loc[("large lr, penalty 0", "robustness"), "verdict"] == "does not"
    assert table.loc[("small lr, same penalty", "robustness"), "verdict"] == "dominates"
    assert set(table["overall"]) == {"does not"}


def test_equal_cells_do_not_dominate_and_noise_cannot_tell():
    same = {(0.01, 0.0): (0.5, 0.6), (0.01, 1e-3): (0.5, 0.6), (0.3, 0.0): (0.5, 0.6), (0.3, 1e-3): (0.5, 0.6)}
    runs, source = grid("l2", same)
    table = dominance(runs, [source])
    assert set(table["outcome"]) == {"equivalent"} and set(table["overall"]) == {"does not"}

    def metrics(v, seed):  # a spread of 0.2 between seeds: a difference of 0.03 cannot be told
        base = 0.5 + 0.03 * (v["lr"] == 0.3 and v["l2"] > 0)
        return {ACC: base + 0.2 * (seed - 1), RET: base + 0.2 * (1 - seed)}

    runs, source = sweep("grid", {"lr": [0.01, 0.3], "l2": [0.0, 1e-3]}, metrics)
    assert set(dominance(runs, [source])["overall"]) == {"cannot tell"}


def test_one_seed_is_not_measurable_and_no_grid_gives_no_rows():
    runs, source = grid("l2", {(0.01, 0.0): (0.5, 0.6), (0.01, 1e-3): (0.55, 0.7),
                               (0.3, 0.0): (0.7, 0.8), (0.3, 1e-3): (0.8, 0.9)}, seeds=(0,))
    table = dominance(runs, [source])
    assert set(table["verdict"]) == {"not measurable"} and set(table["overall"]) == {"not measurable"}
    assert "fewer than 2 seeds" in table["reason"].iloc[0]
    runs, source = sweep("bs", {"batch_size": [16, 64]}, lambda v, s: {ACC: 0.5, RET: 0.5})
    assert dominance(runs, [source]).empty
    # momentum is not a penalty: a lr x momentum grid has no dominance rows
    runs, source = sweep("m", {"lr": [0.01, 0.3], "momentum": [0.0, 0.9]}, lambda v, s: {ACC: 0.5, RET: 0.5})
    assert dominance(runs, [source]).empty


def test_the_claims_never_pool_another_axis_levels_as_replicates_of_a_rate():
    """An lr x l2 grid analysed alone: the claims about the rate judge the l2 = 0 runs; an lr x batch_size grid the
    largest batch (the least regularised level); beside an lr-only sweep, that sweep alone; nothing else varying:
    every run."""
    flat = lambda values, seed: {ACC: 0.5}  # noqa: E731
    grid, grid_source = sweep("grid", {"lr": [0.01, 0.1, 1.0], "l2": [0.0, 1e-4, 1e-3]}, flat, seeds=(0, 1))
    kept = claims_runs(grid, [grid_source])
    assert len(kept) == 6 and (kept["l2"] == 0.0).all() and sorted(set(kept["lr"])) == [0.01, 0.1, 1.0]
    bs, bs_source = sweep("bs", {"lr": [0.01, 0.1], "batch_size": [16, 64, 256]}, flat, seeds=(0,))
    kept = claims_runs(bs, [bs_source])
    assert (kept["batch_size"] == 256).all() and len(kept) == 2
    lr_only, lr_source = sweep("lr", {"lr": [0.01, 0.1, 1.0]}, flat)
    both = pd.concat([lr_only, grid], ignore_index=True)
    assert claims_runs(both, [lr_source, grid_source])["sweep"].eq("lr").all()
    assert claims_runs(lr_only, [lr_source]) is lr_only
