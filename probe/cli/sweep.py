"""``probe sweep``: one run per combination of the swept axes, in one sweep directory.

Besides training the whole sweep in this process, ``probe sweep`` can write only its plan (``--plan-only``:
``sweep.json`` with every planned run), or submit the plan as a submitit job array (``--launcher submitit``);
``probe sweep run SWEEP --index I`` trains planned run ``I`` (one task of a plain Slurm job array). See docs/cluster.md.
"""

from __future__ import annotations

import argparse
import os
import shlex
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
from probe.errors import ProbeError, ProbeInputError


def _sweep_arguments(args: argparse.Namespace) -> tuple[Any, dict[str, list[Any]], str, int | None]:
    """``(base config, axes, budget, steps)`` of the command, or of ``sweep.json`` for ``--resume`` alone."""
    from probe.train.sweep import stored_sweep

    if args.resume and args.dataset is None and args.preset is None:  # the sweep as sweep.json describes it
        # the plan and cluster options decide how the sweep is executed, never what it computes: accepted here
        _refuse_options_beside_resume(args, sweep=True, source="sweep.json")
        stored = stored_sweep(args.out)
        return stored["base"], stored["axes"], stored["budget"], stored["steps"]
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
    return base, axes, args.budget, args.steps


def _check_execution_options(args: argparse.Namespace) -> dict[str, Any]:
    """The job resources given (by :data:`probe.train.cluster.RESOURCES` flag); refuse options that need
    ``--launcher submitit`` without it, and ``--plan-only`` beside a launcher or ``--resume``."""
    from probe.train.cluster import RESOURCES, executor_parameters

    resources = {r.flag: getattr(args, r.flag.replace("-", "_")) for r in RESOURCES}
    if args.plan_only and (args.launcher or args.resume):
        raise ProbeInputError("--plan-only excludes " + ("--launcher" if args.launcher else "--resume"))
    if args.launcher is None:
        given = [f"--{r.flag}" for r in RESOURCES if resources[r.flag] is not None]
        given += [flag for flag, value in (("--cluster", args.cluster), ("--log-folder", args.log_folder),
                                           ("--then-analyze", args.then_analyze)) if value]
        if given:
            raise ProbeInputError(f"{', '.join(given)} need --launcher submitit")
    executor_parameters(resources)  # checked before anything is written
    return resources


def cmd_sweep(args: argparse.Namespace) -> int:
    from probe.store.ownership import check_new_directory
    from probe.train import run_sweep
    from probe.train.sweep import check_sweep_resume, plan_sweep, write_sweep_plan

    if args.resume and args.overwrite:
        raise ProbeInputError("--resume and --overwrite exclude each other")
    resources = _check_execution_options(args)
    if args.launcher == "submitit":
        from probe.train.cluster import import_submitit

        import_submitit()  # before anything is written
    _set_threads(args)
    base, axes, budget, steps = _sweep_arguments(args)
    if args.resume:  # the differences first: the plan may build the dataset the command names
        check_sweep_resume(args.out, base, axes, budget=budget, steps=steps)
    plan = plan_sweep(base, axes, budget=budget, steps=steps)
    if not args.resume:
        check_new_directory(Path(args.out), overwrite=args.overwrite, kind="sweep")
    _prepare(base, resume=args.resume)
    if args.launcher is not None or args.plan_only:
        if not args.resume:
            write_sweep_plan(base, args.out, axes, budget=budget, steps=steps, overwrite=args.overwrite)
        if args.plan_only:
            _print_plan_usage(args.out, len(plan))
            return 0
        return _submit(args, resources)
    results = run_sweep(base, args.out, axes, budget=budget, steps=steps, jobs=args.jobs,
                        resume=args.resume, overwrite=args.overwrite, progress=not args.quiet,
                        threads=args.threads)
    for run_dir, status, diverged in results:
        extra = f" at epoch {diverged['epoch']}, step {diverged['step']}" if diverged else ""
        print(f"{run_dir}: {status}{extra}")
    return 0


def _print_plan_usage(out: str, n_runs: int) -> None:
    sweep = shlex.quote(str(out))
    print(f"{out}: planned {n_runs} runs (sweep.json); nothing trained yet. Train run I (0 to {n_runs - 1}) with")
    print(f"  probe sweep run {sweep} --index I")
    print("for example as a Slurm job array:")
    print(f"  sbatch --array=0-{n_runs - 1} --wrap 'probe sweep run {sweep} --index $SLURM_ARRAY_TASK_ID'")
    print(f"or all of them here: probe sweep --resume --out {sweep}")


def analyze_job(sweep: str) -> int:
    """The job ``--then-analyze`` submits: ``probe analyze SWEEP``; a non-zero exit fails the job."""
    from probe.cli import main

    code = main(["analyze", sweep, "--quiet"])
    if code != 0:
        raise ProbeError(f"probe analyze {sweep} exited with code {code}")
    return code


