"""Waterbirds loading throughput (JPEG decode + reference transform: 256 x 256 resize, 224 centre crop, normalise;
images per second) with 0, 2 and 4 DataLoader workers, next to ResNet-50's training throughput at 224 px on the same
machine, and their ratio (above 1: loading keeps up with training).

On a release made by ``benchmarks/make_waterbirds.py`` (or a real one)::

    python benchmarks/make_waterbirds.py --out /tmp/wb
    python benchmarks/bench_data_loading.py --data-root /tmp/wb [--images 256] [--workers 0 2 4] [--device cpu]

Without ``--data-root`` it writes a small release of ``--images`` training images (256 to 500 pixels a side) in a
temporary folder first. Loading goes through ``Split.batches`` (a ``DataLoader`` over batches, decoding inside the
workers, one torch thread each; with 0 workers it is timed with the process's torch threads and with one) on the first
``--images`` training images; training is SGD steps (forward, cross-entropy, backward, update) of ``--model`` on
in-memory random batches of ``--train-batch`` (default 16). About 1.5 minutes on 2 busy CPU cores, most of it
ResNet-50's steps.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from make_waterbirds import make_waterbirds  # noqa: E402

from probe.data import build_dataset  # noqa: E402
from probe.data.base import Split  # noqa: E402
from probe.models import build_model  # noqa: E402


def first_images(split: Split, n: int) -> Split:
    """The split restricted to its first ``n`` samples (same transform)."""
    n = min(n, len(split))
    x = copy.copy(split.x)
    x.paths = x.paths[:n]
    return Split(name=split.name, x=x, y=split.y[:n], a=split.a[:n], is_bc=split.is_bc[:n], index=split.index[:n],
                 num_attrs=split.num_attrs)


def loading_throughput(split: Split, batch_size: int, workers: int) -> float:
    """Images per second through ``Split.batches`` (decode and transform included, worker start-up too)."""
    start = time.perf_counter()
    n = sum(len(positions) for positions, _ in split.batches(batch_size, num_workers=workers))
    return n / (time.perf_counter() - start)


def training_throughput(model_name: str, input_shape, batch_size: int, steps: int, device: str) -> float:
    """Images per second of SGD steps (forward, cross-entropy, backward, update) on in-memory random inputs."""
    model = build_model(model_name, input_shape, 2).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(batch_size, *input_shape, device=device)
    y = torch.randint(0, 2, (batch_size,), device=device)

    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    step()  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - start)


def measure(data_root: str, args: argparse.Namespace) -> None:
    ds = build_dataset("waterbirds", data_root=data_root, image_size=args.image_size, transform=args.transform)
    split = first_images(ds.train, args.images)
    print(f"Waterbirds in {data_root}: {len(split)} training JPEGs -> {args.image_size}x{args.image_size} "
          f"(transform={args.transform}), batch {args.batch_size}; training {args.model} on {args.device}, batch "
          f"{args.train_batch}; {torch.get_num_threads()} torch threads")
    train_rate = training_throughput(args.model, ds.input_shape, args.train_batch, args.steps, args.device)
    print(f"  training {args.model}: {train_rate:8.1f} images/s (forward, backward, SGD step; {args.steps} steps)")
    threads = torch.get_num_threads()
    for workers in args.workers:
        # in the main process (0 workers) the transform runs on every torch thread; workers use one thread each
        for n_threads in ((threads, 1) if workers == 0 and threads > 1 else (threads,)):
            torch.set_num_threads(n_threads)
            try:
                rate = loading_throughput(split, args.batch_size, workers)
            finally:
                torch.set_num_threads(threads)
            where = f"{n_threads} torch thread{'s' if n_threads > 1 else ''}" if workers == 0 else "1 thread each"
            print(f"  loading, {workers} workers ({where}): {rate:8.1f} images/s (decoded and transformed); "
                  f"loading / training = {rate / train_rate:.2f}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", help="folder holding a Waterbirds release (default: write one in a temporary folder)")
    p.add_argument("--images", type=int, default=256, help="training images decoded per measurement (default 256)")
    p.add_argument("--image-size", type=int, default=224, help="centre-crop side (default 224)")
    p.add_argument("--transform", default="reference", help="Waterbirds transform (default reference)")
    p.add_argument("--batch-size", type=int, default=32, help="loading batch size (default 32)")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2, 4], help="DataLoader workers (default 0 2 4)")
    p.add_argument("--model", default="resnet50", help="model whose training throughput is measured (default resnet50)")
    p.add_argument("--train-batch", type=int, default=16, help="training batch size (default 16)")
    p.add_argument("--steps", type=int, default=3, help="training steps timed after one warm-up step (default 3)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore", message="This DataLoader will create")  # more workers than cores: on purpose
    if args.data_root is not None:
        measure(args.data_root, args)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        made = make_waterbirds(tmp, fraction=min(1.0, args.images / 4795), workers=1)
        print(f"wrote {len(made['rows'])} images in {made['seconds']:.1f} s")
        measure(tmp, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
