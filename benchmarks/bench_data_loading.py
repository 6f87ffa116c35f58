"""Waterbirds-format loading throughput (JPEG decode + resize + centre crop + normalise, images per second) with 0
and 2 DataLoader workers, next to the training throughput of a model on the same machine.

Writes a small Waterbirds-format release (metadata.csv, JPEGs of ``--source-size`` pixels, CUB-style folders) in a
temporary folder, so it needs no data and runs in well under a minute::

    python benchmarks/bench_data_loading.py [--images 96] [--image-size 112] [--model cnn] [--device cpu]

If loading is slower than training, the accelerator waits on the data: raise the number of workers.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "data"))

from probe_data_fixtures import write_waterbirds  # noqa: E402

from probe.data import build_dataset  # noqa: E402
from probe.models import build_model  # noqa: E402


def loading_throughput(split, batch_size: int, workers: int) -> float:
    """Images per second through ``Split.batches`` (decode and transform included)."""
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=96, help="training images in the generated release (default 96)")
    p.add_argument("--source-size", type=int, default=256, help="side of the generated JPEGs (default 256)")
    p.add_argument("--image-size", type=int, default=112, help="centre-crop side (default 112; the protocol uses 224)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--model", default="cnn", help="model whose training throughput is measured (default cnn)")
    p.add_argument("--steps", type=int, default=5, help="training steps timed (default 5)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        k = max(1, args.images // 4)
        plan = {0: [(0, 0), (0, 1), (1, 0), (1, 1)] * k, 2: [(0, 0), (1, 1)]}
        write_waterbirds(Path(tmp), h=args.source_size, w=int(args.source_size * 1.25), segmentations=False,
                         plan=plan)
        ds = build_dataset("waterbirds", data_root=tmp, image_size=args.image_size)
        split = ds.train
        print(f"Waterbirds format: {len(split)} JPEGs of {args.source_size}x{int(args.source_size * 1.25)} -> "
              f"{args.image_size}x{args.image_size}, batch {args.batch_size}, {torch.get_num_threads()} torch threads")
        for workers in (0, 2):
            rate = loading_throughput(split, args.batch_size, workers)
            print(f"  loading, {workers} workers: {rate:8.1f} images/s (decoded and transformed)")
        rate = training_throughput(args.model, ds.input_shape, args.batch_size, args.steps, args.device)
        print(f"  training {args.model} on {args.device}: {rate:8.1f} images/s (forward, backward, SGD step)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
