"""The logit-scaling proposition on constructed logits whose answer is known, against scipy's logsumexp; the scale /
direction decomposition on constructed logit sequences and against a brute-force loop; its tables through analyze."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy.special import logsumexp

import probe
from probe.analyses.base import AnalysisContext
from probe.analyses.engine import analyze, load_analysis
from probe.analyses.engine.result import RATIO_COLUMNS, STEPS_COLUMNS, TABLE_FILES
from probe.analyses.proposition import (
    DECOMPOSITION_COLUMNS,
    DEFAULT_ALPHAS,
    _is_convex_on_grid,
    check_proposition,
    loss_ratio_curve,
    proposition_epoch,
    proposition_tables,
    ratio_curves,
    ratio_vs_logit_norm,
    scale_direction_decomposition,
    scale_share_by_rate,
    scaled_cross_entropy,
    window_summary,
    window_table,
)
from probe.errors import ProbeInputError


def _constructed():
    """K = 3, label 0 everywhere. BA margins 1.0, 1.7, 2.5 (all correct); BC: two mispredicted (gaps 0.5, 1.2)
    and one correct (margin 0.8). The smallest BA margin is 1.0."""
    logits = np.array([
        [1.0, 0.0, -0.5],   # BA, margin 1.0
        [2.0, 0.3, 0.1],    # BA, margin 1.7
        [0.5, -2.0, -3.0],  # BA, margin 2.5
        [0.0, 0.5, -1.0],   # BC, gap 0.5
        [-0.2, 0.1, 1.0],   # BC, gap 1.2
        [0.8, 0.0, -0.4],   # BC, margin 0.8
    ])
    y = np.zeros(6, dtype=int)
    is_bc = np.array([False, False, False, True, True, True])
    return logits, y, is_bc


def _ce_reference(logits, y, alphas):
    """CE(softmax(alpha z), y) with scipy's logsumexp, sample by sample and alpha by alpha."""
    out = np.empty((len(y), len(alphas)))
    for i, (z, t) in enumerate(zip(logits, y)):
        for j, alpha in enumerate(alphas):
            out[i, j] = logsumexp(alpha * z) - alpha * z[t]
    return out


def test_scaled_cross_entropy_against_scipy():
    rng = np.random.default_rng(0)
    logits, y = rng.normal(size=(12, 4)) * 2, rng.integers(0, 4, 12)
    alphas = np.array([0.01, 0.3, 1.0, 2.5, 10.0])
    got = scaled_cross_entropy(logits, y, alphas)
    assert got.shape == (12, 5)
    np.testing.assert_allclose(got, _ce_reference(logits, y, alphas), rtol=1e-9, atol=1e-12)
    # at alpha = 1 it is the plain cross-entropy; as alpha -> 0 it tends to log K
    np.testing.assert_allclose(scaled_cross_entropy(logits, y, [1e-9])[:, 0], math.log(4), rtol=1e-6)


def test_convex_in_alpha():
    logits, y, _ = _constructed()
    alphas = np.linspace(0.05, 20.0, 120)  # uniform grid: convexity = non-negative second differences
    loss = _ce_reference(logits, y, alphas)
    second = loss[:, 2:] - 2 * loss[:, 1:-1] + loss[:, :-2]
    assert np.all(second >= -1e-12)
    assert check_proposition(logits, y, np.array([False] * 3 + [True] * 3), alphas).convex
    # the convexity test itself can fail: a concave curve is rejected
    assert not _is_convex_on_grid(alphas, np.sqrt(alphas)[None, :])
    assert _is_convex_on_grid(alphas, (alphas**2)[None, :])


def test_exponential_bound_for_correct_samples():
    logits, y, is_bc = _constructed()
    alphas = np.geomspace(0.1, 10.0, 30)  # the reference keeps ~5 digits of l down to e^-25
    loss = _ce_reference(logits, y, alphas)
    ours = scaled_cross_entropy(logits, y, [200.0])[:, 0]  # e^-200 and below: only the stable form resolves it
    m = np.array([1.0, 1.7, 2.5, np.nan, np.nan, 0.8])
    for i in (0, 1, 2, 5):
        bound = 2 * np.exp(-alphas * m[i])  # (K - 1) exp(-alpha m)
        assert np.all(loss[i] <= bound * (1 + 1e-9))
        # and the bound is tight in rate: -log l / alpha -> m
        assert -math.log(ours[i]) / 200.0 == pytest.approx(m[i], rel=0.01)
    assert check_proposition(logits, y, is_bc).bound_correct_ok


