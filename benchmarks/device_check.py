"""One prepared check of the trainer's accelerator path (CUDA, bfloat16 autocast, channels-last ResNet-50 at 224 px),
for a machine with a GPU; ``--device cpu --quick`` runs the same checks at tiny sizes (the test suite does).

1. writes a small Waterbirds-format release with ``benchmarks/make_waterbirds.py``;
2. trains a ResNet-50 sweep on it (2 rates, a few steps, ``--amp`` on CUDA; conv models train channels-last) with
   the command line: completes, every record finite, the files readable on the CPU;
3. kills a run with SIGKILL once its first trained epoch is committed, resumes it and compares it with an
   uninterrupted run: on CUDA the final weights within a bfloat16 tolerance (relative L2 distance per tensor
   <= 2e-2; kernels need not be deterministic), on CPU every record and weight identical;
4. trains at an absurd rate: the loss's non-finite value is caught (exit code 3, status ``diverged``,
   ``diverged.json``);
5. measures ResNet-50 training images/s of the probe trainer (with ``--amp`` on CUDA) against a hand-written
   reference loop (the same autocast, memory format, optimiser and in-memory batches) on the same device, best of 2
   alternating repeats; the trainer's rate comes from the difference of two runs of 20 and 120 steps, so that
   set-up and epoch files cancel (target >= 0.95).

Checks 1-4 print PASS or FAIL and set the exit code; the throughput prints PASS or MISS against its target (it
depends on the machine's load, not on correctness). Needs no captum.

Usage: python benchmarks/device_check.py [--device cuda] [--out /tmp/probe_device_check] [--quick]
About 3-5 minutes on one GPU (most of it writing the images and ResNet-50's first steps); ``--device cpu --quick``:
32 px images, a ResNet-50 of width 8 and one torch thread (in this process and in the ``probe`` commands).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import probe
from probe.data.base import BC_RULE_LABEL_SPACE, Split, SpuriousDataset
from probe.models import build_model
from probe.train import TrainConfig, train
from probe.train.trainer import uses_channels_last

HERE = Path(__file__).resolve().parent
#: Throughput target: probe trainer images/s / reference loop images/s.
TARGET_THROUGHPUT = 0.95
#: Largest relative L2 distance per weight tensor between a resumed and an uninterrupted run on CUDA.
CUDA_WEIGHT_TOLERANCE = 2e-2


def sizes(quick: bool) -> dict:
    """Image side, model options, batch size, waterbirds fraction, epochs of the kill check, throughput steps, torch
    CPU threads (None: torch's own choice)."""
    if quick:
        return dict(image=32, model_options=["--model-option", "width=8"], model_kw={"width": 8}, batch=8,
                    fraction=0.004, epochs=3, bench_batch=8, bench_steps=(2, 10), bench_n=16, threads=1)
    return dict(image=224, model_options=[], model_kw={}, batch=32, fraction=0.02, epochs=4, bench_batch=64,
                bench_steps=(20, 120), bench_n=640, threads=None)


def cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "probe.cli", *args], capture_output=True, text=True, **kw)


def report(name: str, ok: bool, detail: str, words: tuple[str, str] = ("PASS", "FAIL")) -> bool:
    print(f"{words[0] if ok else words[1]}  {name}: {detail}", flush=True)
    return ok


def last_line(res: subprocess.CompletedProcess) -> str:
    lines = (res.stderr or res.stdout or "").strip().splitlines()
    return lines[-1] if lines else f"exit code {res.returncode}"


