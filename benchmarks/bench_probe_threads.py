"""Linear-probe fits with the machine's BLAS threads against one BLAS thread (what ``probe.analyses.probes`` uses).

For each problem size (samples x features x classes, from the demo's 1100 x 256 x 10 to a ResNet-50-like
5000 x 2048), fits the probe's ``StandardScaler + LogisticRegression(C=1)`` on synthetic features with a weak class
signal, alternating the two settings, and prints the best of ``--repeats`` times of each and their ratio (default
threads / one thread: above 1 means one thread is faster). Both fits reach the same optimum; the script checks that
their predictions agree. Not part of the test suite; about half a minute on 2 CPU cores.

    python benchmarks/bench_probe_threads.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
import warnings
from contextlib import nullcontext

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_info

from probe.analyses.probes import one_blas_thread

SIZES = ((1100, 256, 10), (2000, 512, 2), (5000, 2048, 2), (5000, 2048, 10))


def fit_once(x: np.ndarray, y: np.ndarray, one_thread: bool) -> tuple[float, np.ndarray]:
    """Seconds of one fit + predict, and the predictions."""
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    start = time.perf_counter()
    with warnings.catch_warnings(), (one_blas_thread() if one_thread else nullcontext()):
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y)
        pred = model.predict(x)
    return time.perf_counter() - start, pred


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    blas = ", ".join(f"{i['internal_api']} {i['num_threads']} threads" for i in threadpool_info()
                     if i["user_api"] == "blas")
    print(f"BLAS: {blas}")
    print(f"{'samples x features x classes':>30} {'default (s)':>12} {'one thread (s)':>15} {'ratio':>7}")
    rng = np.random.default_rng(0)
    for n, f, k in SIZES:
        y = rng.integers(0, k, n)
        x = rng.normal(size=(n, f))
        x[:, :k] += np.eye(k)[y]
        best = {False: float("inf"), True: float("inf")}
        preds = {}
        for _ in range(args.repeats):
            for one in (False, True):
                seconds, preds[one] = fit_once(x, y, one)
                best[one] = min(best[one], seconds)
        agree = float((preds[False] == preds[True]).mean())
        print(f"{f'{n} x {f} x {k}':>30} {best[False]:>12.3f} {best[True]:>15.3f} "
              f"{best[False] / best[True]:>7.1f}   predictions agree on {agree:.1%}")


if __name__ == "__main__":
    main()
