"""Linear probes and DFR: protocol (disjoint, group-balanced splits) and known decodability cases."""

from __future__ import annotations

import numpy as np
import pytest

from probe.analyses.probes import (
    balanced_probe_split,
    dfr_last_layer,
    dfr_wga,
    dfr_worst_group,
    linear_probe,
    probe_core,
    probe_spurious,
    worst_group_accuracy,
)
from probe.errors import ProbeInputError


def _independent_labels(n, k, a_vals, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, k, n), rng.integers(0, a_vals, n), rng


def _one_hot(v, k):
    return np.eye(k)[v]


def test_balanced_split_is_disjoint_and_group_balanced():
    # group sizes 50, 20, 7, 100 (y, a) = (0,0), (0,1), (1,0), (1,1), plus a singleton group (2, 0)
    y = np.repeat([0, 0, 1, 1, 2], [50, 20, 7, 100, 1])
    a = np.repeat([0, 1, 0, 1, 0], [50, 20, 7, 100, 1])
    perm = np.random.default_rng(0).permutation(len(y))
    y, a = y[perm], a[perm]
    fit, score = balanced_probe_split(y, a, seed=3)
    assert len(np.intersect1d(fit, score)) == 0
    for idx in (fit, score):
        pairs, counts = np.unique(np.stack([y[idx], a[idx]], 1), axis=0, return_counts=True)
        # the singleton group cannot be on both sides and is left out; the smallest kept group has 7 -> 3 a side
        assert sorted(map(tuple, pairs.tolist())) == [(0, 0), (0, 1), (1, 0), (1, 1)]
        assert counts.tolist() == [3, 3, 3, 3]
    again = balanced_probe_split(y, a, seed=3)
    assert np.array_equal(again[0], fit) and np.array_equal(again[1], score)
    other = balanced_probe_split(y, a, seed=4)
    assert not np.array_equal(other[0], fit)


def test_balanced_split_rejects_data_without_a_splittable_group():
    with pytest.raises(ProbeInputError):
        balanced_probe_split([0, 1, 2], [0, 1, 0], seed=0)
    with pytest.raises(ProbeInputError):
        balanced_probe_split([0, 1], [0, 1, 0], seed=0)


@pytest.mark.parametrize("k", [2, 4])
def test_probe_core_decodes_y_and_not_a(k):
    y, a, rng = _independent_labels(1600, k, k, seed=1)
    # y one-hot (linearly decodable) plus noise dimensions; a appears nowhere
    features = np.hstack([_one_hot(y, k) + 0.1 * rng.normal(size=(len(y), k)), rng.normal(size=(len(y), 6))])
    assert probe_core(features, y, a) > 0.97
    assert abs(probe_spurious(features, y, a) - 1 / k) < 0.12


@pytest.mark.parametrize("k", [2, 4])
def test_probe_spurious_decodes_a_and_not_y(k):
    y, a, rng = _independent_labels(1600, k, k, seed=2)
    features = np.hstack([_one_hot(a, k) + 0.1 * rng.normal(size=(len(y), k)), rng.normal(size=(len(y), 6))])
    assert probe_spurious(features, y, a) > 0.97
    assert abs(probe_core(features, y, a) - 1 / k) < 0.12


def test_linear_probe_rejects_overlapping_or_degenerate_sets():
    x = np.random.default_rng(0).normal(size=(10, 3))
    t = np.array([0, 1] * 5)
    with pytest.raises(ProbeInputError):
        linear_probe(x, t, [0, 1, 2], [2, 3])
    with pytest.raises(ProbeInputError):
        linear_probe(x, t, [0, 2, 4], [1, 3])  # fit set holds only target 0
    with pytest.raises(ProbeInputError):
        linear_probe(x[:, 0], t, [0, 1], [2, 3])