def test_linear_bound_for_mispredicted_samples():
    logits, y, is_bc = _constructed()
    alphas = np.geomspace(0.1, 1e3, 30)
    loss = scaled_cross_entropy(logits, y, alphas)
    for i, d in ((3, 0.5), (4, 1.2)):
        assert np.all(loss[i] >= alphas * d)
        assert loss[i, -1] / alphas[-1] == pytest.approx(d, rel=1e-3)  # slope tends to the gap
    assert check_proposition(logits, y, is_bc).bound_mispredicted_ok


def test_ratio_curve_and_turning_point():
    logits, y, is_bc = _constructed()
    alphas = np.geomspace(0.01, 10.0, 50)  # up to where the reference's logsumexp(z) - z_y keeps its digits
    ref = _ce_reference(logits, y, alphas)
    expected = ref[is_bc].mean(axis=0) / ref[~is_bc].mean(axis=0)
    np.testing.assert_allclose(loss_ratio_curve(logits, y, is_bc, alphas), expected, rtol=1e-9)
    check = check_proposition(logits, y, is_bc, alphas)
    assert check.turning_alpha == alphas[np.argmin(expected)]
    assert check.monotone_after_turning
    np.testing.assert_allclose(check.ratio, expected, rtol=1e-9)


def test_fitted_rate_matches_smallest_ba_margin():
    logits, y, is_bc = _constructed()
    check = check_proposition(logits, y, is_bc)
    assert check.applicable and check.reason == ""
    assert check.min_ba_margin == pytest.approx(1.0)
    assert check.fitted_rate == pytest.approx(1.0, rel=0.01)
    assert check.rate_rel_error < 0.01
    assert np.all(np.isfinite(check.log_ratio))  # log space keeps it exact where R itself overflows
    assert np.isinf(check.ratio[-1])
    np.testing.assert_array_equal(check.fit_alphas, DEFAULT_ALPHAS[-5:])


def test_fitted_rate_on_random_logits():
    rng = np.random.default_rng(3)
    n, k = 80, 5
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    is_bc = rng.random(n) < 0.2
    rows = np.arange(n)
    # BA samples: make the true class win by a random positive margin; BC samples: make the true class lose
    others = logits.copy()
    others[rows, y] = -np.inf
    top = others.max(axis=1)
    logits[rows, y] = np.where(is_bc, top - rng.uniform(0.1, 2.0, n), top + rng.uniform(0.2, 3.0, n))
    m_min = float((logits[rows, y] - top)[~is_bc].min())
    check = check_proposition(logits, y, is_bc)
    assert check.applicable
    assert check.fitted_rate == pytest.approx(m_min, rel=0.01)
    assert check.monotone_after_turning and check.convex


def test_not_applicable_cases():
    logits, y, is_bc = _constructed()
    wrong_ba = logits.copy()
    wrong_ba[0] = [0.0, 1.0, 0.0]
    check = check_proposition(wrong_ba, y, is_bc)
    assert not check.applicable and "bias-aligned" in check.reason
    assert np.isnan(check.rate_rel_error)
    no_bc_wrong = logits[[0, 1, 2, 5]]
    check = check_proposition(no_bc_wrong, y[:4], is_bc[[0, 1, 2, 5]])
    assert not check.applicable and "mispredicted" in check.reason
    check = check_proposition(logits[:3], y[:3], is_bc[:3])
    assert not check.applicable and np.all(np.isnan(check.log_ratio)) and np.isnan(check.turning_alpha)


@pytest.mark.parametrize("alphas", [[1.0, 0.5, 2.0], [0.0, 1.0, 2.0], [[1.0, 2.0]], [1.0, np.inf, 3.0]])
def test_bad_alphas(alphas):
    logits, y, is_bc = _constructed()
    with pytest.raises(ProbeInputError):
        check_proposition(logits, y, is_bc, alphas, n_fit=2)


def test_as_metrics_are_floats():
    logits, y, is_bc = _constructed()
    metrics = check_proposition(logits, y, is_bc).as_metrics()
    assert all(isinstance(v, float) for v in metrics.values())
    assert metrics["applicable"] == 1.0 and metrics["monotone_after_turning"] == 1.0


