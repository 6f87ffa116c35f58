"""``probe sweep``: one run per combination of the swept axes, in one sweep directory."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from probe.cli.train import (
    SWEPT_FIELDS,
    _config_from,
    _prepare,
    _refuse_options_beside_resume,
    _set_threads,
    add_train_arguments,
    train_values,
)
from probe.errors import ProbeInputError


def cmd_sweep(args: argparse.Namespace) -> int:
    from probe.store.ownership import check_new_directory
    from probe.train import run_sweep
    from probe.train.sweep import check_sweep_resume, plan_sweep, stored_sweep

    if args.resume and args.overwrite:
        raise ProbeInputError("--resume and --overwrite exclude each other")
    _set_threads(args)
    if args.resume and args.dataset is None and args.preset is None:  # the sweep as sweep.json describes it
        _refuse_options_beside_resume(args, sweep=True, source="sweep.json")
        stored = stored_sweep(args.out)
        base, axes, budget, steps = stored["base"], stored["axes"], stored["budget"], stored["steps"]
    else:
        values = train_values(args, sweep=True)
        if values.get("lr") is None:
            raise ProbeInputError("--lr is required")
        if args.budget == "matched" and args.steps is None:
            raise ProbeInputError("--budget matched needs --steps S (steps of the largest rate)")
        base = _config_from(args, sweep=True)
        axes: dict[str, list[Any]] = {"lr": values["lr"]}
        by_axis = {name for name, *_ in args.axis or []}  # an --axis is an axis even with one value
        for name in SWEPT_FIELDS[1:]:
            swept = values.get(name)
            if swept is not None and (len(swept) > 1 or name == "seed" or name in by_axis):
                axes[name] = swept
        budget, steps = args.budget, args.steps
    if args.resume:  # the differences first: the plan may build the dataset the command names
        check_sweep_resume(args.out, base, axes, budget=budget, steps=steps)
    plan_sweep(base, axes, budget=budget, steps=steps)
    if not args.resume:
        check_new_directory(Path(args.out), overwrite=args.overwrite, kind="sweep")
    _prepare(base, resume=args.resume)
    results = run_sweep(base, args.out, axes, budget=budget, steps=steps, jobs=args.jobs,
                        resume=args.resume, overwrite=args.overwrite, progress=not args.quiet,
                        threads=args.threads)
    for run_dir, status, diverged in results:
        extra = f" at epoch {diverged['epoch']}, step {diverged['step']}" if diverged else ""
        print(f"{run_dir}: {status}{extra}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("sweep", help="train a learning-rate sweep",
                              description="Train one run per combination of learning rate, seed (and batch size, "
                                          "momentum, weight decay when several are given) into one sweep directory.")
    add_train_arguments(p, sweep=True)
    p.set_defaults(func=cmd_sweep)
