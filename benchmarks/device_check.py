"""One prepared check of the trainer's accelerator path (CUDA, bfloat16 autocast), for a machine with a GPU.

It trains small runs on the given device and prints, for each check, PASS or FAIL with the figures:

1. a colored-mnist CNN sweep (2 rates) with ``--amp``: completes, every record finite, files readable on the CPU;
2. resume after a SIGKILL between epochs reproduces the uninterrupted run's records (exactly, or within a tolerance
   on GPU where kernels need not be deterministic; the difference is printed);
3. divergence at an absurd rate is caught (the GPU path checks every 25 steps and finds the exact step);
4. throughput against a bare loop on the same device (same shape as benchmarks/bench_trainer.py).

Usage: python benchmarks/device_check.py [--device cuda] [--out /tmp/probe_device_check]
Runs in about a minute on a GPU; ``--device cpu`` runs the same checks here.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

import probe
from probe.store.writer import FAULT_ENV


def sh(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "probe.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


def report(name: str, ok: bool, detail: str) -> bool:
    print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}", flush=True)
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default="/tmp/probe_device_check")
    args = ap.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    dev = ["--device", args.device] + (["--amp"] if args.device.startswith("cuda") else [])
    print(f"torch {torch.__version__}, cuda available: {torch.cuda.is_available()}, "
          f"device {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu'}", flush=True)
    results = []

    t = time.perf_counter()
    res = sh("sweep", "--dataset", "colored-mnist", "--model", "cnn", "--lr", "0.01", "0.1", "--epochs", "5",
             "--out", str(out / "sweep"), "--quiet", *dev)
    ok = res.returncode == 0
    detail = f"{time.perf_counter() - t:.1f} s"
    if ok:
        sweep = probe.open_sweep(out / "sweep")
        logits = [r.dynamics("test").logits for r in sweep.runs]
        passes = [[p for p, complete in map(r.data_pass_of, r.epochs) if complete] for r in sweep.runs]
        # every pass end recorded (0..5), plus the sweep's early points of the distance budget inside passes
        ok = all(np.isfinite(x).all() and x.shape[0] == len(r.epochs) for x, r in zip(logits, sweep.runs))
        ok = ok and all(p == list(range(6)) for p in passes)
        detail += f", test logits {[x.shape for x in logits]}, model on cpu: {type(sweep.runs[0].model()).__name__}"
    else:
        detail += " " + res.stderr.strip().splitlines()[-1]
    results.append(report("sweep with amp", ok, detail))

    common = ["train", "--dataset", "colored-mnist", "--model", "cnn", "--lr", "0.05", "--epochs", "4", "--quiet",
              *dev]
    full, part = out / "full", out / "part"
    sh(*common, "--out", str(full))
    killed = sh(*common, "--out", str(part), env={FAULT_ENV: "before-temp:3"})
    resumed = sh("train", "--resume", "--out", str(part), "--quiet")
    ok = killed.returncode == -signal.SIGKILL and resumed.returncode == 0
    if ok:
        a, b = probe.open_run(full), probe.open_run(part)
        diff = max(float(np.abs(a.records("test", e).logits - b.records("test", e).logits).max()) for e in a.epochs)
        ok = a.epochs == b.epochs and diff <= (0.0 if args.device == "cpu" else 1e-2)
        detail = f"max |logit difference| over epochs {diff:.3g}"
    else:
        detail = f"kill rc {killed.returncode}, resume rc {resumed.returncode}: {resumed.stderr.strip()[-300:]}"
    results.append(report("resume after SIGKILL", ok, detail))

    res = sh("train", "--dataset", "parity", "--model", "mlp", "--lr", "1e12", "--epochs", "3", "--quiet",
             "--out", str(out / "diverged"), *dev)
    run = probe.open_run(out / "diverged")
    d = run.diverged
    ok = res.returncode == 3 and d is not None and d["step"] <= 2
    results.append(report("divergence caught", ok, f"rc {res.returncode}, diverged.json {d}"))

    for record in ("all", "every:5"):
        bench = subprocess.run([sys.executable, str(Path(__file__).with_name("bench_trainer.py")), "--repeats", "2",
                                "--device", args.device, "--record", record], capture_output=True, text=True)
        ratio = [ln.strip() for ln in bench.stdout.splitlines() if "ratio" in ln or "steps/s" in ln]
        results.append(report(f"throughput on {args.device}, record {record}", bench.returncode == 0,
                              "; ".join(ratio) or bench.stderr.strip()[-300:]))
    print(f"{sum(results)} passed, {len(results) - sum(results)} failed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