def test_ratio_vs_logit_norm_follows_scaling():
    # "epochs" that only rescale the same logits: the measured ratio must be R(scale) of the base logits
    logits, y, is_bc = _constructed()
    scales = [0.5, 1.0, 2.0, 4.0]
    table = ratio_vs_logit_norm([s * logits for s in scales], y, is_bc, epochs=[0, 1, 2, 3])
    base_norm = np.linalg.norm(logits, axis=1).mean()
    np.testing.assert_allclose(table["logit_norm"], np.array(scales) * base_norm)
    np.testing.assert_allclose(table["bc_ba_loss_ratio"], loss_ratio_curve(logits, y, is_bc, scales), rtol=1e-9)
    assert table["bc_ba_loss_ratio"].is_monotonic_increasing
    assert table["applicable"].all()
    with pytest.raises(ProbeInputError):
        ratio_vs_logit_norm([logits])


def test_wrappers_on_tiny_run(tiny_parity_run):
    run = probe.open_run(tiny_parity_run)
    out = proposition_epoch(AnalysisContext(run), 3)
    rec = run.records("train", 3)
    expected = check_proposition(rec.logits, rec.y, rec.is_bc).as_metrics()
    assert set(out) == {"train"}
    assert out["train"] == pytest.approx(expected, nan_ok=True)
    table = ratio_vs_logit_norm(run)
    assert list(table["epoch"]) == run.epochs
    assert list(table["step"]) == [run.step_of(e) for e in run.epochs]
    ref = _ce_reference(rec.logits.astype(np.float64), rec.y, [1.0])[:, 0]
    assert table["bc_ba_loss_ratio"].iloc[-1] == pytest.approx(ref[rec.is_bc].mean() / ref[~rec.is_bc].mean())
    curves = ratio_curves(run, epochs=[0, 3], alphas=[0.5, 1.0, 2.0])
    assert len(curves) == 6
    np.testing.assert_allclose(curves[curves.epoch == 3]["ratio"],
                               loss_ratio_curve(rec.logits, rec.y, rec.is_bc, [0.5, 1.0, 2.0]))


# --- the identity: an implementation check, never evidence --------------------------------------------------------


def _separated_logits(seed: int, n: int = 60, k: int = 4):
    """Random logits where every BA sample is correct, the smallest BA margin (0.3) is 0.2 below the next one and a
    fifth of the samples are BC, all mispredicted: the proposition applies and the fit range is asymptotic."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    is_bc = np.arange(n) % 5 == 0
    rows = np.arange(n)
    others = logits.copy()
    others[rows, y] = -np.inf
    top = others.max(axis=1)
    margin = np.where(is_bc, -rng.uniform(0.1, 2.0, n), rng.uniform(0.5, 3.0, n))
    margin[1] = 0.3  # sample 1 is BA
    logits[rows, y] = top + margin
    return logits, y, is_bc


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fitted_rate_equals_smallest_ba_margin_identity(seed):
    """Implementation check, not evidence: R(alpha) rescales the very logits whose smallest BA margin it is compared
    with, so (1/alpha) log R(alpha) -> m_min is a property of the definition. Where the proposition applies the
    fitted rate must equal the smallest BA margin to high precision; a failure means the code is wrong."""
    logits, y, is_bc = _separated_logits(seed)
    check = check_proposition(logits, y, is_bc)
    assert check.applicable
    assert check.min_ba_margin == pytest.approx(0.3, rel=1e-12)
    assert check.fitted_rate == pytest.approx(check.min_ba_margin, rel=1e-9)
    assert check.rate_rel_error < 1e-9


def test_fitted_rate_is_nan_where_the_proposition_does_not_apply():
    logits, y, is_bc = _constructed()
    wrong_ba = logits.copy()
    wrong_ba[0] = [0.0, 1.0, 0.0]  # a BA sample mispredicted
    no_bc_wrong = logits[[0, 1, 2, 5]]  # the only BC sample is correct
    for check in (check_proposition(wrong_ba, y, is_bc), check_proposition(no_bc_wrong, y[:4], is_bc[[0, 1, 2, 5]])):
        assert not check.applicable
        assert np.isnan(check.fitted_rate) and np.isnan(check.rate_rel_error)
        assert np.isnan(check.as_metrics()["fitted_rate"])
        assert np.all(np.isfinite(check.log_ratio))  # R(alpha) itself is still measured


def test_error_counts_against_a_loop():
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(50, 3))
    logits[:5] = [1.0, 1.0, 0.0]  # ties on the true class 0 / class 1: margin 0, neither correct nor mispredicted
    y = np.where(np.arange(50) < 5, 0, rng.integers(0, 3, 50))
    is_bc = rng.random(50) < 0.4
    is_bc[:3] = False
    is_bc[3:5] = True
    metrics = check_proposition(logits, y, is_bc).as_metrics()
    ba_not_correct = bc_wrong = 0
    for z, t, bc in zip(logits, y, is_bc):
        best_other = max(z[j] for j in range(3) if j != t)
        if not bc and not z[t] > best_other:
            ba_not_correct += 1
        if bc and z[t] < best_other:
            bc_wrong += 1
    assert metrics["n_ba_not_correct"] == ba_not_correct >= 3
    assert metrics["n_bc_mispredicted"] == bc_wrong


# --- scale or direction ------------------------------------------------------------------------------------------


def _log_r_loop(logits, y, is_bc):
    """log(mean BC CE / mean BA CE), one sample at a time with scipy's logsumexp."""
    ce = np.array([logsumexp(z) - z[t] for z, t in zip(logits, y)])
    return math.log(ce[is_bc].mean() / ce[~is_bc].mean())


