"""Trainer overhead: throughput with per-epoch records and checkpoints, as a ratio to a bare PyTorch loop.

Both loops train the same model (the small CNN unless --model says otherwise) on the same in-memory data
(colored-mnist, embedded digits) with the same batch size and number of epochs, in this one process, alternating
repeats so that machine load hits both alike. Prints:

- trainer throughput / bare-loop throughput (target >= 0.90 for the small CNN on colored-mnist on CPU),
- time spent evaluating splits and writing epoch files, as fractions of the trainer's epoch time,
- bytes per epoch file.

Usage: python benchmarks/bench_trainer.py [--model cnn] [--epochs 10] [--repeats 3] [--record all]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import probe
from probe.data import build_dataset
from probe.models import build_model
from probe.store import writer as writer_module
from probe.train import TrainConfig, train
from probe.train import trainer as trainer_module


def bare_loop(dataset, model_name: str, epochs: int, batch_size: int, lr: float, seed: int,
              device: str = "cpu") -> float:
    """A plain hand-written loop: shuffle, slice, forward, backward, step. Returns seconds."""
    torch.manual_seed(seed)
    model = build_model(model_name, dataset.input_shape, dataset.num_classes).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    x, y = dataset.train.x.to(device), dataset.train.y.to(device)
    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=g).to(device)
        for s in range(0, len(y), batch_size):
            idx = order[s : s + batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


class Timers:
    def __init__(self):
        self.commit = 0.0
        self.evaluate = 0.0

    def wrap(self):
        commit, evaluate = writer_module.RunWriter.commit_epoch, trainer_module.evaluate_split

        def timed_commit(w, payload):
            t = time.perf_counter()
            try:
                return commit(w, payload)
            finally:
                self.commit += time.perf_counter() - t

        def timed_eval(*a, **k):
            t = time.perf_counter()
            try:
                return evaluate(*a, **k)
            finally:
                self.evaluate += time.perf_counter() - t

        writer_module.RunWriter.commit_epoch = timed_commit
        trainer_module.evaluate_split = timed_eval


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--record", default="all")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (both loops run there)")
    args = ap.parse_args()
    torch.set_flush_denormal(True)
    dataset = build_dataset("colored-mnist")
    steps = args.epochs * -(-len(dataset.train) // args.batch_size)
    timers = Timers()
    timers.wrap()
    bare, ours, sizes = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            bare.append(bare_loop(dataset, args.model, args.epochs, args.batch_size, 0.1, r, args.device))
            cfg = TrainConfig(dataset="colored-mnist", model=args.model, lr=0.1, epochs=args.epochs,
                              batch_size=args.batch_size, seed=r, record=args.record, device=args.device)
            out = Path(tmp) / f"run{r}"
            t = time.perf_counter()
            train(cfg, out, dataset=dataset)
            ours.append(time.perf_counter() - t)
            sizes = [e["size"] for e in probe.open_run(out).manifest["epochs"]]
    b, o = statistics.median(bare), statistics.median(ours)
    n_files = len(sizes)
    print(f"model={args.model} data=colored-mnist (embedded, {len(dataset.train)} train samples) "
          f"batch={args.batch_size} epochs={args.epochs} steps={steps} record={args.record} repeats={args.repeats} "
          f"threads={torch.get_num_threads()} device={args.device} torch={torch.__version__}")
    print(f"bare loop        {b:7.3f} s   {steps / b:8.1f} steps/s")
    print(f"probe trainer    {o:7.3f} s   {steps / o:8.1f} steps/s   (records + checkpoints on, {n_files} epoch files)")
    print(f"throughput ratio (trainer / bare): {b / o:.3f}   target >= 0.90")
    per_run = args.repeats
    print(f"evaluation of all splits: {timers.evaluate / per_run / o:.3f} of trainer time")
    print(f"epoch-file write + hash + manifest: {timers.commit / per_run / o:.3f} of trainer time "
          f"({timers.commit / per_run / n_files * 1000:.1f} ms per file)")
    print(f"bytes per epoch file: {statistics.median(sizes) / 1e3:.1f} kB")


if __name__ == "__main__":
    main()
