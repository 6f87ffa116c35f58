"""probe's solvers of the linear probes and DFR (numpy, the default, and torch) against the scikit-learn fits, in the
same run.

On synthetic demo-size features (ReLU features of a latent holding a 10-class label and a 4-valued attribute,
2300 held-out x 256 features, groups ``y * 4 + a``), times

- ``linear_probe``: :func:`probe.analyses.probes.linear_probe` with ``solver="numpy"`` (``l2_logistic_np``) and
  ``solver="torch"`` (``multinomial_l2``) against ``StandardScaler + LogisticRegression(C=1, lbfgs)``, predicting
  ``y`` (10 values) and ``a`` (4 values);
- DFR: :func:`probe.analyses.probes.dfr_last_layer` with ``solver="numpy"`` (``l1_logistic_np``: 7 C values x 10
  one-vs-rest problems in one batched solve, then 20 retrains x 10 problems as 0/1 sample weights) and
  ``solver="torch"`` (``l1_logistic``) against a loop of liblinear fits (the same subsamples);

and prints the seconds of each (best of ``--repeats``, alternating), the ratio sklearn / solver, and the agreement
with scikit-learn: the largest absolute difference of the coefficients (the probe's against an lbfgs fit on the same
standardised fit set; DFR's averaged last layer), the difference of the probe's balanced accuracy, of DFR's chosen C
and of its worst-group test accuracy. Not part of the test suite; about two minutes on 2 CPU cores (the liblinear
loop dominates).

    python benchmarks/bench_solvers.py [--repeats 1] [--n 2300] [--features 256]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from probe.analyses.probes import (
    DFR_C_GRID,
    DFRLastLayer,
    _balanced_subsample,
    balanced_probe_split,
    dfr_last_layer,
    linear_probe,
    one_blas_thread,
    worst_group_accuracy,
)
from probe.analyses.solvers import l2_logistic_np, multinomial_l2

CLASSES, ATTRS = 10, 4
SOLVERS = ("numpy", "torch")  # probe's; scikit-learn's is the reference


def demo_features(n: int, num_features: int, seed: int, latent: int = 32) -> tuple[np.ndarray, ...]:
    """ReLU features of a latent with one direction per class and per attribute value (correlated, near low rank),
    every (y, a) group about equally frequent, as in the demo's counterfactual-complete evaluation splits."""
    rng = np.random.default_rng(seed)
    y, a = rng.integers(0, CLASSES, n), rng.integers(0, ATTRS, n)
    design = np.random.default_rng(0)  # the same feature map for every split
    class_dirs, attr_dirs = design.normal(size=(CLASSES, latent)), 1.5 * design.normal(size=(ATTRS, latent))
    proj = design.normal(size=(latent, num_features)) / np.sqrt(latent)
    h = class_dirs[y] + attr_dirs[a] + rng.normal(size=(n, latent))
    x = np.maximum(h @ proj + 0.3 * rng.normal(size=(n, num_features)), 0)
    return x, y, a, y * ATTRS + a


def sklearn_probe(x, t, fit_idx, score_idx) -> tuple[float, np.ndarray]:
    """The former ``linear_probe``: balanced accuracy and the coefficients."""
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    with warnings.catch_warnings(), one_blas_thread():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x[fit_idx], t[fit_idx])
        predicted = model.predict(x[score_idx])
    return float(balanced_accuracy_score(t[score_idx], predicted)), model[-1].coef_