def _rotation(k: int, angle: float, i: int = 0, j: int = 1) -> np.ndarray:
    q = np.eye(k)
    q[[i, i, j, j], [i, j, i, j]] = [math.cos(angle), -math.sin(angle), math.sin(angle), math.cos(angle)]
    return q


def test_pure_scaling_is_all_scale():
    logits, y, is_bc = _constructed()
    table = scale_direction_decomposition([logits, 1.7 * logits, 1.7 * 2.5 * logits], y, is_bc, epochs=[3, 4, 7])
    assert list(table.columns) == [c for c in DECOMPOSITION_COLUMNS if not c.startswith("step_")]
    assert table[["epoch_from", "epoch_to"]].values.tolist() == [[3, 4], [4, 7]]
    np.testing.assert_allclose(table["scale_share"], 1.0, rtol=1e-9)
    np.testing.assert_allclose(table["direction"], 0.0, atol=1e-12)
    assert (table["total"] > 0).all() and table["both_applicable"].all()


def test_pure_rotation_at_fixed_norm_is_all_direction():
    logits, y, is_bc = _constructed()
    rotated = logits @ _rotation(3, 0.15).T  # every z_i rotated by the same angle: ||z_i|| unchanged
    np.testing.assert_allclose(np.linalg.norm(rotated, axis=1), np.linalg.norm(logits, axis=1), rtol=1e-14)
    row = scale_direction_decomposition([logits, rotated], y, is_bc).iloc[0]
    total = _log_r_loop(rotated, y, is_bc) - _log_r_loop(logits, y, is_bc)
    assert abs(total) > 0.05  # R changes
    assert row["total"] == pytest.approx(total, rel=1e-9)
    assert row["scale"] == pytest.approx(0.0, abs=1e-12)
    assert row["scale_share"] == pytest.approx(0.0, abs=1e-10)
    assert row["direction"] == pytest.approx(total, rel=1e-9)
    assert row["both_applicable"]


def test_decomposition_against_a_brute_force_loop():
    rng = np.random.default_rng(11)
    n, k = 40, 4
    y, is_bc = rng.integers(0, k, n), rng.random(n) < 0.3
    seq = [rng.normal(size=(n, k)) * (1 + 0.5 * t) for t in range(4)]
    table = scale_direction_decomposition(seq, y, is_bc)
    for t, row in table.iterrows():
        z0, z1 = seq[t], seq[t + 1]
        s = np.mean([np.linalg.norm(v) for v in z1]) / np.mean([np.linalg.norm(v) for v in z0])
        total = _log_r_loop(z1, y, is_bc) - _log_r_loop(z0, y, is_bc)
        scale = _log_r_loop(s * z0, y, is_bc) - _log_r_loop(z0, y, is_bc)
        assert row["total"] == pytest.approx(total, rel=1e-9)
        assert row["log_r_from"] == pytest.approx(_log_r_loop(z0, y, is_bc), rel=1e-9)
        assert row["log_r_scaled"] == pytest.approx(_log_r_loop(s * z0, y, is_bc), rel=1e-9)
        assert row["scale"] == pytest.approx(scale, rel=1e-8, abs=1e-12)
        assert row["direction"] == pytest.approx(total - scale, rel=1e-8, abs=1e-12)
        assert row["scale_share"] == pytest.approx(scale / total, rel=1e-7)
        assert not row["both_applicable"]  # random logits: BA samples are mispredicted


