"""Accuracy by group against scikit-learn's accuracy_score / balanced_accuracy_score."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score

import probe
from probe.analyses.base import AnalysisContext
from probe.analyses.groups import group_accuracy_metrics, groups_epoch, worst_group
from probe.errors import ProbeInputError

K, A = 3, 3


def _sample(n=200, seed=0, skip_group=None):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, n)
    a = np.where(rng.random(n) < 0.7, y, rng.integers(0, A, n))
    if skip_group is not None:  # drop every sample of one group
        keep = y * A + a != skip_group
        y, a = y[keep], a[keep]
    pred = np.where(rng.random(len(y)) < 0.6, y, rng.integers(0, K, len(y)))
    return pred, y, a, a != y


def test_against_sklearn_per_group():
    pred, y, a, is_bc = _sample(skip_group=5)
    group = y * A + a
    train_counts = np.arange(1, K * A + 1) * 10
    m = group_accuracy_metrics(pred, y, a, is_bc, K, A, train_counts, min_group_size=1)

    assert m["acc"] == pytest.approx(accuracy_score(y, pred))
    per_group = {}
    for g in range(K * A):
        sel = group == g
        if sel.any():
            per_group[g] = accuracy_score(y[sel], pred[sel])
            assert m[f"acc_group/{g}"] == pytest.approx(per_group[g])
        else:
            assert np.isnan(m[f"acc_group/{g}"])
    assert 5 not in per_group
    assert m["wga"] == pytest.approx(min(per_group.values()))
    # mean group accuracy = balanced accuracy over groups, with "correct" encoded as predicting one's own group
    group_pred = np.where(pred == y, group, -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the -1 "wrong" label is not a true class
        balanced = balanced_accuracy_score(group, group_pred)
    assert m["mean_group_acc"] == pytest.approx(balanced)
    assert m["unbiased_acc"] == m["mean_group_acc"]
    assert m["acc_ba"] == pytest.approx(accuracy_score(y[~is_bc], pred[~is_bc]))
    assert m["acc_bc"] == pytest.approx(accuracy_score(y[is_bc], pred[is_bc]))
    weights = {g: train_counts[g] for g in per_group}
    expected = sum(weights[g] * per_group[g] for g in per_group) / sum(weights.values())
    assert m["avg_acc_trainweighted"] == pytest.approx(expected)


def test_known_small_case():
    # samples (y, a) -> group: (0,0)->0 right, (0,1)->1 wrong, (1,1)->3 right, (1,0)->2 right, (1,0)->2 wrong
    m = group_accuracy_metrics([0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 1, 1, 0, 0],
                               [False, True, False, True, True], 2, 2, train_group_counts=[90, 10, 10, 90],
                               min_group_size=1)
    assert m["acc"] == pytest.approx(0.6)
    assert [m[f"acc_group/{g}"] for g in range(4)] == [1.0, 0.0, 0.5, 1.0]
    assert m["wga"] == 0.0
    assert m["mean_group_acc"] == pytest.approx(0.625)
    assert m["avg_acc_trainweighted"] == pytest.approx((90 * 1 + 10 * 0 + 10 * 0.5 + 90 * 1) / 200)
    assert m["acc_ba"] == pytest.approx(1.0)
    assert m["acc_bc"] == pytest.approx(1 / 3)
    assert (m["n"], m["n_ba"], m["n_bc"]) == (5, 2, 3)
    assert [m[f"n_group/{g}"] for g in range(4)] == [1, 1, 2, 1]
    assert (m["wga_groups_used"], m["wga_groups_excluded"], m["wga_min_group_n"]) == (4, 0, 1)
    # with min_group_size 2 only group 2 (one right, one wrong) counts; the other three are listed as excluded
    m2 = group_accuracy_metrics([0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 1, 1, 0, 0],
                                [False, True, False, True, True], 2, 2, min_group_size=2)
    assert (m2["wga"], m2["wga_groups_used"], m2["wga_groups_excluded"], m2["wga_min_group_n"]) == (0.5, 1, 3, 2)
    assert m2["mean_group_acc"] == m["mean_group_acc"]  # over every non-empty group, small ones included


def _brute_force_counts(pred, y, a, is_bc, k, n_attrs, min_group_size):
    """Sample counts and wga by plain loops over samples and groups."""
    sizes, hits = {}, {}
    for p, yi, ai in zip(pred, y, a):
        g = int(yi) * n_attrs + int(ai)
        sizes[g] = sizes.get(g, 0) + 1
        hits[g] = hits.get(g, 0) + int(p == yi)
    used = [g for g in sizes if sizes[g] >= min_group_size]
    excluded = [g for g in sizes if sizes[g] < min_group_size]
    wga = min(hits[g] / sizes[g] for g in used) if used else float("nan")
    smallest = min(sizes[g] for g in used) if used else float("nan")
    n_bc = sum(1 for b in is_bc if b)
    return {"n": len(y), "n_ba": len(y) - n_bc, "n_bc": n_bc, "wga": wga, "wga_groups_used": len(used),
            "wga_groups_excluded": len(excluded), "wga_min_group_n": smallest,
            **{f"n_group/{g}": sizes.get(g, 0) for g in range(k * n_attrs)}}


@pytest.mark.parametrize("min_group_size", [1, 5, 20, 40, 1000])
@pytest.mark.parametrize("seed", [0, 1])
def test_counts_and_wga_with_min_group_size_against_loops(min_group_size, seed):
    # unequal groups (sizes from a handful to ~60) and one empty group
    pred, y, a, is_bc = _sample(n=220, seed=seed, skip_group=4)
    m = group_accuracy_metrics(pred, y, a, is_bc, K, A, min_group_size=min_group_size)
    expected = _brute_force_counts(pred, y, a, is_bc, K, A, min_group_size)
    assert {key: m[key] for key in expected} == pytest.approx(expected, nan_ok=True)
    assert m["n_group/4"] == 0 and np.isnan(m["acc_group/4"])
    assert m["wga_groups_used"] + m["wga_groups_excluded"] == K * A - 1  # every non-empty group is one or the other


def test_wga_is_nan_not_zero_when_no_group_is_large_enough():
    # 100 groups of 2..12 samples (the demo's unbiased test split): every prediction wrong in one group would give a
    # wga of 0 over all groups; with min_group_size 20 no group qualifies and wga says so
    rng = np.random.default_rng(0)
    sizes = rng.integers(2, 13, 100)
    group = np.repeat(np.arange(100), sizes)
    y, a = group // 10, group % 10
    pred = np.where(rng.random(len(y)) < 0.9, y, (y + 1) % 10)
    m = group_accuracy_metrics(pred, y, a, a != y, 10, 10)
    assert np.isnan(m["wga"]) and np.isnan(m["wga_min_group_n"])
    assert (m["wga_groups_used"], m["wga_groups_excluded"]) == (0, 100)
    assert [m[f"n_group/{g}"] for g in range(100)] == sizes.tolist()
    assert m["mean_group_acc"] == pytest.approx(np.mean([np.mean(pred[group == g] == y[group == g])
                                                         for g in range(100)]))


def test_worst_group_helper():
    w = worst_group([1.0, 0.0, np.nan, 0.5, 0.25], [30, 2, 0, 40, 19], 20)
    assert (w.wga, w.used, w.excluded, w.min_group_n) == (0.5, (0, 3), (1, 4), 30.0)
    none = worst_group([0.5], [3], 20)
    assert np.isnan(none.wga) and none.used == () and none.excluded == (0,) and np.isnan(none.min_group_n)
    with pytest.raises(ProbeInputError, match="min_group_size"):
        worst_group([0.5], [3], 0)
    with pytest.raises(ProbeInputError, match="entries"):
        worst_group([0.5, 0.1], [3], 1)


def test_no_attribute_and_no_train_counts():
    pred, y = np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2])
    m = group_accuracy_metrics(pred, y, np.zeros(4, int), np.zeros(4, bool), 3, 1)
    assert m["unbiased_acc"] == m["acc"] == pytest.approx(0.75)
    assert m["mean_group_acc"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert np.isnan(m["avg_acc_trainweighted"])
    assert np.isnan(m["acc_bc"])


@pytest.mark.parametrize(
    "args",
    [
        ([0, 3], [0, 1], [0, 0], [False, False], 3, 1),  # prediction out of range
        ([0, 1], [0, 1, 1], [0, 0], [False, False], 3, 1),  # length mismatch
        ([0, 1], [0, 1], [0, 2], [False, False], 3, 2),  # attribute out of range
    ],
)
def test_bad_input(args):
    with pytest.raises(ProbeInputError):
        group_accuracy_metrics(*args)


def test_bad_train_counts():
    with pytest.raises(ProbeInputError, match="K\\*A"):
        group_accuracy_metrics([0], [0], [0], [False], 2, 2, train_group_counts=[1, 2, 3])


@pytest.mark.parametrize("min_group_size", [None, 1, 10**6])
def test_groups_epoch_on_tiny_run(tiny_parity_run, min_group_size):
    run = probe.open_run(tiny_parity_run)
    epoch = run.epochs[-1]
    options = {} if min_group_size is None else {"min_group_size": min_group_size}
    out = groups_epoch(AnalysisContext(run, options=options), epoch)
    assert set(out) == set(run.splits)
    train = run.records("train", epoch)
    counts = np.bincount(train.y * run.num_attrs + train.a, minlength=run.num_classes * run.num_attrs)
    for split in run.splits:
        rec = run.records(split, epoch)
        pred = rec.logits.argmax(axis=1)
        assert out[split]["acc"] == pytest.approx(accuracy_score(rec.y, pred))
        expected = group_accuracy_metrics(pred, rec.y, rec.a, rec.is_bc, run.num_classes, run.num_attrs, counts,
                                          min_group_size=min_group_size or 20)
        assert out[split] == pytest.approx(expected, nan_ok=True)
        assert out[split]["n"] == len(rec.y) and out[split]["n_bc"] == int(np.sum(rec.is_bc))
        if min_group_size == 10**6:
            assert np.isnan(out[split]["wga"]) and out[split]["wga_groups_used"] == 0