def _submit(args: argparse.Namespace, resources: dict[str, Any]) -> int:
    from probe.train.cluster import submit_sweep

    sweep = str(Path(args.out).resolve())
    then = (analyze_job, (sweep,)) if args.then_analyze else None
    record = submit_sweep(args.out, resources=resources, cluster=args.cluster, folder=args.log_folder,
                          threads=args.threads, then=then).record
    if not record["runs"]:
        print(f"{args.out}: every planned run has finished; no job submitted")
    for job in record["runs"]:
        print(f"{args.out}/{job['name']}: job {job['job_id']}")
    if "then_job_id" in record:
        print(f"probe analyze {args.out}: job {record['then_job_id']}")
    print(f"job ids recorded in {Path(args.out) / 'sweep.json'}; logs in {record['folder']}")
    return 0


def cmd_sweep_run(args: argparse.Namespace) -> int:
    from probe.train.sweep import train_planned_run

    index = args.index
    if index is None:
        task = os.environ.get("SLURM_ARRAY_TASK_ID")
        if task is None:
            raise ProbeInputError("--index is required (or run inside a Slurm job array, which sets "
                                  "SLURM_ARRAY_TASK_ID)")
        if not task.isdigit():
            raise ProbeInputError(f"SLURM_ARRAY_TASK_ID must be an integer index, got {task!r}")
        index = int(task)
    _set_threads(args)
    run_dir, status, diverged = train_planned_run(args.sweep, index, progress=not args.quiet, threads=args.threads)
    extra = f" at epoch {diverged['epoch']}, step {diverged['step']}" if diverged else ""
    done = " (nothing to do)" if status.startswith("already") else ""
    print(f"{run_dir}: {status}{extra}{done}")
    return 0


class _SweepParser(argparse.ArgumentParser):
    """``probe sweep``'s parser; arguments that begin with the word ``run`` go to ``probe sweep run``'s."""

    run_parser: argparse.ArgumentParser

    def parse_known_args(self, args=None, namespace=None):
        if args and args[0] == "run":
            return self.run_parser.parse_known_args(args[1:], namespace)
        return super().parse_known_args(args, namespace)


def _run_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Train run I of a planned sweep (probe sweep ... --plan-only): "
                                "resumed from its last committed epoch when it was started before; a finished run is "
                                "left as it is. One task of a job array (docs/cluster.md).")
    p.add_argument("sweep", help="sweep directory holding the plan (sweep.json)")
    p.add_argument("--index", type=int, default=None,
                   help="the run's index in sweep.json's runs, from 0 (default: $SLURM_ARRAY_TASK_ID)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's own choice)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sweep_run)
    return p


def register(subparsers: argparse._SubParsersAction) -> None:
    from probe.train.cluster import RESOURCES  # light: no torch, no submitit

    p = subparsers.add_parser("sweep", help="train a learning-rate sweep, or plan it for a cluster",
                              description="Train one run per combination of learning rate, seed and every other "
                                          "swept axis (--axis NAME V ..., or several values of batch size, "
                                          "momentum, weight decay) into one sweep directory. "
                                          "'probe sweep run SWEEP --index I' trains run I of a planned sweep "
                                          "(--plan-only); see docs/cluster.md.")
    p.__class__ = _SweepParser
    p.run_parser = _run_parser(f"{p.prog} run")
    add_train_arguments(p, sweep=True)
    g = p.add_argument_group("plan and cluster (docs/cluster.md)")
    g.add_argument("--plan-only", action="store_true",
                   help="write the sweep directory and its plan (sweep.json) only, train nothing, and print how to "
                        "train each run (probe sweep run OUT --index I, e.g. as a Slurm job array)")
    g.add_argument("--launcher", choices=["submitit"], default=None,
                   help="submit the planned runs (with --resume: those not finished) as a submitit job array; each "
                        "job is requeued on preemption or time-out and resumes its run (needs probe[slurm])")
    g.add_argument("--cluster", choices=["slurm", "local", "debug"], default=None,
                   help="submitit's executor (default: slurm where sbatch exists, else local)")
    g.add_argument("--log-folder", metavar="DIR", default=None,
                   help="submitit's folder of job files and logs (default: OUT.submitit beside OUT)")
    for r in RESOURCES:
        g.add_argument(f"--{r.flag}", type=r.type, default=None, help=f"{r.help} (submitit {r.parameter})")
    g.add_argument("--then-analyze", action="store_true",
                   help="submit 'probe analyze OUT' too, as a job that starts once every run job succeeded "
                        "(Slurm afterok; the local executor waits for the runs first)")
    p.set_defaults(func=cmd_sweep)
