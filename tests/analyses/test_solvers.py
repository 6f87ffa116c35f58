"""The torch logistic-regression solvers against scikit-learn's fits of the same objectives."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from probe.analyses.solvers import l1_logistic, l1_logistic_np, l2_logistic_np, multinomial_l2
from probe.errors import ProbeInputError


def _random_case(n, f, k, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, f))
    y = np.argmax(x[:, :k] * 1.5 + rng.normal(size=(n, k)), axis=1) if k > 2 else (x[:, 0] + rng.normal(size=n) > 0)
    return x, y.astype(np.int64)


def _digits(classes=10, n=600):
    data = load_digits()
    keep = np.flatnonzero(data.target < classes)[:n]
    return StandardScaler().fit_transform(data.data[keep]), data.target[keep]


def _breast_cancer():
    data = load_breast_cancer()
    return StandardScaler().fit_transform(data.data), data.target.astype(np.int64)


def _softmax_objective(x, y, C, coef, intercept):
    """C * sum CE + ||coef||^2 / 2, written out with numpy (one row: the binary form)."""
    scores = x @ coef.T + intercept
    if scores.shape[1] == 1:
        scores = np.hstack([np.zeros_like(scores), scores])
    top = scores.max(1, keepdims=True)
    log_norm = top[:, 0] + np.log(np.exp(scores - top).sum(1))
    return C * np.sum(log_norm - scores[np.arange(len(y)), y]) + 0.5 * np.sum(coef**2)


def _l1_objective(x, t, C, coef, intercept):
    """C * sum log(1 + exp(-s (x.w + b))) + ||w||_1 + |b| (liblinear's penalised intercept), with numpy."""
    margins = np.where(t, 1.0, -1.0) * (x @ coef + intercept)
    return C * np.sum(np.logaddexp(0, -margins)) + np.abs(coef).sum() + abs(intercept)


def _sklearn_l1(x, t, C, tol=1e-12):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = LogisticRegression(l1_ratio=1.0, C=C, solver="liblinear", tol=tol, max_iter=100000)
        clf.fit(x, t.astype(np.int64))
    return clf.coef_[0], clf.intercept_[0]


L2_CASES = {
    "random 3 classes": lambda: _random_case(300, 8, 3, 0),
    "random binary": lambda: _random_case(300, 8, 2, 1),
    "digits 10 classes": lambda: _digits(),
    "breast cancer": _breast_cancer,
}


@pytest.mark.parametrize("case", sorted(L2_CASES))
@pytest.mark.parametrize("C", [0.1, 1.0])
def test_multinomial_l2_matches_sklearn_lbfgs(case, C):
    x, y = L2_CASES[case]()
    ref = LogisticRegression(C=C, tol=1e-10, max_iter=100000).fit(x, y)
    fit = multinomial_l2(torch.from_numpy(x), torch.from_numpy(y), C, tol=1e-8)
    assert fit.all_converged
    coef, intercept = fit.coef.numpy(), fit.intercept.numpy()
    assert coef.shape == ref.coef_.shape and intercept.shape == ref.intercept_.shape
    scale = max(1.0, np.abs(ref.coef_).max())
    assert np.abs(coef - ref.coef_).max() < 1e-4 * scale
    # sklearn's multinomial intercepts are defined up to a common shift; both sum to zero here
    assert np.abs(intercept - (ref.intercept_ - (ref.intercept_.mean() if len(intercept) > 1 else 0))).max() < 1e-3
    ours, theirs = _softmax_objective(x, y, C, coef, intercept), _softmax_objective(x, y, C, ref.coef_, ref.intercept_)
    assert fit.objective.item() == pytest.approx(ours, rel=1e-10)
    assert ours <= theirs + 1e-8 * abs(theirs)
    assert np.array_equal(np.argmax(np.hstack([np.zeros((len(x), 1)), x @ coef.T + intercept]) if len(intercept) == 1
                                     else x @ coef.T + intercept, 1), ref.predict(x))


def test_multinomial_l2_with_sample_weights_matches_sklearn():
    x, y = _random_case(200, 5, 3, 2)
    weight = np.random.default_rng(0).uniform(0.2, 2.0, len(y))
    ref = LogisticRegression(C=0.5, tol=1e-10, max_iter=100000).fit(x, y, sample_weight=weight)
    fit = multinomial_l2(torch.from_numpy(x), torch.from_numpy(y), 0.5, sample_weight=torch.from_numpy(weight),
                         tol=1e-8)
    assert np.abs(fit.coef.numpy() - ref.coef_).max() < 1e-5


L1_CASES = {
    "random": lambda: _random_case(400, 10, 2, 3),
    "breast cancer": _breast_cancer,
    "digits 3 vs rest": lambda: (_digits()[0], _digits()[1] == 3),
}


@pytest.mark.parametrize("method", ["newton", "fista"])
@pytest.mark.parametrize("case", sorted(L1_CASES))
@pytest.mark.parametrize("C", [0.05, 1.0])
def test_l1_logistic_matches_sklearn_liblinear(method, case, C):
    x, t = L1_CASES[case]()
    t = np.asarray(t, dtype=bool)
    ref_coef, ref_intercept = _sklearn_l1(x, t, C)
    fit = l1_logistic(torch.from_numpy(x), torch.from_numpy(t)[None], C, tol=1e-8, method=method)
    coef, intercept = fit.coef[0].numpy(), fit.intercept[0].item()
    ours, theirs = _l1_objective(x, t, C, coef, intercept), _l1_objective(x, t, C, ref_coef, ref_intercept)
    assert fit.objective.item() == pytest.approx(ours, rel=1e-10)
    assert ours <= theirs + 1e-7 * theirs
    assert fit.stop_value.item() <= 1e-8 or not fit.all_converged
    assert np.abs(coef - ref_coef).max() < 1e-3 * max(1.0, np.abs(ref_coef).max())
    assert intercept == pytest.approx(ref_intercept, abs=1e-3)


def test_l1_sparsity_pattern_matches_sklearn_on_a_well_conditioned_case():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(500, 20))
    t = x[:, :4] @ np.array([2.0, -1.5, 1.0, 0.8]) + 0.3 + rng.logistic(size=500) > 0
    for C in (0.02, 0.05, 0.1):
        ref_coef, _ = _sklearn_l1(x, t, C)
        fit = l1_logistic(torch.from_numpy(x), torch.from_numpy(t)[None], C, tol=1e-8)
        assert fit.all_converged
        assert np.array_equal(fit.coef[0].numpy() == 0, ref_coef == 0), C
        assert 0 < np.count_nonzero(ref_coef) < 20


