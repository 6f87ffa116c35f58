"""``probe train``: one run. Also the training options, configuration and pre-flight that ``probe sweep`` shares."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probe.cli.options import add_data_arguments, dataset_options_from, parse_options
from probe.errors import ProbeInputError

if TYPE_CHECKING:  # imported inside the commands, so that probe --help stays fast
    from probe.data import SpuriousDataset
    from probe.train import TrainConfig


def add_train_arguments(p: argparse.ArgumentParser, *, sweep: bool) -> None:
    g = p.add_argument_group("preset")
    g.add_argument("--preset", metavar="NAME",
                   help="a reference protocol (waterbirds-erm or celeba-erm; docs/presets.md) filling the dataset, its "
                        "options, model, optimiser, lr, batch size and epochs the command leaves out; needs "
                        "--weights (ImageNet weights); any option given wins over the preset's value")
    add_data_arguments(p)
    g = p.add_argument_group("model")
    g.add_argument("--model", default=None, help="mlp, cnn, resnet18, resnet50, resnet101, wide_resnet50_2 or "
                                                 "wide_resnet101_2 (default: mlp)")
    g.add_argument("--model-option", action="append", metavar="KEY=VALUE",
                   help="model option, e.g. width=256 depth=2 for mlp (repeatable)")
    g.add_argument("--weights", metavar="FILE",
                   help="pretrained weights loaded before training: a .safetensors or .pth/.pt state dict with "
                        "torchvision's or timm's ResNet key names (docs/models.md); inputs get ImageNet's "
                        "standardisation")
    g.add_argument("--freeze", metavar="features", default=None,
                   help="features: only the classifier head trains (the features keep the weights' values and "
                        "BatchNorm statistics)")
    g = p.add_argument_group("optimisation")
    if sweep:
        g.add_argument("--lr", type=float, nargs="+", help="learning rates to sweep (required unless --resume)")
        g.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds, each >= 0 (default: 0)")
        g.add_argument("--batch-size", type=int, nargs="+", default=None, help="batch sizes (default: 64)")
        g.add_argument("--momentum", type=float, nargs="+", default=None, help="SGD momentum values (default: 0)")
        g.add_argument("--weight-decay", type=float, nargs="+", default=None, help="weight decays (default: 0)")
        g.add_argument("--budget", choices=["fixed", "matched"], default="fixed",
                       help="fixed: every rate trains --steps/--epochs; matched: rate x steps held fixed, the "
                            "largest rate trains --steps")
        g.add_argument("--jobs", type=int, default=1,
                       help="runs trained at once in separate processes (default: 1); each gets cores / JOBS torch "
                            "threads unless --threads says otherwise")
    else:
        g.add_argument("--lr", type=float, help="learning rate (required unless --resume)")
        g.add_argument("--seed", type=int, default=None,
                       help="seed of initialisation and minibatch order, >= 0 (default 0)")
        g.add_argument("--batch-size", type=int, default=None, help="minibatch size (default: 64)")
        g.add_argument("--momentum", type=float, default=None, help="SGD momentum (default: 0)")
        g.add_argument("--weight-decay", type=float, default=None, help="weight decay (default: 0)")
    g.add_argument("--optimizer", choices=["sgd", "adamw"], default=None, help="default: sgd")
    g.add_argument("--nesterov", action="store_true", default=None, help="Nesterov momentum (SGD)")
    g.add_argument("--schedule", choices=["constant", "cosine", "step"], default=None, help="default: constant")
    g.add_argument("--warmup-steps", type=int, default=None, help="linear warm-up steps (default: 0)")
    length = g.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, help="training length in epochs")
    length.add_argument("--steps", type=int, help="training length in optimiser steps")
    _add_regulariser_arguments(p, sweep=sweep)
    g = p.add_argument_group("recording and hardware")
    g.add_argument("--record", default="all", help="recorded epochs: all, every:K or log:N (epoch 0 and the last "
                                                   "are always recorded; default: all)")
    if not sweep:  # a sweep records every run at 1%, 3% and 10% of its distance budget by itself
        g.add_argument("--record-steps", metavar="S1,S2,...",
                       help="global steps recorded besides the --record schedule, even inside a data pass "
                            "(e.g. 5,20; each in [1, total steps])")
    g.add_argument("--keep-weights", default="all", metavar="SCHEDULE",
                   help="epochs whose file keeps the model's weights: all, every:K, log:N or none (default: all, the "
                        "recorded epochs; with every/log epoch 0 and the last always keep them)")
    g.add_argument("--record-logits", default="full", metavar="full|topk:K",
                   help="per-sample logits kept: full, or topk:K (true-class logit, K largest with classes, "
                        "log-sum-exp, norm; full logits for a fixed subset per split). Default: full")
    g.add_argument("--logits-dtype", choices=["float32", "float16"], default="float32",
                   help="precision of stored full logits (default: float32)")
    g.add_argument("--full-logits-subset", type=int, default=2048, metavar="N",
                   help="with --record-logits topk:K, samples per split whose full logits are kept (default: 2048)")
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


def _add_regulariser_arguments(p: argparse.ArgumentParser, *, sweep: bool) -> None:
    g = p.add_argument_group("regularisation (docs/training.md; the recorded minibatch loss stays cross-entropy)")
    g.add_argument("--l1", type=float, default=None, metavar="L1",
                   help="L1 penalty: loss += L1 * sum |w| over Linear/Conv weights, no biases or norm parameters "
                        "(default: 0)")
    g.add_argument("--l2", type=float, default=None, metavar="L2",
                   help="L2 penalty: loss += (L2/2) * sum w^2 over the same weights; separate from --weight-decay "
                        "(default: 0)")
    g.add_argument("--focal-gamma", type=float, default=None, metavar="G",
                   help="focal loss -(1-p_t)^G log p_t, mean over the batch (default: 0, cross-entropy)")
    g.add_argument("--label-smoothing", type=float, default=None, metavar="S",
                   help="targets (1-S) onehot(y) + S/K, S in [0, 1) (default: 0)")
    g.add_argument("--sam-rho", type=float, default=None, metavar="RHO",
                   help="sharpness-aware minimisation of radius RHO > 0: the gradient at w + RHO g/||g||, applied "
                        "at w by the optimiser (default: off)")
    g.add_argument("--sam-adaptive", action="store_true", default=None,
                   help="adaptive SAM (ASAM): perturbation RHO T^2 g/||T g||, T = |w| + 0.01 (needs --sam-rho)")
    if sweep:
        g.add_argument("--axis", nargs="+", action="append", metavar=("NAME", "V"),
                       help="sweep the field NAME over the values V ... (repeatable; the runs are the product of all "
                            "axes): lr, seed, batch_size, momentum, weight_decay, l1, l2, focal_gamma, sam_rho "
                            "('off' for no SAM), label_smoothing")


#: Options a preset may set, as TrainConfig fields (``dataset_options`` besides, from the data options).
PRESET_FIELDS = ("dataset", "model", "optimizer", "momentum", "nesterov", "schedule", "warmup_steps", "weight_decay",
                 "batch_size", "epochs", "steps", "lr", "weights")
#: Regularisation options (TrainConfig fields; docs/training.md).
REGULARISER_FIELDS = ("l1", "l2", "focal_gamma", "label_smoothing", "sam_rho", "sam_adaptive")
#: probe's own defaults of the options that default to None on the command line (so that a preset sees what was given).
PROBE_DEFAULTS = {"model": "mlp", "optimizer": "sgd", "nesterov": False, "schedule": "constant", "warmup_steps": 0,
                  "batch_size": 64, "momentum": 0.0, "weight_decay": 0.0, "l1": 0.0, "l2": 0.0, "focal_gamma": 0.0,
                  "label_smoothing": 0.0, "sam_adaptive": False}
#: Options that take several values in a sweep (``--axis NAME V ...``; ``--lr``, ``--seeds``, ``--batch-size``,
#: ``--momentum`` and ``--weight-decay`` take several values themselves); probe.train.sweep.AXES names the same.
SWEPT_FIELDS = ("lr", "seed", "batch_size", "momentum", "weight_decay", "l1", "l2", "focal_gamma", "sam_rho",
                "label_smoothing")
#: Swept fields whose values are integers (the others are numbers; ``sam_rho`` also takes ``off``).
INTEGER_AXES = ("seed", "batch_size")


def train_values(args: argparse.Namespace, *, sweep: bool) -> dict[str, Any]:
    """The command's training values as TrainConfig fields: the options given (and, in a sweep, the ``--axis``
    values), then ``--preset``'s values (:func:`probe.train.presets.apply_preset`), then probe's defaults. In a sweep
    every field of :data:`SWEPT_FIELDS` that has a value is a list."""
    from probe.train.presets import apply_preset

    given: dict[str, Any] = {name: getattr(args, name) for name in (*PRESET_FIELDS, *REGULARISER_FIELDS)}
    given["dataset_options"] = dataset_options_from(args)
    axes = axis_values(getattr(args, "axis", None)) if sweep else {}
    for name, swept in axes.items():
        own = "--seeds" if name == "seed" else "--" + name.replace("_", "-")
        if (args.seeds != [0] if name == "seed" else given.get(name) is not None):
            raise ProbeInputError(f"--axis {name} and {own} both give {name}: give it once")
        given[name] = swept
    if args.preset is not None:
        values = apply_preset(args.preset, given)
    else:
        values = {k: v for k, v in given.items() if v is not None}
    for name, default in PROBE_DEFAULTS.items():
        values.setdefault(name, default)
    if sweep:
        values.setdefault("seed", args.seeds)
        for name in SWEPT_FIELDS:
            if name in values and not isinstance(values[name], list):
                values[name] = [values[name]]
    return values


def axis_values(axis_args: list[list[str]] | None) -> dict[str, list[Any]]:
    """``--axis NAME V [V ...]`` (repeatable) as ``{NAME: [values]}``, each value read as its field's type
    (``off`` or ``none`` is ``sam_rho``'s "no SAM"); one-line :class:`ProbeInputError` for an unknown or repeated
    NAME, a missing or unreadable value."""
    axes: dict[str, list[Any]] = {}
    for name, *texts in axis_args or []:
        if name not in SWEPT_FIELDS:
            raise ProbeInputError(f"--axis {name}: cannot sweep {name!r}; sweepable: {', '.join(SWEPT_FIELDS)}")
        if name in axes:
            raise ProbeInputError(f"--axis {name} is given twice: give its values once")
        if not texts:
            raise ProbeInputError(f"--axis {name} needs at least one value")
        axes[name] = [_axis_value(name, text) for text in texts]
    return axes


def _axis_value(name: str, text: str) -> Any:
    if name == "sam_rho" and text.lower() in ("off", "none"):
        return None
    try:
        return int(text) if name in INTEGER_AXES else float(text)
    except ValueError:
        kind = "an integer" if name in INTEGER_AXES else "a number"
        raise ProbeInputError(f"--axis {name}: {text!r} is not {kind}") from None


def _config_from(args: argparse.Namespace, *, sweep: bool) -> TrainConfig:
    from probe.train import TrainConfig

    values = train_values(args, sweep=sweep)
    epochs, steps = values.get("epochs"), values.get("steps")
    if values.get("dataset") is None:
        raise ProbeInputError("--dataset is required (or --preset)")
    if epochs is None and steps is None:
        raise ProbeInputError("give the training length with --epochs or --steps")
    if values.get("lr") is None:
        raise ProbeInputError("--lr is required")
    common = dict(
        dataset=values["dataset"],
        dataset_options=values["dataset_options"],
        model=values["model"],
        model_options=parse_options(args.model_option, "--model-option"),
        optimizer=values["optimizer"],
        nesterov=values["nesterov"],
        schedule=values["schedule"],
        warmup_steps=values["warmup_steps"],
        epochs=epochs,
        steps=steps,
        record=args.record,
        keep_weights=args.keep_weights,
        record_logits=args.record_logits,
        logits_dtype=args.logits_dtype,
        full_logits_subset=args.full_logits_subset,
        device=args.device,
        amp=args.amp,
        workers=args.workers,
        record_splits=args.record_splits,
        sgd_logits=not args.no_sgd_logits,
        weights=args.weights,
        freeze=args.freeze,
        preset=args.preset,
    )
    if sweep:  # the first value of every axis; plan_sweep sets the others
        swept = {name: values[name][0] for name in SWEPT_FIELDS if name in values}
        cfg = TrainConfig(**swept, sam_adaptive=values["sam_adaptive"], **common)
    else:
        regularisers = {name: values[name] for name in REGULARISER_FIELDS if name in values}
        cfg = TrainConfig(lr=values["lr"], record_steps=parse_record_steps(args.record_steps),
                          seed=0 if args.seed is None else args.seed, batch_size=values["batch_size"],
                          momentum=values["momentum"], weight_decay=values["weight_decay"], **regularisers, **common)
    return cfg.validate()


def parse_record_steps(text: str | None) -> tuple[int, ...]:
    """``"20,5"`` -> ``(5, 20)``: the steps of ``--record-steps``, sorted, without repeats."""
    if text is None:
        return ()
    parts = [p.strip() for p in text.split(",")]
    if not all(p.isdigit() for p in parts):
        raise ProbeInputError(f"--record-steps must be comma-separated integer steps >= 1, e.g. 5,20; got {text!r}")
    return tuple(sorted({int(p) for p in parts}))


def _prepare(cfg: TrainConfig, *, resume: bool = False) -> SpuriousDataset:
    """Build the dataset and the model once, so that unknown names, bad options and damaged data files fail before
    any write: the pre-flight check decodes one sample per split and source file type of a dataset streamed from
    disk (a truncated JPEG of that kind is a one-line error naming it)."""
    from probe.data import build_dataset
    from probe.device import resolve_device
    from probe.models import build_model
    from probe.models.weights import check_pretrained_model, check_weights_file, pretrained_options

    resolve_device(cfg.device)
    if cfg.weights is not None:
        check_pretrained_model(cfg.model)
        if not resume:  # a resumed run takes its weights from its epoch files
            check_weights_file(cfg.weights)
    ds = build_dataset(cfg.dataset, preflight=True, **cfg.dataset_options)
    options = pretrained_options(cfg.model_options, cfg.weights, ds.options)
    build_model(cfg.model, ds.input_shape, ds.num_classes, **options)
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
        run = Run(out)
        run.load_plugins()  # the plugins that define its dataset and model, as run.json names them
        cfg = TrainConfig.from_json(run.config)
        if args.dataset is not None or args.preset is not None:  # the full command repeated with --resume
            differ = config_differences(cfg.to_json(), _config_from(args, sweep=False).to_json(), source="run.json")
            if differ:
                raise ProbeInputError(f"{out}: --resume continues the run as run.json describes it; these options "
                                      "differ: " + ", ".join(differ))
        else:
            _refuse_options_beside_resume(args, sweep=False, source="run.json")
        dataset = _prepare(cfg, resume=True)
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


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train one run",
                              description="Train one run; one HDF5 file per recorded epoch.")
    add_train_arguments(p, sweep=False)
    p.set_defaults(func=cmd_train)