def sklearn_dfr(x, y, groups, c_grid=DFR_C_GRID, num_retrains=20, seed=0) -> DFRLastLayer:
    """The former ``dfr_last_layer``: one liblinear fit per C, class and retrain (the same random draws)."""
    classes = np.unique(y)
    rng = np.random.default_rng(seed)

    def fit_l1(xf, yf, C):
        targets = [yf == classes[1]] if len(classes) == 2 else [yf == c for c in classes]
        coefs, intercepts = [], []
        with warnings.catch_warnings(), one_blas_thread():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for t in targets:
                clf = LogisticRegression(l1_ratio=1.0, C=C, solver="liblinear", random_state=seed)
                clf.fit(xf, t.astype(np.int64))
                coefs.append(clf.coef_[0])
                intercepts.append(clf.intercept_[0])
        return np.array(coefs), np.array(intercepts)

    order = rng.permutation(len(x))
    score_half, fit_half = order[: len(x) // 2], order[len(x) // 2 :]
    fit_half = fit_half[_balanced_subsample(groups[fit_half], rng)]
    scaler = StandardScaler().fit(x[fit_half])
    x_fit, x_score = scaler.transform(x[fit_half]), scaler.transform(x[score_half])
    totals = []
    for C in c_grid:
        coef, intercept = fit_l1(x_fit, y[fit_half], C)
        layer = DFRLastLayer(C, classes, np.zeros(x.shape[1]), np.ones(x.shape[1]), coef, intercept)
        totals.append(worst_group_accuracy(layer.predict(x_score), y[score_half], groups[score_half]))
    best_c = float(c_grid[int(np.argmax(totals))])
    scaler = StandardScaler().fit(x)
    xs = scaler.transform(x)
    fits = [fit_l1(xs[idx], y[idx], best_c) for idx in (_balanced_subsample(groups, rng) for _ in range(num_retrains))]
    return DFRLastLayer(best_c, classes, scaler.mean_, scaler.scale_, np.mean([f[0] for f in fits], 0),
                        np.mean([f[1] for f in fits], 0))


def best_of(repeats: int, fns: dict) -> tuple[dict, dict]:
    """Best seconds and the last result of each function, calls alternating."""
    seconds, results = {k: float("inf") for k in fns}, {}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            results[name] = fn()
            seconds[name] = min(seconds[name], time.perf_counter() - start)
    return seconds, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--n", type=int, default=2300)
    parser.add_argument("--features", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(1)
    x, y, a, groups = demo_features(args.n, args.features, seed=1)
    test_x, test_y, _, test_groups = demo_features(args.n, args.features, seed=2)
    fit_idx, score_idx = balanced_probe_split(y, a)
    linear_probe(x, y, fit_idx, score_idx, solver="torch")  # torch's first call pays its start-up once

    print(f"{args.n} x {args.features} features, {CLASSES} classes x {ATTRS} attribute values, "
          f"torch {torch.__version__} ({torch.get_num_threads()} thread), best of {args.repeats}")
    print(f"{'fit':<26} {'solver':<7} {'seconds':>8} {'sklearn / it':>12} {'max |coef diff|':>16} {'score diff':>11}")
    for name, t in (("linear_probe y (10)", y), ("linear_probe a (4)", a)):
        seconds, results = best_of(args.repeats, {
            "sklearn": lambda t=t: sklearn_probe(x, t, fit_idx, score_idx),
            **{solver: (lambda t=t, solver=solver: linear_probe(x, t, fit_idx, score_idx, solver=solver))
               for solver in SOLVERS},
        })
        xs = StandardScaler().fit_transform(x[fit_idx])
        labels = np.unique(t[fit_idx], return_inverse=True)[1]
        coefs = {"numpy": l2_logistic_np(xs, labels, tol=1e-6).coef,
                 "torch": multinomial_l2(torch.from_numpy(xs), torch.from_numpy(labels), tol=1e-6).coef.numpy()}
        print(f"{name:<26} {'sklearn':<7} {seconds['sklearn']:>8.3f}")
        for solver in SOLVERS:
            coef_diff = np.abs(coefs[solver] - results["sklearn"][1]).max()
            print(f"{'':<26} {solver:<7} {seconds[solver]:>8.3f} {seconds['sklearn'] / seconds[solver]:>12.1f} "
                  f"{coef_diff:>16.2e} {results[solver] - results['sklearn'][0]:>+11.4f}")

    seconds, results = best_of(args.repeats, {
        "sklearn": lambda: sklearn_dfr(x, y, groups),
        **{solver: (lambda solver=solver: dfr_last_layer(x, y, groups, solver=solver)) for solver in SOLVERS},
    })
    ref = results["sklearn"]
    wga = {k: worst_group_accuracy(layer.predict(test_x), test_y, test_groups) for k, layer in results.items()}
    print(f"{'dfr_last_layer (7 C, 20)':<26} {'sklearn':<7} {seconds['sklearn']:>8.3f}")
    for solver in SOLVERS:
        new = results[solver]
        coef_diff = np.abs(ref.coef_ - new.coef_).max() if ref.C == new.C else float("nan")
        print(f"{'':<26} {solver:<7} {seconds[solver]:>8.3f} {seconds['sklearn'] / seconds[solver]:>12.1f} "
              f"{coef_diff:>16.2e} {wga[solver] - wga['sklearn']:>+11.4f}")
    print("DFR chosen C: " + ", ".join(f"{k} {layer.C}" for k, layer in results.items())
          + "; worst-group test accuracy: " + ", ".join(f"{k} {v:.4f}" for k, v in wga.items())
          + f"; max |coef| {np.abs(ref.coef_).max():.3f}")

if __name__ == "__main__":
    main()