@pytest.mark.parametrize("method", ["newton", "fista"])
def test_batched_l1_members_match_individual_sklearn_fits(method):
    """(G, P) batch: 3 subsamples of different sizes (0/1 weights), each with 2 targets x 2 C values."""
    x, y = _digits(classes=4, n=500)
    rng = np.random.default_rng(5)
    sizes = (500, 350, 200)
    masks = np.zeros((3, len(y)), dtype=bool)
    for g, size in enumerate(sizes):
        masks[g, rng.permutation(len(y))[:size]] = True
    Cs = np.array([0.05, 0.5])
    targets = np.stack([y == 1, y == 2])  # (R, n)
    batch_targets = np.broadcast_to(targets[None, None], (3, 2, 2, len(y))).reshape(3, 4, len(y))
    batch_C = np.repeat(Cs, 2)[None].repeat(3, 0)
    weight = np.broadcast_to(masks[:, None, :], batch_targets.shape).astype(np.float64)
    xs = torch.from_numpy(np.broadcast_to(x, (3,) + x.shape).copy())
    fit = l1_logistic(xs, torch.from_numpy(batch_targets.copy()), torch.from_numpy(batch_C),
                      sample_weight=torch.from_numpy(weight.copy()), tol=1e-8, method=method)
    assert fit.coef.shape == (3, 4, x.shape[1]) and fit.intercept.shape == (3, 4)
    for g in range(3):
        for p in range(4):
            C, t = batch_C[g, p], batch_targets[g, p]
            ref_coef, ref_intercept = _sklearn_l1(x[masks[g]], t[masks[g]], C)
            coef = fit.coef[g, p].numpy()
            assert np.abs(coef - ref_coef).max() < 2e-3, (g, p)
            assert fit.intercept[g, p].item() == pytest.approx(ref_intercept, abs=2e-3)
            ours = _l1_objective(x[masks[g]], t[masks[g]], C, coef, fit.intercept[g, p].item())
            assert ours <= _l1_objective(x[masks[g]], t[masks[g]], C, ref_coef, ref_intercept) * (1 + 1e-7)