def test_worst_group_accuracy_matches_a_loop():
    rng = np.random.default_rng(0)
    pred, y, g = rng.integers(0, 3, 200), rng.integers(0, 3, 200), rng.integers(0, 7, 200)
    expected = 1.0
    for group in set(g.tolist()):
        members = [i for i in range(200) if g[i] == group]
        expected = min(expected, sum(pred[i] == y[i] for i in members) / len(members))
    assert worst_group_accuracy(pred, y, g) == pytest.approx(expected)


@pytest.mark.parametrize("min_group_size", [1, 10, 30, 500])
def test_worst_group_accuracy_with_min_group_size_matches_a_loop(min_group_size):
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(6), [3, 9, 10, 29, 30, 119])  # unequal groups around the thresholds
    pred, y = rng.integers(0, 2, len(g)), rng.integers(0, 2, len(g))
    accs = {}
    for group in range(6):
        members = [i for i in range(len(g)) if g[i] == group]
        if len(members) >= min_group_size:
            accs[group] = sum(pred[i] == y[i] for i in members) / len(members)
    got = worst_group_accuracy(pred, y, g, min_group_size)
    if accs:
        assert got == pytest.approx(min(accs.values()))
    else:
        assert np.isnan(got)


def _spurious_data(n, k, rho, core_scale, seed):
    """Features with a core dimension block (one-hot y, noisy) and a strong spurious block (one-hot a)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    aligned = rng.random(n) < rho
    a = np.where(aligned, y, rng.integers(0, k, n))
    x = np.hstack(
        [
            core_scale * _one_hot(y, k) + 0.3 * rng.normal(size=(n, k)),
            3.0 * _one_hot(a, k) + 0.3 * rng.normal(size=(n, k)),
            rng.normal(size=(n, 4)),
        ]
    )
    return x, y, a, y * k + a


@pytest.mark.parametrize("k", [2, 3])
def test_dfr_recovers_the_core_feature_from_group_balanced_heldout_data(k):
    # held-out data biased (rho = 0.9), test unbiased: the group-balanced refit must rely on the core block
    val_x, val_y, _, val_g = _spurious_data(1200, k, 0.9, 1.0, seed=0)
    test_x, test_y, _, test_g = _spurious_data(600, k, 1 / k, 1.0, seed=1)
    assert dfr_wga(val_x, val_y, val_g, test_x, test_y, test_g, num_retrains=5) > 0.9
    layer = dfr_last_layer(val_x, val_y, val_g, num_retrains=3)
    assert layer.coef_.shape == ((1 if k == 2 else k), val_x.shape[1])
    # the retrained layer weighs the core block more than the spurious block
    assert np.abs(layer.coef_[:, :k]).sum() > np.abs(layer.coef_[:, k : 2 * k]).sum()


def test_dfr_leaves_small_test_groups_out_and_counts_them():
    val_x, val_y, _, val_g = _spurious_data(1200, 2, 0.9, 1.0, seed=0)
    test_x, test_y, test_a, test_g = _spurious_data(600, 2, 0.95, 1.0, seed=1)  # BC groups small: about 15 each
    sizes = np.bincount(test_g)
    m = 40
    kept = [g for g in range(len(sizes)) if sizes[g] >= m]
    assert 0 < len(kept) < np.count_nonzero(sizes)
    worst = dfr_worst_group(val_x, val_y, val_g, test_x, test_y, test_g, num_retrains=3, min_group_size=m)
    assert worst.used == tuple(kept)
    assert worst.excluded == tuple(g for g in range(len(sizes)) if 0 < sizes[g] < m)
    assert worst.min_group_n == min(sizes[g] for g in kept)
    # the same last layer scored by hand on the groups kept
    layer = dfr_last_layer(val_x, val_y, val_g, num_retrains=3)
    pred = layer.predict(test_x)
    assert worst.wga == pytest.approx(min(np.mean(pred[test_g == g] == test_y[test_g == g]) for g in kept))
    assert dfr_wga(val_x, val_y, val_g, test_x, test_y, test_g, num_retrains=3, min_group_size=m) == worst.wga
    # no test group has 10**4 samples: NaN, never 0
    assert np.isnan(dfr_wga(val_x, val_y, val_g, test_x, test_y, test_g, num_retrains=3, min_group_size=10**4))


def test_dfr_is_at_chance_without_a_core_feature():
    val_x, val_y, _, val_g = _spurious_data(600, 2, 0.5, 0.0, seed=0)
    test_x, test_y, _, test_g = _spurious_data(600, 2, 0.5, 0.0, seed=1)
    assert dfr_wga(val_x, val_y, val_g, test_x, test_y, test_g, num_retrains=5) < 0.65


def test_dfr_rejects_a_single_class():
    x = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.raises(ProbeInputError):
        dfr_last_layer(x, np.zeros(20, dtype=int), np.zeros(20, dtype=int))


def test_no_dfr_with_zero_retrains(tiny_colored_sweep):
    """``dfr_retrains=0`` runs the probes but not deep feature reweighting: no dfr_wga."""
    import torch

    from probe.analyses.base import AnalysisContext, load_analyses, resolve_options
    from probe.store.reader import open_sweep

    run = open_sweep(tiny_colored_sweep).runs[0]
    probes = load_analyses()["probes"].fn

    def measured(retrains):
        options = resolve_options({"dfr_retrains": retrains}, ["probes"])
        return probes(AnalysisContext(run, device=torch.device("cpu"), cache_dir=None, options=options), run.epochs[-1])

    with_dfr, without = measured(1), measured(0)
    assert "dfr_wga" in with_dfr.get("test", {}) and "test" not in without
    assert without["val"]["probe_core"] == with_dfr["val"]["probe_core"]


def test_linear_probe_agrees_with_the_sklearn_pipeline():
    """The torch L2 fit reaches scikit-learn's optimum: the same balanced accuracy as a tightly solved
    ``StandardScaler + LogisticRegression(C)``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y, a, rng = _independent_labels(800, 3, 2, seed=7)
    features = np.hstack([0.7 * _one_hot(y, 3) + rng.normal(size=(len(y), 3)), rng.normal(size=(len(y), 5))])
    fit, score = balanced_probe_split(y, a, seed=0)
    for C in (0.05, 1.0):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=C, tol=1e-10, max_iter=10000))
        expected = balanced_accuracy_score(y[score], model.fit(features[fit], y[fit]).predict(features[score]))
        for solver in ("numpy", "sklearn", "torch"):
            assert linear_probe(features, y, fit, score, C=C, solver=solver) == pytest.approx(expected)