def test_scale_share_is_nan_without_change_and_bad_input_is_refused():
    logits, y, is_bc = _constructed()
    row = scale_direction_decomposition([logits, logits.copy()], y, is_bc).iloc[0]
    assert row["total"] == 0.0 and row["scale"] == 0.0 and np.isnan(row["scale_share"])
    assert scale_direction_decomposition([logits], y, is_bc).empty
    with pytest.raises(ProbeInputError, match="needs y and is_bc"):
        scale_direction_decomposition([logits, logits])
    with pytest.raises(ProbeInputError, match="y has 6 entries, expected 5"):
        scale_direction_decomposition([logits, logits[:5]], y, is_bc)
    with pytest.raises(ProbeInputError, match="2 epochs given for 3"):
        scale_direction_decomposition([logits] * 3, y, is_bc, epochs=[0, 1])


def test_decomposition_and_window_curves_of_a_run(tiny_parity_run):
    run = probe.open_run(tiny_parity_run)
    table = scale_direction_decomposition(run)
    assert list(table.columns) == DECOMPOSITION_COLUMNS
    assert list(table["epoch_from"]) == run.epochs[:-1] and list(table["epoch_to"]) == run.epochs[1:]
    assert list(table["step_to"]) == [run.step_of(e) for e in run.epochs[1:]]
    recs = [run.records("train", e) for e in run.epochs]
    arrays = scale_direction_decomposition([r.logits for r in recs], recs[0].y, recs[0].is_bc, epochs=run.epochs)
    pd.testing.assert_frame_equal(table.drop(columns=["step_from", "step_to"]), arrays)
    for (_, row), r0, r1 in zip(table.iterrows(), recs, recs[1:]):
        z0, z1 = r0.logits.astype(np.float64), r1.logits.astype(np.float64)
        assert row["total"] == pytest.approx(_log_r_loop(z1, r1.y, r1.is_bc) - _log_r_loop(z0, r0.y, r0.is_bc),
                                             rel=1e-9, abs=1e-12)

    steps, curves = proposition_tables(run, epochs=[1, 2, 3], curve_epochs=[3], alphas=[0.5, 1.0, 2.0])
    pd.testing.assert_frame_equal(steps, table.iloc[1:].reset_index(drop=True))
    applicable = {e for e in (1, 2, 3) if check_proposition(recs[e].logits, recs[e].y, recs[e].is_bc).applicable}
    assert set(curves["epoch"]) == applicable | {3}
    pd.testing.assert_frame_equal(curves, ratio_curves(run, epochs=sorted(applicable | {3}),
                                                       alphas=[0.5, 1.0, 2.0]))


class _LogitRun:
    """A stand-in for a run (``records``, ``splits``, ``epochs``, ``step_of``, ``name``) holding given logits; the
    records of odd epochs come in a shuffled sample order, as a store is free to write them."""

    name, splits = "constructed", ["train"]

    def __init__(self, seq, y, is_bc, steps_per_epoch=10):
        self.seq, self.y, self.is_bc, self.every = seq, np.asarray(y), np.asarray(is_bc), steps_per_epoch
        self.epochs = list(range(len(seq)))

    def step_of(self, epoch):
        return epoch * self.every

    def records(self, split, epoch):
        order = np.arange(len(self.y))
        if epoch % 2:
            order = np.random.default_rng(epoch).permutation(order)
        return SimpleNamespace(index=order, y=self.y[order], is_bc=self.is_bc[order],
                               logits=np.asarray(self.seq[epoch])[order])


def _window_sequence():
    """Five epochs of the constructed logits: the proposition applies at epochs 1-3 only (a BA sample is mispredicted
    at epoch 0; no BC sample is mispredicted at epoch 4)."""
    logits, y, is_bc = _constructed()
    wrong_ba = logits.copy()
    wrong_ba[0] = [0.0, 1.0, 0.0]
    all_right = logits.copy()
    all_right[3:5] = [[2.0, 0.5, -1.0], [1.5, 0.1, 1.0]]
    rotated = logits @ _rotation(3, 0.1).T
    return [wrong_ba, logits, 2.0 * logits, 2.0 * rotated, 3.0 * all_right], y, is_bc


