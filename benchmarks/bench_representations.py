"""Cost of the representation and compressibility analyses, relative to one forward pass over the same data.

Trains a small run in-process (default: parity with an MLP 256-256; ``--dataset colored-mnist --model cnn`` for
images), then, for each analysed epoch, times

- feature extraction (penultimate features of the validation and test splits, no cache),
- probe fitting (``probe_core`` and ``probe_spurious`` on validation, ``dfr_wga`` fit on validation and scored on
  test, features given),
- the pruning curve (the SPEC's 8 sparsities on the test split),

and prints each time as a ratio to one forward pass over the data it reads (validation + test for the first two,
test for the pruning curve). Not part of the test suite; runs in well under a minute on 2 CPU cores.

    python benchmarks/bench_representations.py [--dataset parity|colored-mnist] [--model mlp|cnn] [--epochs 6]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import probe
from probe.analyses.features import PENULTIMATE, extract_features
from probe.analyses.probes import balanced_probe_split, dfr_wga, linear_probe
from probe.analyses.pruning import prune_curve
from probe.train import TrainConfig, train


def timed(fn, repeats: int = 1) -> tuple[float, object]:
    """Median wall time of ``repeats`` calls and the last result."""
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def forward_pass(model: torch.nn.Module, xs: list[torch.Tensor], batch_size: int) -> None:
    with torch.inference_mode():
        for x in xs:
            for start in range(0, len(x), batch_size):
                model(x[start : start + batch_size])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="parity", choices=["parity", "colored-mnist"])
    parser.add_argument("--model", default=None, choices=["mlp", "cnn"], help="default: mlp for parity, cnn otherwise")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=512, help="analysis batch size")
    args = parser.parse_args()
    model_name = args.model or ("mlp" if args.dataset == "parity" else "cnn")
    model_options = {"width": 256} if model_name == "mlp" else {"channels": 32, "width": 128}
    torch.set_flush_denormal(True)

    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(dataset=args.dataset, model=model_name, model_options=model_options, lr=args.lr,
                          epochs=args.epochs, batch_size=64, seed=0, device="cpu")
        start = time.perf_counter()
        train(cfg, Path(tmp) / "run")
        print(f"trained {args.dataset} / {model_name} for {args.epochs} epochs in {time.perf_counter() - start:.1f} s")
        run = probe.open_run(Path(tmp) / "run")
        ds = run.dataset()
        val, test = ds.split("val"), ds.split("test")
        epochs = sorted({run.epochs[1], run.epochs[len(run.epochs) // 2], run.epochs[-1]})
        print(f"val n={len(val)}, test n={len(test)}, torch threads={torch.get_num_threads()}; "
              "ratios are to one forward pass over the same data")
        print(f"{'epoch':>5} {'fwd val+test ms':>15} {'extract x':>9} {'probes x':>9} "
              f"{'fwd test ms':>11} {'prune x':>8}")
        for epoch in epochs:
            model = run.model(epoch)
            fwd_vt, _ = timed(lambda m=model: forward_pass(m, [val.x, test.x], args.batch_size), repeats=5)
            fwd_t, _ = timed(lambda m=model: forward_pass(m, [test.x], args.batch_size), repeats=5)

            def extract(m=model):
                return (extract_features(m, val, args.batch_size)[PENULTIMATE],
                        extract_features(m, test, args.batch_size)[PENULTIMATE])

            t_extract, (f_val, f_test) = timed(extract, repeats=3)

            def fit_probes(f_val=f_val, f_test=f_test):
                y, a = val.y.numpy(), val.a.numpy()
                fit, score = balanced_probe_split(y, a, 0)
                linear_probe(f_val, y, fit, score)
                linear_probe(f_val, a, fit, score)
                dfr_wga(f_val, y, val.group.numpy(), f_test, test.y.numpy(), test.group.numpy())

            t_probes, _ = timed(fit_probes)
            t_prune, curve = timed(lambda m=model: prune_curve(m, test, batch_size=args.batch_size))
            print(f"{epoch:>5} {fwd_vt * 1e3:>15.2f} {t_extract / fwd_vt:>9.1f} {t_probes / fwd_vt:>9.0f} "
                  f"{fwd_t * 1e3:>11.2f} {t_prune / fwd_t:>8.1f}")
        acc = np.round(curve["acc"].to_numpy(), 3).tolist()
        print(f"last epoch pruning curve acc at {curve['sparsity'].tolist()}: {acc}")


if __name__ == "__main__":
    main()