def test_dfr_with_either_solver_chooses_the_same_c_and_predictions():
    x, y, a, groups = _spurious_data(400, 2, 0.9, 1.0, seed=5)
    layers = [dfr_last_layer(x, y, groups, num_retrains=3, solver=s) for s in ("sklearn", "torch", "numpy")]
    for layer in layers[1:]:
        assert layer.C == layers[0].C
        assert np.mean(layer.predict(x) == layers[0].predict(x)) > 0.99
        assert np.abs(layer.coef_ - layers[0].coef_).max() < 1e-2
    with pytest.raises(ProbeInputError, match="unknown solver"):
        dfr_last_layer(x, y, groups, solver="newton")


def test_dfr_l1_fit_matches_liblinear():
    """``_fit_l1`` (one-vs-rest, liblinear's objective with the penalised intercept) against liblinear at a tight
    tolerance."""
    from sklearn.linear_model import LogisticRegression

    from probe.analyses.probes import _fit_l1

    x, y, _, _ = _spurious_data(600, 3, 0.5, 1.0, seed=3)
    x = (x - x.mean(0)) / x.std(0)
    for solver in ("torch", "numpy"):
        coef, intercept = _fit_l1(x, y, np.arange(3), 0.1, solver=solver)
        for c in range(3):
            ref = LogisticRegression(l1_ratio=1.0, C=0.1, solver="liblinear", tol=1e-12, max_iter=100000)
            ref.fit(x, (y == c).astype(np.int64))
            assert np.abs(coef[c] - ref.coef_[0]).max() < 1e-3
            assert intercept[c] == pytest.approx(ref.intercept_[0], abs=1e-3)
