"""The ``probe`` command line.

Every sub-command validates its input before writing anything; bad input prints one line
``probe: error: <what is wrong>`` and exits with code 2. ``probe train`` exits with code 3 when the loss became
non-finite (the run directory keeps every committed epoch and ``diverged.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from probe.errors import ProbeError, ProbeInputError

EXIT_BAD_INPUT = 2


def _parse_value(text: str) -> Any:
    """``3`` -> 3, ``0.5`` -> 0.5, ``true`` -> True, ``none`` -> None, anything else stays a string."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_options(pairs: Sequence[str] | None, flag: str) -> dict[str, Any]:
    """``["width=64", "depth=3"]`` -> ``{"width": 64, "depth": 3}``."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ProbeInputError(f"{flag} takes key=value, got {pair!r}")
        out[key.replace("-", "_")] = _parse_value(value)
    return out


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--dataset", help="dataset name (see docs/datasets.md), e.g. colored-mnist, parity")
    g.add_argument("--data-root", help="folder with the dataset's files (default: $PROBE_DATA; MNIST-based sets fall "
                                       "back to the embedded digits)")
    g.add_argument("--rho", type=float, help="fraction of bias-aligned training samples")
    g.add_argument("--image-size", type=int, help="image side length (default: the dataset's own)")
    g.add_argument("--data-seed", type=int, help="seed of the dataset's draws, >= 0 (default: 0)")
    g.add_argument("--data-option", action="append", metavar="KEY=VALUE", help="any other dataset option (repeatable)")


def dataset_options_from(args: argparse.Namespace) -> dict[str, Any]:
    opts = parse_options(args.data_option, "--data-option")
    for key, value in (("data_root", args.data_root), ("rho", args.rho), ("image_size", args.image_size),
                       ("seed", args.data_seed)):
        if value is not None:
            opts[key] = value
    return opts


def add_train_arguments(p: argparse.ArgumentParser, *, sweep: bool) -> None:
    add_data_arguments(p)
    g = p.add_argument_group("model")
    g.add_argument("--model", default="mlp", help="mlp, cnn, resnet18 or resnet50 (default: mlp)")
    g.add_argument("--model-option", action="append", metavar="KEY=VALUE",
                   help="model option, e.g. width=256 depth=2 for mlp (repeatable)")
    g = p.add_argument_group("optimisation")
    if sweep:
        g.add_argument("--lr", type=float, nargs="+", help="learning rates to sweep (required unless --resume)")
        g.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds, each >= 0 (default: 0)")
        g.add_argument("--batch-size", type=int, nargs="+", default=[64], help="batch sizes (default: 64)")
        g.add_argument("--momentum", type=float, nargs="+", default=[0.0], help="SGD momentum values (default: 0)")
        g.add_argument("--weight-decay", type=float, nargs="+", default=[0.0], help="weight decays (default: 0)")
        g.add_argument("--budget", choices=["fixed", "matched"], default="fixed",
                       help="fixed: every rate trains --steps/--epochs; matched: rate x steps held fixed, the "
                            "largest rate trains --steps")
        g.add_argument("--jobs", type=int, default=1, help="runs trained at once in separate processes (default: 1)")
    else:
        g.add_argument("--lr", type=float, help="learning rate (required unless --resume)")
        g.add_argument("--seed", type=int, default=None,
                       help="seed of initialisation and minibatch order, >= 0 (default 0)")
        g.add_argument("--batch-size", type=int, default=None, help="minibatch size (default: 64)")
        g.add_argument("--momentum", type=float, default=None, help="SGD momentum (default: 0)")
        g.add_argument("--weight-decay", type=float, default=None, help="weight decay (default: 0)")
    g.add_argument("--optimizer", choices=["sgd", "adamw"], default="sgd", help="default: sgd")
    g.add_argument("--nesterov", action="store_true", help="Nesterov momentum (SGD)")
    g.add_argument("--schedule", choices=["constant", "cosine", "step"], default="constant", help="default: constant")
    g.add_argument("--warmup-steps", type=int, default=0, help="linear warm-up steps (default: 0)")
    length = g.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, help="training length in epochs")
    length.add_argument("--steps", type=int, help="training length in optimiser steps")
    g = p.add_argument_group("recording and hardware")
    g.add_argument("--record", default="all", help="recorded epochs: all, every:K or log:N (epoch 0 and the last "
                                                   "are always recorded; default: all)")
    g.add_argument("--record-splits", nargs="+", metavar="SPLIT",
                   help="splits recorded each epoch (default: all of the dataset's splits)")
    g.add_argument("--no-sgd-logits", action="store_true",
                   help="keep only the losses, not the logits, of the minibatch samples SGD saw (large datasets)")
    g.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    g.add_argument("--amp", action="store_true", help="bfloat16 mixed precision on CUDA")
    g.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's own choice; 1 is often fastest for small models "
                        "on a busy machine)")
    g.add_argument("--workers", type=int, default=2,
                   help="decoding processes for image datasets streamed from disk (default: 2)")
    g.add_argument("--out", required=True, help="run directory to write" if not sweep else "sweep directory to write")
    g.add_argument("--overwrite", action="store_true",
                   help="replace an existing probe " + ("sweep" if sweep else "run") + " directory that no process "
                        "is writing (any other folder is refused and left as it is)")
    g.add_argument("--resume", action="store_true",
                   help="continue from the last committed epoch" + (" of every run" if sweep else "")
                        + "; alone, or with the original options (others are refused)")
    g.add_argument("--quiet", action="store_true", help="no progress bars")


def _config_from(args: argparse.Namespace, *, sweep: bool):
    from probe.train import TrainConfig

    epochs, steps = args.epochs, args.steps
    if args.dataset is None:
        raise ProbeInputError("--dataset is required")
    if epochs is None and steps is None:
        raise ProbeInputError("give the training length with --epochs or --steps")
    common = dict(
        dataset=args.dataset,
        dataset_options=dataset_options_from(args),
        model=args.model,
        model_options=parse_options(args.model_option, "--model-option"),
        optimizer=args.optimizer,
        nesterov=args.nesterov,
        schedule=args.schedule,
        warmup_steps=args.warmup_steps,
        epochs=epochs,
        steps=steps,
        record=args.record,
        device=args.device,
        amp=args.amp,
        workers=args.workers,
        record_splits=args.record_splits,
        sgd_logits=not args.no_sgd_logits,
    )
    if sweep:
        cfg = TrainConfig(lr=args.lr[0], seed=args.seeds[0], batch_size=args.batch_size[0],
                          momentum=args.momentum[0], weight_decay=args.weight_decay[0], **common)
    else:
        if args.lr is None:
            raise ProbeInputError("--lr is required")
        cfg = TrainConfig(lr=args.lr, seed=0 if args.seed is None else args.seed,
                          batch_size=64 if args.batch_size is None else args.batch_size,
                          momentum=0.0 if args.momentum is None else args.momentum,
                          weight_decay=0.0 if args.weight_decay is None else args.weight_decay, **common)
    return cfg.validate()


def _prepare(cfg):
    """Build the dataset and the model once, so that unknown names, bad options and damaged data files fail before
    any write: the pre-flight check decodes one sample per split and source file type of a dataset streamed from
    disk (a truncated JPEG of that kind is a one-line error naming it)."""
    from probe.data import build_dataset
    from probe.models import build_model
    from probe.train.device import resolve_device

    resolve_device(cfg.device)
    ds = build_dataset(cfg.dataset, preflight=True, **cfg.dataset_options)
    build_model(cfg.model, ds.input_shape, ds.num_classes, **cfg.model_options)
    for s in cfg.record_splits or []:
        ds.split(s)
    return ds


def _set_threads(args: argparse.Namespace) -> None:
    if args.threads is not None:
        if args.threads < 1:
            raise ProbeInputError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)


#: Options that never change what a run computes: accepted with ``--resume`` whatever their value.
RESUME_NEUTRAL_OPTIONS = frozenset({"out", "resume", "overwrite", "quiet", "threads", "workers", "jobs"})


def _options_given(args: argparse.Namespace, *, sweep: bool) -> list[str]:
    """The training options on the command line that differ from their defaults (ignoring the neutral ones)."""
    parser = argparse.ArgumentParser(add_help=False)
    add_train_arguments(parser, sweep=sweep)
    defaults = vars(parser.parse_args(["--out", "-"]))
    return ["--" + key.replace("_", "-") for key, value in vars(args).items()
            if key in defaults and key not in RESUME_NEUTRAL_OPTIONS and value != defaults[key]]


def _refuse_options_beside_resume(args: argparse.Namespace, *, sweep: bool, source: str) -> None:
    """``--resume`` without ``--dataset`` takes everything from ``source``; any other option would be ignored."""
    given = _options_given(args, sweep=sweep)
    if given:
        raise ProbeInputError(f"{args.out}: --resume takes the configuration from {source}; repeat the whole "
                              f"original command or give none of: {', '.join(given)}")


def cmd_train(args: argparse.Namespace) -> int:
    from probe.store.reader import Run
    from probe.train import EXIT_DIVERGED, TrainConfig, Trainer
    from probe.train.config import config_differences

    out = Path(args.out)
    if args.resume and args.overwrite:
        raise ProbeInputError("--resume and --overwrite exclude each other")
    _set_threads(args)
    if args.resume:
        cfg = TrainConfig.from_json(Run(out).config)
        if args.dataset is not None:  # the full command repeated with --resume: it must describe the same run
            differ = config_differences(cfg.to_json(), _config_from(args, sweep=False).to_json(), source="run.json")
            if differ:
                raise ProbeInputError(f"{out}: --resume continues the run as run.json describes it; these options "
                                      "differ: " + ", ".join(differ))
        else:
            _refuse_options_beside_resume(args, sweep=False, source="run.json")
        dataset = _prepare(cfg)
    else:
        cfg = _config_from(args, sweep=False)
        from probe.store.writer import check_new_run_dir

        check_new_run_dir(out, overwrite=args.overwrite)
        dataset = _prepare(cfg)
    result = Trainer(cfg, out, dataset=dataset, progress=not args.quiet).fit(resume=args.resume,
                                                                            overwrite=args.overwrite)
    if result.status == "diverged":
        d = result.diverged
        print(f"{out}: diverged at epoch {d['epoch']}, step {d['step']} (loss {d['loss']}, lr {d['lr']:g}); "
              f"epochs 0..{d['last_committed_epoch']} are kept", file=sys.stderr)
        return EXIT_DIVERGED
    print(f"{out}: complete, {len(result.epochs_committed)} epochs recorded, {result.global_step} steps, "
          f"{result.seconds:.1f} s")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from probe.store.ownership import check_new_directory
    from probe.train import run_sweep
    from probe.train.sweep import check_sweep_resume, plan_sweep, stored_sweep

    if args.resume and args.overwrite:
        raise ProbeInputError("--resume and --overwrite exclude each other")
    _set_threads(args)
    if args.resume and args.dataset is None:  # the sweep as sweep.json describes it
        _refuse_options_beside_resume(args, sweep=True, source="sweep.json")
        stored = stored_sweep(args.out)
        base, axes, budget, steps = stored["base"], stored["axes"], stored["budget"], stored["steps"]
    else:
        if args.lr is None:
            raise ProbeInputError("--lr is required")
        if args.budget == "matched" and args.steps is None:
            raise ProbeInputError("--budget matched needs --steps S (steps of the largest rate)")
        base = _config_from(args, sweep=True)
        axes: dict[str, list[Any]] = {"lr": args.lr}
        for name, values in (("seed", args.seeds), ("batch_size", args.batch_size), ("momentum", args.momentum),
                             ("weight_decay", args.weight_decay)):
            if len(values) > 1 or name == "seed":
                axes[name] = values
        budget, steps = args.budget, args.steps
    plan_sweep(base, axes, budget=budget, steps=steps)
    if args.resume:
        check_sweep_resume(args.out, base, axes, budget=budget, steps=steps)
    else:
        check_new_directory(Path(args.out), overwrite=args.overwrite, kind="sweep")
    _prepare(base)
    results = run_sweep(base, args.out, axes, budget=budget, steps=steps, jobs=args.jobs,
                        resume=args.resume, overwrite=args.overwrite, progress=not args.quiet,
                        threads=args.threads)
    for run_dir, status, diverged in results:
        extra = f" at epoch {diverged['epoch']}, step {diverged['step']}" if diverged else ""
        print(f"{run_dir}: {status}{extra}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """Describe a run, a sweep or a folder of sweeps. A damaged run is shown with status ``damaged`` and reported on
    stderr, one line each, and the exit code is 2 (``--verify`` checks every file; without it only the JSON files
    are read)."""
    from probe.store.reader import SWEEP_JSON, open_path

    folder = Path(args.path)
    children = sorted(p for p in folder.iterdir() if (p / SWEEP_JSON).is_file()) if folder.is_dir() else []
    if children and not (folder / SWEEP_JSON).is_file() and not (folder / "run.json").is_file():
        # a folder of sweeps, e.g. a fixed-steps sweep and its matched-budget twin
        payloads = [_info_payload(open_path(c), verify=args.verify) for c in children]
        if args.json:
            print(json.dumps({"sweeps": payloads}, indent=2))
        else:
            for child, payload in zip(children, payloads):
                _info_one(open_path(child), payload)
                print()
        return _report_damaged(*payloads)
    target = open_path(args.path)
    payload = _info_payload(target, verify=args.verify)
    if args.json:
        print(json.dumps(payload, indent=2))
    else:
        _info_one(target, payload)
    return _report_damaged(payload)


def _report_damaged(*payloads: dict[str, Any]) -> int:
    """One stderr line per damaged run; the exit code of ``probe info`` (2 when a run is damaged, else 0)."""
    damaged = [r for p in payloads for r in p["runs"] if r["status"] == "damaged"]
    for r in damaged:
        problem = r["problems"][0]
        print(f"probe: error: {r['path']}: damaged: {Path(problem['file']).name}: {problem['reason']}",
              file=sys.stderr)
    return EXIT_BAD_INPUT if damaged else 0


def _run_summary(run_dir: Path, *, verify: bool) -> dict[str, Any]:
    """``Run.summary()``, or ``status: damaged`` with the problems; with ``verify`` every file is checked first."""
    from probe.errors import ProbeError
    from probe.store.reader import Run
    from probe.store.verify import Problem, verify_run

    problems: list[Problem] = []
    if verify:
        problems = verify_run(run_dir).problems
    summary: dict[str, Any] = {"name": run_dir.name, "path": str(run_dir)}
    if not problems:
        try:
            summary = Run(run_dir).summary()
        except (ProbeError, OSError) as err:  # run.json or manifest.json damaged
            problems = [Problem.from_error(run_dir / "run.json", err)]
    if problems:
        summary["status"] = "damaged"
    if verify or problems:
        summary["problems"] = [{"file": str(p.file), "reason": p.reason} for p in problems]
    return summary


def _info_payload(target, *, verify: bool = False) -> dict[str, Any]:
    from probe.store.reader import Sweep

    if isinstance(target, Sweep):
        payload: dict[str, Any] = {"runs": [_run_summary(d, verify=verify) for d in target.run_dirs()]}
        payload["sweep"] = {k: v for k, v in target.config.items() if k != "runs"}
        return payload
    if not verify:
        return {"runs": [target.summary()]}  # a damaged run.json or manifest.json is an error (exit 2)
    return {"runs": [_run_summary(target.path, verify=True)]}


def _info_one(target, payload: dict[str, Any]) -> None:
    from probe.store.reader import Run, Sweep

    if isinstance(target, Sweep):
        cfg = target.config
        base = cfg["base_config"]
        print(f"sweep {target.path}  budget={cfg.get('budget')}  axes="
              + ", ".join(f"{k}={v}" for k, v in cfg["axes"].items()))
        print(f"  dataset={base['dataset']} {base.get('dataset_options') or ''}  model={base['model']} "
              f"{base.get('model_options') or ''}  optimizer={base.get('optimizer')}")
        missing = len(cfg["runs"]) - len(payload["runs"])
        if missing:
            print(f"  {missing} run(s) not started yet")
    else:
        assert isinstance(target, Run)
        cfg = target.config
        print(f"run {target.path}")
        for key in ("dataset", "dataset_options", "model", "model_options", "optimizer", "lr", "momentum",
                    "weight_decay", "batch_size", "epochs", "steps", "seed", "schedule", "record", "budget"):
            print(f"  {key:16s} {cfg.get(key)}")
    header = f"  {'run':28s} {'status':12s} {'lr':>8s} {'seed':>4s} {'epochs':>6s} {'step':>7s} {'MB':>8s}  divergence"
    print(header)
    for s in payload["runs"]:
        if s["status"] == "damaged":
            p = s["problems"][0]
            print(f"  {s['name']:28s} {'damaged':12s} {Path(p['file']).name}: {p['reason']}")
            continue
        d = s["diverged"]
        div = f"epoch {d['epoch']} step {d['step']} loss {d['loss']}" if d else "-"
        print(f"  {s['name']:28s} {s['status']:12s} {s['lr']:8g} {s['seed']:4d} {s['epochs_committed']:6d} "
              f"{s['last_step'] if s['last_step'] is not None else '-':>7} {s['bytes'] / 1e6:8.2f}  {div}")


def cmd_verify(args: argparse.Namespace) -> int:
    """One line per run, ``ok`` or ``damaged: <file>: <reason>``; exit 0 when every run is intact, 1 otherwise."""
    from probe.store.verify import verify_path

    reports = verify_path(args.path)
    for report in reports:
        print(report.line())
    return 0 if all(r.ok for r in reports) else 1


def build_parser() -> argparse.ArgumentParser:
    from probe import __version__

    parser = argparse.ArgumentParser(
        prog="probe",
        description="Train learning-rate sweeps with every epoch kept in HDF5, and analyse spurious-feature "
                    "reliance and compressibility. See README.md and docs/.",
    )
    parser.add_argument("--version", action="version", version=f"probe {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("train", help="train one run", description="Train one run; one HDF5 file per recorded epoch.")
    add_train_arguments(p, sweep=False)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sweep", help="train a learning-rate sweep",
                       description="Train one run per combination of learning rate, seed (and batch size, momentum, "
                                   "weight decay when several are given) into one sweep directory.")
    add_train_arguments(p, sweep=True)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("info", help="describe a run or sweep directory",
                       description="Config, committed epochs, status, sizes and divergence of a run or sweep.")
    p.add_argument("path", help="run or sweep directory")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--verify", action="store_true",
                   help="re-hash and check every file first (as probe verify); damaged runs show status 'damaged' "
                        "and the reason (exit code 2 when any run is damaged)")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("verify", help="check every file of a run or sweep",
                       description="Re-hash every epoch file against manifest.json and check run.json, "
                                   "manifest.json, HDF5 safety and record shapes. Prints one line per run, 'ok' or "
                                   "'damaged: <file>: <reason>'. Exit code 0 when every run is intact, 1 when any "
                                   "is damaged, 2 when PATH is not a run, a sweep or a folder of sweeps.")
    p.add_argument("path", help="run directory, sweep directory or folder of sweeps")
    p.set_defaults(func=cmd_verify)

    for module in _command_modules():
        module.register(sub)
    return parser


COMMAND_MODULES = ("probe.data.cli", "probe.analyses.cli", "probe.analyses.attribution_cli")


def _command_modules() -> list[Any]:
    """Sub-command modules contributed by the data, analysis and attribution packages (each has ``register``)."""
    import importlib
    import importlib.util

    return [importlib.import_module(name) for name in COMMAND_MODULES if importlib.util.find_spec(name) is not None]


def _ignore_file_size_signal() -> None:
    """A file-size limit (``ulimit -f``) makes writes fail with EFBIG, an ``OSError`` reported on one line, instead of
    killing the process with SIGXFSZ. CPython already ignores SIGXFSZ at start-up; saying so here keeps it true when
    ``main`` runs in a host process that restored the default."""
    import signal
    import threading

    if hasattr(signal, "SIGXFSZ") and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def main(argv: Sequence[str] | None = None) -> int:
    _ignore_file_size_signal()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage, 0 on --help
        return int(exc.code or 0)
    try:
        return int(args.func(args) or 0)
    except ProbeInputError as err:
        print(f"probe: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # output piped into `head` and the like
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ProbeError, OSError) as err:  # OSError: a full disk, a vanished folder ... (committed epochs are kept)
        print(f"probe: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("probe: interrupted; committed epochs are kept (resume with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
