"""Attribution throughput: Integrated Gradients (32 steps) against the model's own forward-and-backward speed.

    python benchmarks/bench_attribution.py [--device cpu|cuda] [--batch 256] [--n 512]

Model: probe's small CNN (channels 16, width 64) on (1, 28, 56) Double-MNIST-shaped inputs, 10 classes.
Prints samples per second of ``attribute(method="ig", n_steps=32)`` and the ratio

    ratio = ig samples/s / (forward-and-backward samples/s / 32)

where forward-and-backward is one SGD-style pass (cross-entropy, backward through all parameters) on batches of the
same size. IG evaluates the model at 32 points per sample, so a ratio of 1 means no overhead; target >= 0.8.
Runs in well under a minute on a laptop CPU.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from probe.analyses.attribution_methods import attribute
from probe.models import build_model


def timed(fn, repeats: int, device: torch.device, warmup=None) -> float:
    """Best wall time of ``repeats`` calls (after one warm-up call of ``warmup``, default ``fn``)."""
    (warmup or fn)()
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=256, help="samples per forward pass (default 256)")
    parser.add_argument("--n", type=int, default=256, help="samples attributed (default 256)")
    parser.add_argument("--steps", type=int, default=32, help="IG steps (default 32)")
    parser.add_argument("--repeats", type=int, default=5, help="timed forward-and-backward passes (best kept)")
    parser.add_argument("--ig-repeats", type=int, default=1, help="timed IG passes (best kept)")
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_model("cnn", (1, 28, 56), 10, channels=16, width=64).to(device).eval()
    x = torch.rand(args.n, 1, 28, 56, device=device)
    y = torch.randint(0, 10, (args.n,), device=device)

    def forward_backward() -> None:
        for s in range(0, args.n, args.batch):
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[s : s + args.batch]), y[s : s + args.batch]).backward()

    def ig() -> None:
        attribute(model, x, y, "ig", n_steps=args.steps, max_batch_size=args.batch, device=device)

    def ig_warmup() -> None:
        attribute(model, x[: args.batch], y[: args.batch], "ig", n_steps=2, max_batch_size=args.batch, device=device)

    t_fb = timed(forward_backward, args.repeats, device)
    t_ig = timed(ig, args.ig_repeats, device, warmup=ig_warmup)
    fb_rate = args.n / t_fb
    ig_rate = args.n / t_ig
    ratio = ig_rate / (fb_rate / args.steps)
    print(f"device {device}, batch {args.batch}, {args.n} samples, ig with {args.steps} steps")
    print(f"forward+backward: {fb_rate:10.1f} samples/s")
    print(f"ig ({args.steps} steps): {ig_rate:10.1f} samples/s")
    print(f"ratio ig / (forward+backward / {args.steps}) = {ratio:.2f} (target >= 0.8)")


if __name__ == "__main__":
    main()