def test_window_epochs_and_their_curves_from_records_in_any_order():
    seq, y, is_bc = _window_sequence()
    run = _LogitRun(seq, y, is_bc)
    assert [check_proposition(z, y, is_bc).applicable for z in seq] == [False, True, True, True, False]
    table = scale_direction_decomposition(run)
    pd.testing.assert_frame_equal(table.drop(columns=["step_from", "step_to"]),
                                  scale_direction_decomposition(seq, y, is_bc))
    assert list(table["both_applicable"]) == [False, True, True, False]
    assert list(table["step_to"]) == [10, 20, 30, 40]
    assert table["scale_share"].iloc[1] == pytest.approx(1.0)  # epoch 1 -> 2 is a pure scaling
    steps, curves = proposition_tables(run, curve_epochs=[0], alphas=[0.5, 1.0, 4.0])
    pd.testing.assert_frame_equal(steps, table)
    assert sorted(set(curves["epoch"])) == [0, 1, 2, 3]
    for epoch in (0, 1, 2, 3):
        np.testing.assert_allclose(curves.loc[curves["epoch"] == epoch, "ratio"],
                                   loss_ratio_curve(seq[epoch], y, is_bc, [0.5, 1.0, 4.0]), rtol=1e-12)

    from probe.analyses.engine.engine import proposition_tables as engine_tables

    ident = {"run": "r", "sweep": "s", "lr": 0.5, "seed": 0, "budget": "fixed"}
    plan = SimpleNamespace(committed=run.epochs, early=1, cheap=run.epochs)
    curves, steps = engine_tables(AnalysisContext(run, options={"alphas": [1.0, 2.0]}), ident, plan)
    assert list(curves.columns) == RATIO_COLUMNS and list(steps.columns) == STEPS_COLUMNS
    phases = curves.drop_duplicates("epoch").set_index("epoch")["phase"].to_dict()
    assert phases == {1: "early", 2: "window", 3: "window", 4: "final"}
    assert (steps["run"] == "r").all() and (curves["lr"] == 0.5).all()


def test_records_of_other_samples_are_refused():
    seq, y, is_bc = _window_sequence()
    run = _LogitRun(seq, y, is_bc)
    original = run.records
    run.records = lambda split, epoch: (SimpleNamespace(**{**vars(original(split, epoch)),
                                                           "index": np.arange(10, 16)}) if epoch == 2
                                        else original(split, epoch))
    with pytest.raises(ProbeInputError, match="epochs 1 and 2 do not hold the same samples"):
        scale_direction_decomposition(run)


def test_analyze_writes_and_reads_back_the_steps_table(tiny_parity_run, tmp_path):
    result = analyze(tiny_parity_run, out=tmp_path / "o", analyses=["proposition"], progress=False)
    run = probe.open_run(tiny_parity_run)
    steps = result.proposition_steps
    assert list(steps.columns) == STEPS_COLUMNS and len(steps) == len(run.epochs) - 1
    assert set(steps["run"]) == {result.runs["run"].iloc[0]} and (steps["lr"] == 0.1).all()
    expected = scale_direction_decomposition(run)
    pd.testing.assert_frame_equal(steps[DECOMPOSITION_COLUMNS], expected)
    assert TABLE_FILES["proposition_steps.csv"] == "proposition_steps"
    assert (tmp_path / "o" / "proposition_steps.csv").is_file()
    loaded = load_analysis(tmp_path / "o").proposition_steps
    assert list(loaded.columns) == STEPS_COLUMNS
    np.testing.assert_allclose(loaded["total"], steps["total"], rtol=1e-12)
    assert loaded["both_applicable"].tolist() == steps["both_applicable"].tolist()
    # the curves: early and final epochs, and every epoch where the proposition applies (phase "window" if neither)
    applicable = set(result.proposition.loc[result.proposition["applicable"] > 0.5, "epoch"])
    row = result.runs.iloc[0]
    assert set(result.ratio_curves["epoch"]) == applicable | {row["early_epoch"], row["final_epoch"]}
    phases = result.ratio_curves.drop_duplicates("epoch").set_index("epoch")["phase"]
    assert phases[row["final_epoch"]] == "final"
    assert all(phases[e] == "window" for e in applicable - {row["early_epoch"], row["final_epoch"]})


# --- summaries ---------------------------------------------------------------------------------------------------


