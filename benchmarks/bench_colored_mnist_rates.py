"""Unbiased test accuracy of the MLP on the embedded colored-mnist across learning rates (the dataset's acceptance
experiment), and the figure ``docs/img/colored_mnist_rates.png``.

MLP 256-256, plain SGD, batch 64, 2000 steps, 3 seeds, rates 0.01 .. 1, colored-mnist at rho 0.99 with its defaults
(4000 training samples from 958 digits, 5990 test samples: 599 digits x 10 colours). Prints the unbiased test
accuracy (mean over the 100 groups) per rate, mean and seed range, and the wall time.

    python benchmarks/bench_colored_mnist_rates.py [--out DIR] [--jobs 2] [--figure docs/img/colored_mnist_rates.png]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

RATES = (0.01, 0.03, 0.1, 0.3, 1.0)
SEEDS = (0, 1, 2)


def unbiased_accuracy_by_rate(out: Path, jobs: int = 2) -> dict[float, list[float]]:
    """Train the sweep into ``out`` and return ``{lr: [unbiased test accuracy per seed]}`` at the last step."""
    import probe
    from probe.train import TrainConfig, run_sweep

    base = TrainConfig(dataset="colored-mnist", dataset_options={"rho": 0.99}, model="mlp",
                       model_options={"width": 256, "depth": 2}, lr=0.1, steps=2000, batch_size=64,
                       record="log:3", record_splits=["test"], sgd_logits=False, device="cpu")
    run_sweep(base, out, {"lr": list(RATES), "seed": list(SEEDS)}, jobs=jobs, threads=1)
    acc: dict[float, list[float]] = {}
    for run in probe.open_sweep(out).runs:
        rec = run.records("test", run.epochs[-1])
        correct = rec.pred == rec.y
        acc.setdefault(run.lr, []).append(float(np.mean([correct[rec.group == g].mean()
                                                         for g in np.unique(rec.group)])))
    return dict(sorted(acc.items()))


def plot(acc: dict[float, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    rates = np.array(list(acc))
    values = [np.array(v) for v in acc.values()]
    mean = np.array([v.mean() for v in values])
    fig = Figure(figsize=(5.5, 3.6), layout="constrained")
    ax = fig.subplots()
    ax.fill_between(rates, [v.min() for v in values], [v.max() for v in values], alpha=0.25,
                    label=f"range over {len(values[0])} seeds")
    ax.plot(rates, mean, "o-", label="mean over seeds")
    for lr, v in acc.items():
        ax.plot(np.full(len(v), lr), v, "x", color="black", ms=4, alpha=0.6)
    ax.plot([], [], "x", color="black", ms=4, alpha=0.6, label="one seed")
    ax.axhline(0.1, color="grey", lw=0.8, ls=":", label="chance (0.1)")
    ax.set_xscale("log")
    ax.set_ylim(0, 1)
    ax.set_xlabel("learning rate (SGD, batch 64, 2000 steps)")
    ax.set_ylabel("unbiased test accuracy\n(mean over the 100 groups)")
    ax.set_title("colored-mnist (embedded, rho 0.99): test split, group-mean accuracy", fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="sweep directory (default: a temporary one)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--figure", help="write the figure here (PNG)")
    args = parser.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        acc = unbiased_accuracy_by_rate(Path(args.out or Path(tmp) / "sweep"), jobs=args.jobs)
    print(f"{len(RATES) * len(SEEDS)} runs in {time.perf_counter() - start:.0f} s (jobs {args.jobs}, 1 thread each)")
    print("lr      mean   min    max    seeds")
    for lr, v in acc.items():
        print(f"{lr:<7g} {np.mean(v):.3f}  {min(v):.3f}  {max(v):.3f}  {' '.join(f'{x:.3f}' for x in v)}")
    if args.figure:
        plot(acc, Path(args.figure))
        print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
