"""``probe demo``: train a small learning-rate sweep and its matched-budget twin, then analyse them."""

from __future__ import annotations

import argparse

from probe.cli.analyze import EXIT_ANALYSIS_ERRORS


def register(subparsers: argparse._SubParsersAction) -> None:
    d = subparsers.add_parser(
        "demo", help="train a small learning-rate sweep and its matched-budget twin, then analyse them",
        description="On the embedded colored-mnist digits (rho 0.99, 8x8), an MLP 256-256 with plain SGD, batch 64: "
                    "a fixed-steps sweep (2000 steps, rates 0.01 to 1) and its matched-budget twin (rates 0.1, 0.3, "
                    "1 with rate x steps = 600), then probe analyze. A few minutes on 2 CPU cores.")
    d.add_argument("--out", help="root folder: sweeps in OUT/checkpoints/demo, report in OUT/analyses/demo "
                                 "(default: the current directory)")
    d.add_argument("--quick", action="store_true",
                   help="a smaller variant (3 rates, 100 steps, one seed; under a minute)")
    d.add_argument("--overwrite", action="store_true", help="retrain even when the demo sweeps exist")
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    d.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from probe.demo import run_demo

    result = run_demo(out=args.out, quick=args.quick, overwrite=args.overwrite, progress=not args.quiet)
    return EXIT_ANALYSIS_ERRORS if result.errors else 0
