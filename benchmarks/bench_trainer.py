"""Trainer overhead: the probe trainer's throughput against two hand-written loops, measured side by side.

All loops train the same model (the small CNN and the MLP 256-256 unless ``--models`` says otherwise) on the same
in-memory data (colored-mnist, embedded digits) with the same batch size, epochs, initial weights, shuffle order and
learning rate, in this one process, alternating repeats so that machine load hits all of them alike:

- the **bare loop**: shuffle, slice, forward, backward, SGD step and nothing else, with the trainer's memory format
  (channels-last for conv models) and dtype handling, so that it is as fast as a plain loop can be;
- the **fair loop**: the bare loop plus, at every recorded epoch (0 and each pass end), what a researcher writes by
  hand to keep records: an eval-mode pass over every split (logits and per-sample losses to host) and a
  ``torch.save`` of the model's and the optimiser's state dicts to a file.

Prints, per model: the probe trainer with ``--record all`` against the fair loop (target >= 1.00), the probe trainer
with ``--record every:5`` against the bare loop (target >= 0.95), each a throughput ratio (loop seconds / trainer
seconds) of the best of the repeats, with the median ratio beside it and PASS/MISS; the evaluation and epoch-file
shares of the trainer's time; the bytes of one epoch file and of one fair-loop checkpoint.

Usage: python benchmarks/bench_trainer.py [--models cnn mlp] [--epochs 20] [--repeats 3] [--sparse every:5]
       [--threads N] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import probe
from probe.data import build_dataset
from probe.data.base import SpuriousDataset
from probe.models import build_model
from probe.store import writer as writer_module
from probe.train import TrainConfig, train
from probe.train import trainer as trainer_module
from probe.train.schedule import recorded_epochs

#: Throughput targets: trainer (every epoch recorded) / fair loop, and trainer (sparse records) / bare loop.
TARGET_FAIR = 1.00
TARGET_BARE = 0.95


def hand_loop(dataset: SpuriousDataset, model_name: str, epochs: int, batch_size: int, lr: float, seed: int, *,
              device: str = "cpu", record: list[int] | None = None, out: Path | None = None,
              eval_batch_size: int = 2048) -> tuple[float, torch.nn.Module]:
    """A hand-written SGD loop with the trainer's initial weights (``torch.manual_seed(seed)`` before the model is
    built), shuffle (a generator seeded with ``seed``), memory format and per-step loss. Returns (seconds, model).

    With ``record`` (epochs, 0 = before training) it is the fair loop: at each recorded epoch every split is evaluated
    in eval mode, logits and per-sample losses are copied to host, and the model's and optimiser's state dicts are
    saved to ``out / f"epoch_{epoch}.pt"``. Without it, the bare loop."""
    dev = torch.device(device)
    if dev.type == "cpu":
        torch.set_flush_denormal(True)  # as the trainer does
    start = time.perf_counter()
    torch.manual_seed(seed)
    model = build_model(model_name, dataset.input_shape, dataset.num_classes).to(dev)
    channels_last = trainer_module.uses_channels_last(model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    x, y = dataset.train.x.to(dev), dataset.train.y.to(dev)
    splits = {name: (s.x.to(dev), s.y.to(dev)) for name, s in dataset.splits.items()} if record else {}
    recorded = set(record or ())
    kept: list[dict[str, tuple[np.ndarray, np.ndarray]]] = []
    shuffle = torch.Generator().manual_seed(seed)

    def keep_records(epoch: int) -> None:
        model.eval()
        records = {}
        with torch.inference_mode():
            for name, (xs, ys) in splits.items():
                logits, losses = [], []
                for s in range(0, len(ys), eval_batch_size):
                    xb = xs[s : s + eval_batch_size]
                    if channels_last:
                        xb = xb.contiguous(memory_format=torch.channels_last)
                    out_b = model(xb)
                    logits.append(out_b)
                    losses.append(F.cross_entropy(out_b, ys[s : s + eval_batch_size], reduction="none"))
                records[name] = (torch.cat(logits).cpu().numpy(), torch.cat(losses).cpu().numpy())
        kept.append(records)
        torch.save({"epoch": epoch, "model": model.state_dict(), "optimizer": opt.state_dict()},
                   out / f"epoch_{epoch}.pt")
        model.train()

    if 0 in recorded:
        keep_records(0)
    model.train()
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(y), generator=shuffle).to(dev)
        for s in range(0, len(y), batch_size):
            idx = order[s : s + batch_size]
            xb = x.index_select(0, idx)  # as Split.batches gathers (x[idx] is the same, with more dispatch)
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if epoch in recorded:
            keep_records(epoch)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, model


class Timers:
    """Seconds the trainer spends in ``evaluate_split`` and (on its background thread) in writing epoch files."""

    def __init__(self):
        self.commit = 0.0
        self.evaluate = 0.0

    def reset(self) -> None:
        self.commit = self.evaluate = 0.0

    def wrap(self) -> None:
        evaluate = trainer_module.evaluate_split

        def timed_eval(*a, **k):
            t = time.perf_counter()
            try:
                return evaluate(*a, **k)
            finally:
                self.evaluate += time.perf_counter() - t

        trainer_module.evaluate_split = timed_eval
        commit = getattr(writer_module.RunWriter, "commit_epoch", None)
        if commit is None:
            return

        def timed_commit(w, *a, **k):
            t = time.perf_counter()
            try:
                return commit(w, *a, **k)
            finally:
                self.commit += time.perf_counter() - t

        writer_module.RunWriter.commit_epoch = timed_commit


def trainer_run(dataset: SpuriousDataset, dataset_name: str, model_name: str, epochs: int, batch_size: int,
                lr: float, seed: int, record: str, device: str, out: Path) -> float:
    """Seconds of ``probe.train`` in this process (records, epoch files and all)."""
    cfg = TrainConfig(dataset=dataset_name, model=model_name, lr=lr, epochs=epochs, batch_size=batch_size, seed=seed,
                      record=record, device=device)
    t = time.perf_counter()
    result = train(cfg, out, dataset=dataset)
    seconds = time.perf_counter() - t
    assert result.status == "complete", result.diverged
    return seconds


def verdict(ratio: float, target: float) -> str:
    return "PASS" if ratio >= target else "MISS"


def bench_model(dataset, model_name: str, args, timers: Timers, tmp: Path) -> None:
    epochs, bs, lr = args.epochs, args.batch_size, 0.1
    steps = epochs * -(-len(dataset.train) // bs)
    every_epoch = recorded_epochs(epochs, "all")
    times: dict[str, list[float]] = {"bare": [], "sparse": [], "fair": [], "all": []}
    evaluate_share, commit_share, sizes, pt_sizes, sparse_eval = [], [], [], [], []
    # untimed warm-up: one-off imports (the optimiser's first construction imports torch._dynamo) and allocations
    hand_loop(dataset, model_name, 1, bs, lr, 0, device=args.device)
    trainer_run(dataset, "colored-mnist", model_name, 1, bs, lr, 0, "all", args.device, tmp / f"{model_name}_warm")
    for r in range(args.repeats):
        order = ["bare", "sparse", "fair", "all"]
        order = order[r % 4:] + order[: r % 4]  # rotate, so that no loop always runs first
        for which in order:
            out = tmp / f"{model_name}_{which}_{r}"
            if which == "bare":
                times[which].append(hand_loop(dataset, model_name, epochs, bs, lr, r, device=args.device)[0])
            elif which == "fair":
                out.mkdir()
                times[which].append(hand_loop(dataset, model_name, epochs, bs, lr, r, device=args.device,
                                              record=every_epoch, out=out)[0])
                pt_sizes = [p.stat().st_size for p in out.glob("*.pt")]
            else:
                timers.reset()
                record = "all" if which == "all" else args.sparse
                t = trainer_run(dataset, "colored-mnist", model_name, epochs, bs, lr, r, record, args.device, out)
                times[which].append(t)
                if which == "sparse":
                    sparse_eval.append(timers.evaluate)
                if which == "all":
                    evaluate_share.append(timers.evaluate / t)
                    commit_share.append(timers.commit / t)
                    sizes = [e["size"] for e in probe.open_run(out).manifest["epochs"]]

    best = {k: min(v) for k, v in times.items()}
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\nmodel={model_name} steps={steps} ({epochs} epochs of {steps // epochs} steps)  "
          f"best / median of {args.repeats} alternating repeats")
    label = {"bare": "bare loop", "sparse": f"probe trainer, record {args.sparse}", "fair": "fair loop, every epoch",
             "all": "probe trainer, record all"}
    for k in ("bare", "sparse", "fair", "all"):
        print(f"  {label[k]:36s} {best[k]:8.3f} s / {med[k]:8.3f} s   {steps / best[k]:8.1f} steps/s (best)")
    for name, loop, ours, target in (("all / fair", "fair", "all", TARGET_FAIR),
                                     (f"{args.sparse} / bare", "bare", "sparse", TARGET_BARE)):
        ratio = best[loop] / best[ours]
        ratio_med = statistics.median(a / b for a, b in zip(times[loop], times[ours]))
        print(f"  ratio trainer {name:18s} {ratio:6.3f} (median of per-repeat ratios {ratio_med:.3f})  "
              f"target >= {target:.2f}  {verdict(ratio, target)}")
    # the last record's evaluation has no training left to overlap with: a trainer that records anything cannot
    # beat bare / (bare + one evaluation of the recorded splits), however little else it costs
    points = len(recorded_epochs(epochs, args.sparse))
    one_eval = statistics.median(sparse_eval) / points
    ceiling = best["bare"] / (best["bare"] + one_eval)
    print(f"  ceiling of {args.sparse} / bare with every other cost zero: {ceiling:.3f} (the final record's "
          f"evaluation, {one_eval:.3f} s = {points} recorded points' "
          f"{statistics.median(sparse_eval):.2f} s / {points}, follows the last step)")
    print(f"  record all: evaluation {statistics.median(evaluate_share):.3f} and epoch-file writes (background "
          f"thread) {statistics.median(commit_share):.3f} of trainer time")
    print(f"  bytes per epoch file: {statistics.median(sizes) / 1e3:.1f} kB (probe, with per-sample records); "
          f"fair-loop checkpoint {statistics.median(pt_sizes) / 1e3:.1f} kB (state dicts only)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["cnn", "mlp"])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sparse", default="every:5", help="the record schedule compared with the bare loop")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (every loop runs there)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    dataset = build_dataset("colored-mnist")
    timers = Timers()
    timers.wrap()
    print(f"data=colored-mnist (embedded, {len(dataset.train)} train samples, splits "
          f"{ {k: len(s) for k, s in dataset.splits.items()} }) batch={args.batch_size} epochs={args.epochs} "
          f"repeats={args.repeats} threads={torch.get_num_threads()} device={args.device} torch={torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        for model_name in args.models:
            bench_model(dataset, model_name, args, timers, Path(tmp))


if __name__ == "__main__":
    main()
