"""Cost of ``probe analyze`` per epoch file, next to the cost of reading that file: the ratios the project is judged on.

Trains a small sweep in-process (default: colored-mnist, MLP width 64, 4 runs = 2 rates x 2 seeds, 10 epochs, every
epoch recorded), times ``read`` for every epoch file (opening the run, verifying the file against the manifest's
sha256, reading every recorded split, the SGD minibatch records and the model tensors), then prints, measured in this
one run, each ratio beside its target with PASS / MISS:

(a) the model-level analyses but probes + DFR (pruning, sparsity, geometry, attribution, and the model load and
    forward passes they share), per model epoch (the last of each run), from the per-analysis timings of
    :func:`probe.analyses.engine.analyze` (cache off), over reading that epoch file (target <= 10);
(b) probes + DFR on the last epoch of one run (features extracted, not cached), over one forward pass of the same model
    over the split the probes fit on (target <= 30); run in a subprocess cut off after ``--probe-timeout`` seconds;
    beside it the linear probes alone, and the cost of one gradient of all of DFR's resample fits at once, in
    forward passes, and the Newton steps the solver took over them;
(c) a cached ``probe analyze`` of the sweep (default model epochs), end to end in a fresh process, report included
    (target <= 5 s), after an in-process ``analyze`` filled the analyses' cache and a first ``probe analyze`` drew the
    report (filling the figure and attribution-grid caches): the best wall time of ``--cached-repeats`` runs (3),
    with their median and the CPU seconds each used (a figure that load from other work does not inflate much);
    probes enter it only when (b) finished within the cut-off (otherwise filling the cache alone would exceed the
    bench's time).

Also printed: the record-level analyses (groups, logits, losses, proposition) per epoch file over its read, the
dataset build an ``analyze`` does once per distinct dataset, and ``probe.load_analysis`` in a fresh process. Not part
of the test suite; about two minutes on 2 CPU cores.

    python benchmarks/bench_analyze.py [--epochs 10] [--width 64] [--probe-timeout 30] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from probe.analyses.base import load_analyses
from probe.store import open_run, open_sweep
from probe.train import TrainConfig, run_sweep

TARGET_MODEL = 10.0  # (a) model-level analyses but probes / read
TARGET_PROBES = 30.0  # (b) probes + DFR / one forward pass over the probes' split
TARGET_CACHED = 5.0  # (c) seconds of a cached `probe analyze`, report included

# (b) in a fresh process: one forward pass over the held-out split, then the probes analysis on a fresh context (no
# feature cache: features extracted inside it), the dataset built beforehand and shared
PROBES_SCRIPT = """
import json, sys, time, torch
torch.set_num_threads(1)
from probe.analyses.base import AnalysisContext, load_analyses, resolve_options
from probe.analyses.features import split_outputs
from probe.store import open_run
registry = load_analyses()
run = open_run(sys.argv[1]); epoch = run.epochs[-1]
options = resolve_options({}, ["probes"])
ctx = AnalysisContext(run, options=options)
held_out = "val" if "val" in ctx.dataset.splits else "test"
with run.reading_epoch(epoch):
    model = ctx.model(epoch)
    split_outputs(model, ctx.dataset.split(held_out), options["batch_size"])  # warm-up
    start = time.perf_counter()
    split_outputs(model, ctx.dataset.split(held_out), options["batch_size"])
    forward = time.perf_counter() - start
    print(json.dumps({"forward": forward, "split": held_out, "n": len(ctx.dataset.split(held_out))}), flush=True)
    fresh = AnalysisContext(run, options=options)
    fresh.dataset = ctx.dataset
    start = time.perf_counter()
    registry["probes"].fn(fresh, epoch)
    print(json.dumps({"probes": time.perf_counter() - start}), flush=True)
    alone = AnalysisContext(run, options={**options, "dfr_retrains": 0})  # the two linear probes without DFR
    alone.dataset = ctx.dataset
    start = time.perf_counter()
    registry["probes"].fn(alone, epoch)
    print(json.dumps({"probes_alone": time.perf_counter() - start}), flush=True)
    # the floor of DFR's resample fits: one gradient of all of them at once (scores and their gradient, two products
    # of the shared features with the (fits, F + 1) weights), and the Newton steps the solver took
    import numpy as np
    from threadpoolctl import threadpool_limits
    from probe.analyses import probes
    steps, solve = [], probes.l1_logistic_np
    def counted(*args, **kwargs):
        fit = solve(*args, **kwargs)
        steps.append([len(args[1]), fit.n_iter])
        return fit
    probes.l1_logistic_np = counted
    feats = probes.EpochFeatures(fresh, epoch)["val"]
    split = ctx.dataset.split("val")
    probes.dfr_last_layer(feats, split.y.numpy(), split.group.numpy(), num_retrains=options["dfr_retrains"])
    xa = np.hstack([feats, np.ones((len(feats), 1))]).astype(np.float64)
    weights = np.random.default_rng(0).normal(size=(steps[-1][0], xa.shape[1]))
    with threadpool_limits(1, "blas"):
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            (weights @ xa.T) @ xa
            best = min(best, time.perf_counter() - start)
    print(json.dumps({"resample_fits": steps[-1][0], "resample_steps": steps[-1][1], "gradient": best}), flush=True)