def _tables():
    """Run a: applies at epochs 1-3 and 5; run b never (BA errors at 0-1, no BC error at 2); run c: BA errors only."""
    prop = pd.DataFrame({
        "run": ["a"] * 6 + ["b"] * 3 + ["c"] * 2, "lr": [0.1] * 6 + [0.1] * 3 + [1.0] * 2, "seed": [0] * 6 + [1] * 3
        + [0] * 2, "budget": "fixed", "epoch": [0, 1, 2, 3, 4, 5, 0, 1, 2, 0, 1],
        "step": [0, 10, 20, 30, 40, 50, 0, 10, 20, 0, 5],
        "applicable": [0, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0],
        "n_ba_not_correct": [3, 0, 0, 0, 2, 0, 4, 1, 0, 9, 7],
        "n_bc_mispredicted": [5, 4, 3, 2, 2, 1, 3, 2, 0, 6, 6],
    })
    rows = []
    for run, part in prop.groupby("run", sort=False):
        app = part["applicable"].to_numpy() > 0.5
        for i in range(len(part) - 1):
            total, scale = 0.5 + i, 0.1 * (i + 1)
            rows.append({"run": run, "lr": part["lr"].iloc[0], "epoch_from": i, "epoch_to": i + 1, "total": total,
                         "scale": scale, "scale_share": scale / total, "both_applicable": bool(app[i] and app[i + 1])})
    return prop, pd.DataFrame(rows)


def test_window_table_lists_the_window_or_says_why_not():
    prop, _ = _tables()
    table = window_table(prop).set_index("run")
    assert table.loc["a", "n_epochs"] == 6 and table.loc["a", "n_window"] == 4
    assert table.loc["a", "window_epochs"] == "1-3, 5" and table.loc["a", "reason"] == ""
    assert table.loc["a", "first_window_step"] == 10 and table.loc["a", "last_window_step"] == 50
    assert table.loc["b", "n_window"] == 0 and table.loc["b", "window_epochs"] == ""
    assert "not classified correctly (2 of 3 epochs)" in table.loc["b", "reason"]
    assert "no BC sample is mispredicted (1 of 3)" in table.loc["b", "reason"]
    assert table.loc["c", "reason"].startswith("some BA training sample is not classified correctly at every")
    no_bc = prop[prop["run"] == "a"].assign(applicable=0, n_ba_not_correct=0, n_bc_mispredicted=0)
    assert window_table(no_bc)["reason"].iloc[0].startswith("no BC training sample is mispredicted")


def test_window_summary_and_rate_table_against_loops():
    prop, steps = _tables()
    runs = pd.DataFrame({"run": ["a", "b", "c"], "status": ["ok", "ok", "diverged"]})
    summary = window_summary(prop, steps, runs).set_index("run")
    inside = steps[steps["both_applicable"]]
    a = inside[inside["run"] == "a"]
    assert list(a["epoch_from"]) == [1, 2]  # steps 1->2 and 2->3; 3->4, 4->5 leave the window
    assert summary.loc["a", "n_window_steps"] == 2
    assert summary.loc["a", "median_scale_share"] == pytest.approx(np.median(a["scale"] / a["total"]))
    assert summary.loc["a", "log_r_change"] == pytest.approx(a["total"].sum())
    assert summary.loc["a", "pooled_scale_share"] == pytest.approx(a["scale"].sum() / a["total"].sum())
    assert summary.loc["b", "n_window_steps"] == 0 and np.isnan(summary.loc["b", "median_scale_share"])
    assert summary.loc["c", "status"] == "diverged"
    rates = scale_share_by_rate(summary.reset_index())
    assert rates[["lr", "seeds", "seeds_with_window", "window_steps"]].values.tolist() == [[0.1, 2, 1, 2]]
    assert rates["median_scale_share"].iloc[0] == pytest.approx(summary.loc["a", "median_scale_share"])
    # without statuses every run counts; the median over runs of the runs' medians
    two = pd.DataFrame({"lr": [1.0, 1.0, 1.0], "n_window_steps": [3, 1, 2], "median_scale_share": [0.2, 0.9, 0.4],
                        "log_r_change": [1.0, 2.0, 6.0]})
    row = scale_share_by_rate(two).iloc[0]
    assert row["median_scale_share"] == pytest.approx(0.4) and row["mean_log_r_change"] == pytest.approx(3.0)