def kill_after_first_epoch(args: list[str], run_dir: Path, timeout: float = 600) -> tuple[int, bool]:
    """Start ``probe train ARGS``; SIGKILL it as soon as its epoch 1 file exists. Returns (exit code, killed)."""
    proc = subprocess.Popen([sys.executable, "-m", "probe.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    killed = False
    while proc.poll() is None and time.monotonic() < deadline:
        if (run_dir / "epoch_00001.h5").exists():
            proc.send_signal(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.02)
    if proc.poll() is None and not killed:
        proc.kill()
    return proc.wait(), killed


def weight_distance(a: dict, b: dict) -> float:
    """max over float tensors of ||a - b|| / max(||a||, tiny)."""
    worst = 0.0
    for k, v in a.items():
        v, w = torch.as_tensor(v).double(), torch.as_tensor(b[k]).double()
        if v.is_floating_point():
            worst = max(worst, float((v - w).norm() / v.norm().clamp_min(1e-12)))
    return worst


def synthetic_images(n: int, side: int, seed: int) -> SpuriousDataset:
    """An in-memory two-class dataset of ``n`` random images (throughput only: the values do not matter)."""
    g = torch.Generator().manual_seed(seed)

    def split(name: str, m: int) -> Split:
        y = torch.randint(0, 2, (m,), generator=g)
        a = torch.randint(0, 2, (m,), generator=g)
        return Split(name, torch.randn(m, 3, side, side, generator=g), y, a, a != y, torch.arange(m), 2)

    splits = {"train": split("train", n), "val": split("val", 8)}
    return SpuriousDataset("synthetic-images", 2, 2, (3, side, side), splits, BC_RULE_LABEL_SPACE,
                           "random tensors (device_check throughput)")


def reference_loop(dataset: SpuriousDataset, model_kw: dict, batch: int, steps: int, device: str, amp: bool,
                   warmup: int) -> float:
    """A hand-written AMP training loop (SGD momentum 0.9, the trainer's memory format); images/s after ``warmup``
    steps."""
    dev = torch.device(device)
    torch.manual_seed(0)
    model = build_model("resnet50", dataset.input_shape, dataset.num_classes, **model_kw).to(dev)
    if uses_channels_last(model):
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x, y = dataset.train.x.to(dev), dataset.train.y.to(dev)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0)).to(dev)
    model.train()
    start = 0.0
    for step in range(warmup + steps):
        if step == warmup:
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            start = time.perf_counter()
        s = (step * batch) % len(y)
        idx = order[s : s + batch]
        xb = x[idx].contiguous(memory_format=torch.channels_last)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(xb)
        loss = F.cross_entropy(logits.float(), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return steps * batch / (time.perf_counter() - start)


def trainer_seconds(dataset: SpuriousDataset, model_kw: dict, batch: int, steps: int, device: str, amp: bool,
                    out: Path) -> float:
    """Seconds of one probe trainer run of ``steps`` steps (records at its start and end only)."""
    cfg = TrainConfig(dataset="synthetic-images", model="resnet50", model_options=model_kw, lr=1e-3, momentum=0.9,
                      steps=steps, batch_size=batch, record="every:100000", record_splits=["val"], device=device,
                      amp=amp, early_fractions=())
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    result = train(cfg, out, dataset=dataset)
    seconds = time.perf_counter() - t
    if result.status != "complete":
        raise RuntimeError(f"throughput run of {steps} steps: {result.status}")
    return seconds


def throughput(dataset: SpuriousDataset, model_kw: dict, batch: int, steps: tuple[int, int], device: str, amp: bool,
               out: Path, repeats: int = 2) -> tuple[float, float]:
    """(probe trainer, reference loop) images/s, best of ``repeats`` alternating repeats after an untimed warm-up.

    The trainer's rate is ``(steps[1] - steps[0]) x batch`` over the difference of the seconds of two runs of those
    lengths, so that set-up, evaluation and the epoch files cancel; the reference loop times ``steps[1] - steps[0]``
    steps after ``steps[0]`` warm-up steps."""
    lo, hi = steps
    trainer_seconds(dataset, model_kw, batch, lo, device, amp, out)  # imports, allocator, convolution autotuning
    ours, ref = [], []
    for _ in range(repeats):
        ref.append(reference_loop(dataset, model_kw, batch, hi - lo, device, amp, warmup=lo))
        t_lo = trainer_seconds(dataset, model_kw, batch, lo, device, amp, out)
        t_hi = trainer_seconds(dataset, model_kw, batch, hi, device, amp, out)
        ours.append((hi - lo) * batch / max(t_hi - t_lo, 1e-9))
    return max(ours), max(ref)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default="/tmp/probe_device_check")
    ap.add_argument("--quick", action="store_true",
                    help="tiny sizes (32 px, ResNet-50 of width 8, one CPU thread): for CPU tests")
    args = ap.parse_args()
    size = sizes(args.quick)
    threads = [] if size["threads"] is None else ["--threads", str(size["threads"])]
    if size["threads"] is not None:  # tensors this small run fastest on one thread, above all on a busy machine
        torch.set_num_threads(size["threads"])
    cuda = args.device.startswith("cuda")
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    amp = ["--amp"] if cuda else []
    print(f"torch {torch.__version__}, cuda available: {torch.cuda.is_available()}, device "
          f"{torch.cuda.get_device_name(0) if cuda and torch.cuda.is_available() else args.device}, "
          f"{'quick' if args.quick else 'full'} sizes: {size['image']} px, batch {size['batch']}", flush=True)
    results = []
    began = time.perf_counter()

    # 1. a small Waterbirds release
    t = time.perf_counter()
    side = ["--min-side", "40", "--max-side", "72"] if args.quick else []
    made = subprocess.run([sys.executable, str(HERE / "make_waterbirds.py"), "--out", str(out / "wb"),
                           "--fraction", str(size["fraction"]), *side], capture_output=True, text=True)
    results.append(report("waterbirds release written", made.returncode == 0,
                          f"{made.stdout.strip() or last_line(made)} ({time.perf_counter() - t:.1f} s)"))
    if made.returncode != 0:
        return 1
    data = ["--dataset", "waterbirds", "--data-root", str(out / "wb"), "--image-size", str(size["image"]),
            "--model", "resnet50", *size["model_options"], "--batch-size", str(size["batch"]),
            "--device", args.device, "--workers", "2" if args.quick else "8", "--quiet", *threads, *amp]

    # 2. a sweep of two rates
    t = time.perf_counter()
    res = cli("sweep", *data, "--lr", "0.001", "0.01", "--epochs", "2", "--record", "all",
              "--out", str(out / "sweep"))
    ok = res.returncode == 0
    detail = f"{time.perf_counter() - t:.1f} s"
    if ok:
        sweep = probe.open_sweep(out / "sweep")
        logits = [r.dynamics("test").logits for r in sweep.runs]
        ok = len(sweep.runs) == 2 and all(np.isfinite(x).all() and x.shape[0] == len(r.epochs)
                                          for x, r in zip(logits, sweep.runs))
        ok = ok and all(r.status == "complete" for r in sweep.runs)
        detail += (f", {len(sweep.runs)} runs, test logits {[x.shape for x in logits]}, model on cpu: "
                   f"{type(sweep.runs[0].model()).__name__}")
    else:
        detail += ": " + last_line(res)
    results.append(report(f"resnet50 sweep at {size['image']} px{' with amp' if cuda else ''}", ok, detail))

    # 3. SIGKILL mid-run, resume, compare with an uninterrupted run
    common = ["train", *data, "--lr", "0.005", "--epochs", str(size["epochs"]), "--record", "all"]
    full, part = out / "full", out / "part"
    t = time.perf_counter()
    res_full = cli(*common, "--out", str(full))
    rc, killed = kill_after_first_epoch([*common, "--out", str(part)], part)
    resumed = cli("train", "--resume", "--out", str(part), "--quiet", *threads)
    ok = res_full.returncode == 0 and killed and rc == -signal.SIGKILL and resumed.returncode == 0
    if ok:
        a, b = probe.open_run(full), probe.open_run(part)
        last = a.epochs[-1]
        ok = a.epochs == b.epochs and b.status == "complete"
        distance = weight_distance(a.state_dict(last), b.state_dict(last))
        logit_diff = max(float(np.abs(a.records("test", e).logits - b.records("test", e).logits).max())
                         for e in a.epochs)
        if cuda:
            ok = ok and distance <= CUDA_WEIGHT_TOLERANCE
            detail = f"weights' relative L2 distance {distance:.3g} (tolerance {CUDA_WEIGHT_TOLERANCE})"
        else:
            sgd_equal = all(np.array_equal(a.sgd_records(e).loss, b.sgd_records(e).loss) for e in a.epochs[1:])
            ok = ok and distance == 0.0 and logit_diff == 0.0 and sgd_equal
            detail = f"weights' relative L2 distance {distance:.3g}, minibatch losses equal: {sgd_equal}"
        detail += f", max |test logit difference| over epochs {logit_diff:.3g}, {time.perf_counter() - t:.1f} s"
    else:
        detail = (f"uninterrupted rc {res_full.returncode}, killed {killed} (rc {rc}), resume rc {resumed.returncode}"
                  f": {last_line(resumed) if resumed.returncode else last_line(res_full)}")
    results.append(report("resume after SIGKILL", ok, detail))

    # 4. a divergent rate
    res = cli("train", *data, "--lr", "1e30", "--epochs", "2", "--out", str(out / "diverged"))
    try:
        run = probe.open_run(out / "diverged")
        status, d = run.status, run.diverged
    except Exception as err:  # noqa: BLE001 - reported as the check's failure
        status, d = f"unreadable ({err})", None
    ok = res.returncode == 3 and status == "diverged" and d is not None
    ok = ok and (out / "diverged" / "diverged.json").exists()
    results.append(report("divergence caught", ok, f"rc {res.returncode}, status {status}, diverged.json {d}"))

    # 5. throughput against a hand-written reference loop
    bench = synthetic_images(size["bench_n"], size["image"], 0)
    ours, ref = throughput(bench, size["model_kw"], size["bench_batch"], size["bench_steps"], args.device, cuda,
                           out / "bench")
    ratio = ours / ref
    report(f"resnet50 training throughput{' with amp' if cuda else ''}", ratio >= TARGET_THROUGHPUT,
           f"probe trainer {ours:.1f} images/s, reference loop {ref:.1f} images/s, ratio {ratio:.3f} "
           f"(target >= {TARGET_THROUGHPUT})", words=("PASS", "MISS"))

    print(f"{sum(results)} passed, {len(results) - sum(results)} failed ({time.perf_counter() - began:.0f} s)")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