def test_shared_features_batch_and_warm_start_agree_with_single_fits():
    x, t = _breast_cancer()
    xt, tt = torch.from_numpy(x), torch.from_numpy(t.astype(bool))
    batch = l1_logistic(xt, torch.stack([tt, ~tt]), torch.tensor([0.3, 0.1]), tol=1e-8)
    for i, (target, C) in enumerate(((tt, 0.3), (~tt, 0.1))):
        single = l1_logistic(xt, target[None], C, tol=1e-8)
        assert torch.allclose(batch.coef[i], single.coef[0], atol=1e-5)
    warm = l1_logistic(xt, tt[None], 0.3, tol=1e-8, init=(batch.coef[0], batch.intercept[0]))
    assert warm.n_iter <= 2 and torch.allclose(warm.coef, batch.coef[:1], atol=1e-6)


def test_not_converged_is_reported():
    x, y = _digits()
    assert not multinomial_l2(torch.from_numpy(x), torch.from_numpy(y), 1.0, tol=1e-9, max_iter=2).all_converged
    fit = l1_logistic(torch.from_numpy(x), torch.from_numpy(y == 3)[None], 1.0, tol=1e-8, max_iter=1)
    assert not fit.all_converged and fit.stop_value.item() > 1e-8


def test_bad_inputs_raise_probe_input_error():
    x, y = _random_case(50, 3, 3, 0)
    xt, yt, tt = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(y == 1)[None]
    for C in (0.0, -1.0):
        with pytest.raises(ProbeInputError):
            multinomial_l2(xt, yt, C)
        with pytest.raises(ProbeInputError):
            l1_logistic(xt, tt, C)
    with pytest.raises(ProbeInputError):
        multinomial_l2(xt, yt[:-1])  # mismatched shapes
    with pytest.raises(ProbeInputError):
        l1_logistic(xt, tt[:, :-1], 1.0)
    with pytest.raises(ProbeInputError):
        l1_logistic(xt, tt, torch.ones(3))  # C does not fit the one problem
    with pytest.raises(ProbeInputError):
        multinomial_l2(xt, torch.zeros(50, dtype=torch.int64))  # a single class
    with pytest.raises(ProbeInputError):
        l1_logistic(xt, torch.ones(1, 50, dtype=torch.bool), 1.0)
    with pytest.raises(ProbeInputError):
        multinomial_l2(xt[:, 0], yt)
    with pytest.raises(ProbeInputError):
        l1_logistic(xt, tt, 1.0, sample_weight=-torch.ones(50))


# -- numpy solvers ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["digits", "binary"])
@pytest.mark.parametrize("C", [0.05, 1.0])
def test_l2_logistic_np_matches_sklearn_lbfgs(case, C):
    x, y = _digits(classes=4, n=400) if case == "digits" else _breast_cancer()
    fit = l2_logistic_np(x, y, C, tol=1e-8)
    ref = LogisticRegression(C=C, tol=1e-12, max_iter=100000).fit(x, y)
    assert fit.all_converged
    ours = _softmax_objective(x, y, C, fit.coef, fit.intercept)
    theirs = _softmax_objective(x, y, C, ref.coef_, ref.intercept_)
    assert ours <= theirs * (1 + 1e-8)
    assert np.abs(fit.coef - ref.coef_).max() < 1e-3


@pytest.mark.parametrize("C", [0.01, 0.1, 1.0])
def test_l1_logistic_np_matches_sklearn_liblinear(C):
    x, y = _breast_cancer()
    t = y == 1
    fit = l1_logistic_np(x, t[None], C, tol=1e-8)
    coef, intercept = _sklearn_l1(x, t, C)
    assert fit.all_converged
    ours = _l1_objective(x, t, C, fit.coef[0], fit.intercept[0])
    assert ours == pytest.approx(_l1_objective(x, t, C, coef, intercept), rel=1e-7)
    assert np.abs(fit.coef[0] - coef).max() < 1e-3 * max(1.0, np.abs(coef).max())


