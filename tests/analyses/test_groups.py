"""Accuracy by group against scikit-learn's accuracy_score / balanced_accuracy_score."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score

import probe
from probe.analyses.base import AnalysisContext
from probe.analyses.groups import group_accuracy_metrics, groups_epoch
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
    m = group_accuracy_metrics(pred, y, a, is_bc, K, A, train_counts)

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
                               [False, True, False, True, True], 2, 2, train_group_counts=[90, 10, 10, 90])
    assert m["acc"] == pytest.approx(0.6)
    assert [m[f"acc_group/{g}"] for g in range(4)] == [1.0, 0.0, 0.5, 1.0]
    assert m["wga"] == 0.0
    assert m["mean_group_acc"] == pytest.approx(0.625)
    assert m["avg_acc_trainweighted"] == pytest.approx((90 * 1 + 10 * 0 + 10 * 0.5 + 90 * 1) / 200)
    assert m["acc_ba"] == pytest.approx(1.0)
    assert m["acc_bc"] == pytest.approx(1 / 3)


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


def test_groups_epoch_on_tiny_run(tiny_parity_run):
    run = probe.open_run(tiny_parity_run)
    epoch = run.epochs[-1]
    out = groups_epoch(AnalysisContext(run), epoch)
    assert set(out) == set(run.splits)
    train = run.records("train", epoch)
    counts = np.bincount(train.y * run.num_attrs + train.a, minlength=run.num_classes * run.num_attrs)
    for split in run.splits:
        rec = run.records(split, epoch)
        pred = rec.logits.argmax(axis=1)
        assert out[split]["acc"] == pytest.approx(accuracy_score(rec.y, pred))
        expected = group_accuracy_metrics(pred, rec.y, rec.a, rec.is_bc, run.num_classes, run.num_attrs, counts)
        assert out[split] == pytest.approx(expected, nan_ok=True)
