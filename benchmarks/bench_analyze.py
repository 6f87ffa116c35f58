"""Cost of ``probe analyze`` per epoch file, next to the cost of reading that file.

Trains a small sweep in-process (default: colored-mnist, MLP width 64, 4 runs = 2 rates x 2 seeds, 10 epochs, every
epoch recorded: 44 epoch files), then for every epoch file times

- ``read``: opening the run, verifying the file against the manifest's sha256, and reading every recorded split,
  the SGD minibatch records and the model tensors;
- ``analyze``: the record-level analyses of ``probe analyze`` on that epoch (groups, logits, losses, proposition),
  from the per-analysis timings of :func:`probe.analyses.engine.analyze` (cache off);

and prints both and their ratio, then the model-level analyses (features, probes, pruning, attributions) on the last
epoch of each run, the same ratio, the time of a second ``analyze`` that the cache answers, and the time of reading
the analysis back with :func:`probe.load_analysis` in a fresh process (imports included) and in this one. Not part of
the test suite; under two minutes on 2 CPU cores.

    python benchmarks/bench_analyze.py [--epochs 10] [--width 64] [--keep DIR]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from probe.analyses.base import load_analyses
from probe.analyses.engine import analyze, load_analysis
from probe.store import open_run, open_sweep
from probe.train import TrainConfig, run_sweep


def read_epoch(run_path: Path, epoch: int) -> float:
    """Seconds to open a run afresh and read everything one epoch file holds."""
    start = time.perf_counter()
    run = open_run(run_path)
    for split in run.splits:
        run.records(split, epoch)
    run.sgd_records(epoch)
    run.state_dict(epoch)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--keep", help="write the sweep and the analysis here instead of a temporary folder")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_analyses()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        sweep_dir = root / "bench_sweep"
        start = time.perf_counter()
        base = TrainConfig(dataset="colored-mnist", model="mlp", model_options={"width": args.width}, lr=0.1,
                           epochs=args.epochs, batch_size=64, record="all", device="cpu")
        run_sweep(base, sweep_dir, {"lr": [0.03, 0.3], "seed": [0, 1]}, overwrite=True)
        sweep = open_sweep(sweep_dir)
        n_files = sum(len(r.epochs) for r in sweep.runs)
        print(f"trained {len(sweep.runs)} runs x {args.epochs} epochs ({n_files} epoch files) in "
              f"{time.perf_counter() - start:.1f} s")

        reads = {(r.name, e): read_epoch(r.path, e) for r in sweep.runs for e in r.epochs}

        start = time.perf_counter()
        result = analyze(sweep_dir, out=root / "analysis", model_epochs="last", progress=False,
                         use_cache=False)
        total = time.perf_counter() - start
        t = result.timings
        heavy = {n for n, needs in result.config["analyses"].items() if needs}
        cheap = t[~t["analysis"].isin(heavy)].groupby(["run", "epoch"])["seconds"].sum()
        model = t[t["analysis"].isin(heavy)].groupby(["run", "epoch"])["seconds"].sum()

        print(f"\n{'run':16s} {'epoch':>5s} {'read s':>8s} {'analyze s':>10s} {'ratio':>7s}")
        ratios = []
        for (run, epoch), seconds in cheap.items():
            ratio = seconds / reads[(run, epoch)]
            ratios.append(ratio)
            print(f"{run:16s} {epoch:5d} {reads[(run, epoch)]:8.4f} {seconds:10.4f} {ratio:7.1f}")
        print(f"\nrecord-level analyses (groups, logits, losses, proposition), per epoch file: median "
              f"{statistics.median(cheap):.4f} s vs read {statistics.median(reads.values()):.4f} s; ratio median "
              f"{statistics.median(ratios):.1f}, max {max(ratios):.1f}")
        for (run, epoch), seconds in model.items():
            print(f"model-level analyses ({', '.join(sorted(heavy))}) on {run} epoch {epoch}: {seconds:.2f} s = "
                  f"{seconds / reads[(run, epoch)]:.0f} x its read")
        per = t[t["analysis"].isin(heavy)].groupby("analysis")["seconds"].mean().sort_values(ascending=False)
        print("  per analysis (mean s per epoch): " + ", ".join(f"{k} {v:.2f}" for k, v in per.items()))
        print(f"analyze total (no report): {total:.1f} s for {n_files} epoch files")

        start = time.perf_counter()
        again = analyze(sweep_dir, out=root / "analysis", model_epochs="last", progress=False)
        print(f"second analyze answered by the cache: {time.perf_counter() - start:.1f} s "
              f"({int(again.timings['cached'].sum())}/{len(again.timings)} results cached)")

        script = ("import time; t = time.perf_counter(); import probe; "
                  f"probe.load_analysis({str(root / 'analysis')!r}); print(time.perf_counter() - t)")
        fresh = float(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                                     check=True).stdout)
        start = time.perf_counter()
        load_analysis(root / "analysis")
        print(f"load_analysis: {fresh:.2f} s in a fresh process (imports included), "
              f"{time.perf_counter() - start:.3f} s in this one")


if __name__ == "__main__":
    main()