def test_l1_logistic_np_shared_curvature_and_weights_match_single_fits():
    """Resamples as 0/1 weights with one curvature matrix per target reach each resample's own liblinear optimum."""
    x, y = _digits(classes=3, n=450)
    rng = np.random.default_rng(0)
    masks = (rng.random((4, len(x))) < 0.8).astype(np.float64)
    targets = np.stack([y == c for c in range(3)])
    fit = l1_logistic_np(x, np.tile(targets, (4, 1)), 0.3, sample_weight=np.repeat(masks, 3, axis=0),
                         curvature_groups=np.tile(np.arange(3), 4), tol=1e-6)
    assert fit.all_converged
    for p in range(12):
        keep = masks[p // 3] > 0
        t = targets[p % 3][keep]
        coef, intercept = _sklearn_l1(x[keep], t, 0.3)
        ours = _l1_objective(x[keep], t, 0.3, fit.coef[p], fit.intercept[p])
        assert ours == pytest.approx(_l1_objective(x[keep], t, 0.3, coef, intercept), rel=1e-6)



def test_l1_logistic_np_on_wide_features_keeps_its_matrices_to_the_working_sets(monkeypatch):
    """600 features, 6 of them informative: single fits and resamples sharing a curvature reach liblinear's optimum,
    and no Newton step solves a system much wider than the sparse solutions (never 600 x 600)."""
    from probe.analyses import solvers

    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 600))
    y = (x[:, :6] @ np.array([2.0, -2.0, 1.5, -1.5, 1.0, 1.0]) + 0.5 * rng.normal(size=300)) > 0
    widths = []
    solve = solvers._l1_quadratic_cd

    def recorded(hess, grad, w, target, **kwargs):
        widths.append(hess.shape[-1])
        return solve(hess, grad, w, target, **kwargs)

    monkeypatch.setattr(solvers, "_l1_quadratic_cd", recorded)
    masks = (rng.random((5, len(x))) < 0.7).astype(np.float64)
    for C in (0.05, 0.3):  # 6 and 62 non-zero weights (liblinear at tol 1e-8: at 1e-12 it takes a minute here)
        single = l1_logistic_np(x, y[None], C, tol=1e-8)
        resampled = l1_logistic_np(x, np.tile(y, (5, 1)), C, sample_weight=masks, curvature_groups=np.zeros(5, int),
                                   tol=1e-7)
        assert single.all_converged and resampled.all_converged
        coef, intercept = _sklearn_l1(x, y, C, tol=1e-8)
        assert np.array_equal(single.coef[0] != 0, coef != 0)
        assert np.abs(single.coef[0] - coef).max() < 1e-3 * max(1.0, np.abs(coef).max())
        for p in range(5):
            keep = masks[p] > 0
            coef, intercept = _sklearn_l1(x[keep], y[keep], C, tol=1e-8)
            ours = _l1_objective(x[keep], y[keep], C, resampled.coef[p], resampled.intercept[p])
            assert ours <= _l1_objective(x[keep], y[keep], C, coef, intercept) * (1 + 1e-6)
    assert max(widths) < 200

def test_numpy_solvers_reject_bad_inputs():
    x, y = _breast_cancer()
    with pytest.raises(ProbeInputError, match="both classes"):
        l1_logistic_np(x, np.zeros((1, len(x)), dtype=bool), 1.0)
    with pytest.raises(ProbeInputError, match="C must be"):
        l1_logistic_np(x, (y == 1)[None], -1.0)
    with pytest.raises(ProbeInputError, match="curvature_groups"):
        l1_logistic_np(x, (y == 1)[None], 1.0, curvature_groups=[0, 1])
    with pytest.raises(ProbeInputError, match="non-finite"):
        l2_logistic_np(np.full((3, 2), np.nan), [0, 1, 0])


def test_l1_logistic_np_hessians_in_chunks_give_the_same_fit(monkeypatch):
    """A memory bound that forms one Hessian at a time changes no result."""
    from probe.analyses import solvers

    x, y = _digits(classes=3, n=300)
    rng = np.random.default_rng(1)
    masks = (rng.random((4, len(x))) < 0.8).astype(np.float64)
    targets = np.tile(np.stack([y == c for c in range(3)]), (4, 1))
    weights = np.repeat(masks, 3, axis=0)

    def fit():
        return l1_logistic_np(x, targets, 0.3, sample_weight=weights, curvature_groups=np.tile(np.arange(3), 4),
                              tol=1e-7)

    whole = fit()
    monkeypatch.setattr(solvers, "HESSIAN_CHUNK_BYTES", 1)  # one curvature key per pass
    chunked = fit()
    assert whole.all_converged and chunked.all_converged
    np.testing.assert_allclose(chunked.coef, whole.coef, rtol=0, atol=1e-10)
    np.testing.assert_allclose(chunked.intercept, whole.intercept, rtol=0, atol=1e-10)