"""


def read_epoch(run_path: Path, epoch: int) -> float:
    """Seconds to open a run afresh and read everything one epoch file holds."""
    start = time.perf_counter()
    run = open_run(run_path)
    for split in run.splits:
        run.records(split, epoch)
    run.sgd_records(epoch)
    run.state_dict(epoch)
    return time.perf_counter() - start


def verdict(value: float, target: float) -> str:
    return "PASS" if value <= target else "MISS"


def probes_ratio(run_path: Path, timeout: float) -> tuple[dict, bool]:
    """(b) in a subprocess: ``{"forward": s, "split": name, "n": samples, "probes": s}`` (``probes`` missing when it
    was cut off after ``timeout`` seconds) and whether it finished."""
    found: dict = {}
    try:
        done = subprocess.run([sys.executable, "-c", PROBES_SCRIPT, str(run_path)], capture_output=True, text=True,
                              timeout=timeout, check=True)
        stdout, finished = done.stdout, True
    except subprocess.TimeoutExpired as cut:
        stdout, finished = (cut.stdout or b"").decode() if isinstance(cut.stdout, bytes) else (cut.stdout or ""), False
    except subprocess.CalledProcessError as failed:
        print(f"(b) failed: {failed.stderr.strip().splitlines()[-1] if failed.stderr else failed}")
        stdout, finished = failed.stdout or "", False
    for line in stdout.splitlines():
        found.update(json.loads(line))
    return found, finished and "probes" in found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--probe-timeout", type=float, default=30.0,
                        help="seconds after which (b)'s probes + DFR run is cut off and reported as a MISS")
    parser.add_argument("--cached-repeats", type=int, default=3, help="timed runs of (c) (default 3)")
    parser.add_argument("--keep", help="write the sweep and the analysis here instead of a temporary folder")
    args = parser.parse_args()
    torch.set_num_threads(1)
    registry = load_analyses()
    from probe.analyses.engine import analyze

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

        model_level = [n for n, a in registry.items() if a.needs_model and n != "probes"]
        start = time.perf_counter()
        result = analyze(sweep_dir, out=root / "analysis_a", model_epochs="last", progress=False, use_cache=False,
                         analyses=[n for n in registry if n != "probes"])
        total = time.perf_counter() - start
        t = result.timings
        cheap = t[~t["analysis"].isin(model_level)].groupby(["run", "epoch"])["seconds"].sum()
        model = t[t["analysis"].isin(model_level)].groupby(["run", "epoch"])["seconds"].sum()

        record_ratios = [seconds / reads[key] for key, seconds in cheap.items()]
        print(f"\nrecord-level analyses (groups, logits, losses, proposition), per epoch file: median "
              f"{statistics.median(cheap):.4f} s vs read {statistics.median(reads.values()):.4f} s; ratio median "
              f"{statistics.median(record_ratios):.1f}, max {max(record_ratios):.1f}")

        print(f"\n{'run':16s} {'epoch':>5s} {'read s':>8s} {'model-level s':>14s} {'ratio':>7s}")
        model_ratios = []
        for (run, epoch), seconds in model.items():
            model_ratios.append(seconds / reads[(run, epoch)])
            print(f"{run:16s} {epoch:5d} {reads[(run, epoch)]:8.4f} {seconds:14.4f} {model_ratios[-1]:7.1f}")
        per = t[t["analysis"].isin(model_level)].groupby("analysis")["seconds"].median().sort_values(ascending=False)
        print("  per analysis (median s per model epoch): " + ", ".join(f"{k} {v:.3f}" for k, v in per.items()))
        start = time.perf_counter()
        sweep.runs[0].dataset()
        print(f"  plus once per analyze, in the first analysis that needs it: the dataset build "
              f"({time.perf_counter() - start:.2f} s, shared by the runs); analyze total (no report) {total:.1f} s "
              f"for {n_files} epoch files")

        ratio_a = statistics.median(model_ratios)
        found, finished = probes_ratio(sweep.runs[0].path, args.probe_timeout)
        forward = found.get("forward", float("nan"))
        if finished:
            ratio_b = found["probes"] / forward
            b_text = f"{ratio_b:.0f} (probes + DFR {found['probes']:.2f} s / forward {forward:.4f} s)"
        else:
            ratio_b = float("inf")
            b_text = f"> {args.probe_timeout / forward:.0f} (cut off after {args.probe_timeout:.0f} s)"
        b_split = f"{found.get('split', '?')} split, {found.get('n', '?')} samples"
        if "gradient" in found:
            floor = found["gradient"] / forward
            b_floor = (f"    (b) without DFR (the two linear probes, features extracted): "
                       f"{found['probes_alone'] / forward:.0f} forward passes ({found['probes_alone']:.2f} s)\n"
                       f"    (b)'s floor: one gradient of DFR's {found['resample_fits']} resample fits at once takes "
                       f"{found['gradient'] * 1e3:.1f} ms = {floor:.1f} forward passes; the solver took "
                       f"{found['resample_steps']} Newton steps over them, each at least one gradient and one "
                       f"line-search evaluation: >= {2 * floor * found['resample_steps']:.0f} forward passes")
        else:
            b_floor = "    (b)'s floor: not measured (the run was cut off)"

        out = root / "analysis_a"  # its cache holds (a)'s results; the fill adds the other default model epochs
        scope = None if finished else [n for n in registry if n != "probes"]
        start = time.perf_counter()
        analyze(sweep_dir, out=out, progress=False, analyses=scope)
        fill = time.perf_counter() - start
        cli = [sys.executable, "-m", "probe.cli", "analyze", str(sweep_dir), "--out", str(out), "--quiet"]
        if scope is not None:
            cli += ["--analyses", *scope]
        first = time.perf_counter()
        subprocess.run(cli, capture_output=True, text=True, check=False)  # draws the report, fills its caches
        first = time.perf_counter() - first
        walls, cpus = [], []
        for _ in range(args.cached_repeats):
            used = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            again = subprocess.run(cli, capture_output=True, text=True, check=False)
            walls.append(time.perf_counter() - start)
            now = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append(now.ru_utime + now.ru_stime - used.ru_utime - used.ru_stime)
        cached = min(walls)
        c_scope = "every analysis" if finished else "every analysis but probes (not filled: (b) was cut off)"

        print(f"\n{'ratio':64s} {'measured':>40s} {'target':>8s}")
        print(f"{'(a) model-level analyses but probes / read, per model epoch':64s} "
              f"{f'median {ratio_a:.1f}, max {max(model_ratios):.1f}':>40s} {'<= 10':>8s}  "
              f"{verdict(ratio_a, TARGET_MODEL)}")
        print(f"{'(b) probes + DFR / one forward pass (' + b_split + ')':64s} {b_text:>40s} {'<= 30':>8s}  "
              f"{verdict(ratio_b, TARGET_PROBES)}")
        print(b_floor)
        print(f"{'(c) cached probe analyze, report included, fresh process':64s} "
              f"{f'{cached:.1f} s (median {statistics.median(walls):.1f} s)':>40s} {'<= 5 s':>8s}  "
              f"{verdict(cached, TARGET_CACHED)}")
        print(f"    (c) covers {c_scope}; best and median wall time of {len(walls)} runs, each using "
              f"{min(cpus):.1f}-{max(cpus):.1f} s of CPU (user + system); before them the cache fill took "
              f"{fill:.1f} s and the first probe analyze, which draws the report, {first:.1f} s; exit code "
              f"{again.returncode}")

        script = ("import time; t = time.perf_counter(); import probe; "
                  f"probe.load_analysis({str(out)!r}); print(time.perf_counter() - t)")
        fresh = float(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                                     check=True).stdout)
        print(f"load_analysis: {fresh:.2f} s in a fresh process (imports included)")


if __name__ == "__main__":
    main()
