"""``probe import SRC --out RUN_DIR``: a run directory from per-epoch checkpoints trained elsewhere
(``docs/import-export.md``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from probe.cli.options import add_data_arguments, dataset_options_from, parse_options
from probe.errors import ProbeInputError

#: TrainConfig fields a ``--config`` file may set (the command line's options win over the file's).
CONFIG_FIELDS = ("dataset", "dataset_options", "model", "model_options", "lr", "seed", "batch_size", "momentum",
                 "weight_decay", "optimizer", "nesterov", "schedule", "warmup_steps", "record_splits",
                 "record_logits", "logits_dtype", "full_logits_subset", "eval_batch_size", "device")


def read_config_file(path: str) -> dict[str, Any]:
    """The mapping in a ``.json`` or ``.yaml``/``.yml`` file, its keys among :data:`CONFIG_FIELDS`."""
    file = Path(path)
    if not file.is_file():
        raise ProbeInputError(f"{file}: no such config file")
    text = file.read_text()
    if file.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ProbeInputError(f"{file}: reading YAML needs PyYAML (pip install pyyaml); or give JSON") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ProbeInputError(f"{file}: not valid YAML ({' '.join(str(err).split())})"[:300]) from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ProbeInputError(f"{file}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise ProbeInputError(f"{file}: must hold a mapping of config fields")
    unknown = sorted(set(data) - set(CONFIG_FIELDS))
    if unknown:
        raise ProbeInputError(f"{file}: unknown field(s) {', '.join(unknown)}; known: {', '.join(CONFIG_FIELDS)}")
    return data


def import_values(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields of the command: ``--config``'s, replaced by every option given on the command line."""
    values = read_config_file(args.config) if args.config else {}
    given = {"dataset": args.dataset, "model": args.model, "lr": args.lr, "seed": args.seed,
             "batch_size": args.batch_size, "momentum": args.momentum, "weight_decay": args.weight_decay,
             "optimizer": args.optimizer, "schedule": args.schedule, "record_splits": args.record_splits,
             "record_logits": args.record_logits, "device": args.device}
    values.update({k: v for k, v in given.items() if v is not None})
    data_options = dataset_options_from(args)
    if data_options:
        values["dataset_options"] = {**(values.get("dataset_options") or {}), **data_options}
    model_options = parse_options(args.model_option, "--model-option")
    if model_options:
        values["model_options"] = {**(values.get("model_options") or {}), **model_options}
    for key in ("dataset", "lr"):
        if values.get(key) is None:
            raise ProbeInputError(f"--{key} is required (on the command line or in --config)")
    values.setdefault("model", "mlp")
    return values


def cmd_import(args: argparse.Namespace) -> int:
    from probe.train import TrainConfig
    from probe.train.importer import find_checkpoints, import_checkpoints

    find_checkpoints(args.src)  # names and epochs first: a bad folder fails before the dataset is built
    values = import_values(args)
    try:
        cfg = TrainConfig(**values, epochs=1)
    except TypeError as err:
        raise ProbeInputError(f"bad config: {err}") from None
    result = import_checkpoints(args.src, args.out, cfg.validate(), overwrite=args.overwrite,
                                progress=not args.quiet)
    print(f"{result.run_dir}: imported, {len(result.epochs_committed)} epochs "
          f"({result.epochs_committed[0]}..{result.epochs_committed[-1]}), {result.seconds:.1f} s")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "import", help="build a run directory from per-epoch checkpoints trained elsewhere",
        description="Build a run directory from a folder of per-epoch state dicts (.safetensors, or .pth/.pt read "
                    "with torch.load(weights_only=True)); the last digits of each file name give its epoch "
                    "(epoch_3.pt, ckpt-0012.safetensors). Every recorded split is evaluated at each epoch as probe "
                    "train records it; the minibatch (SGD) records are absent. See docs/import-export.md.")
    p.add_argument("src", help="folder of checkpoint files")
    p.add_argument("--config", metavar="FILE",
                   help="JSON or YAML file with config fields (dataset, dataset_options, model, model_options, lr, "
                        "seed, batch_size ...); options on the command line win")
    add_data_arguments(p)
    g = p.add_argument_group("model and training")
    g.add_argument("--model", help="the model the checkpoints belong to (default: mlp)")
    g.add_argument("--model-option", action="append", metavar="KEY=VALUE", help="model option (repeatable)")
    g.add_argument("--lr", type=float, help="the learning rate the checkpoints were trained with (required)")
    g.add_argument("--seed", type=int, help="training seed, recorded in run.json (default: 0)")
    g.add_argument("--batch-size", type=int,
                   help="training batch size: an epoch counts ceil(n_train / batch size) steps (default: 64)")
    g.add_argument("--momentum", type=float, help="SGD momentum, recorded (default: 0)")
    g.add_argument("--weight-decay", type=float, help="weight decay, recorded (default: 0)")
    g.add_argument("--optimizer", choices=["sgd", "adamw"], help="recorded (default: sgd)")
    g.add_argument("--schedule", choices=["constant", "cosine", "step"],
                   help="the learning-rate schedule each epoch's lr is taken from (default: constant)")
    g = p.add_argument_group("recording")
    g.add_argument("--record-splits", nargs="+", metavar="SPLIT", help="splits evaluated (default: all)")
    g.add_argument("--record-logits", metavar="full|topk:K", help="per-sample logits kept (default: full)")
    g.add_argument("--device", help="auto, cpu, cuda, cuda:N, mps (default: auto)")
    g.add_argument("--out", required=True, help="run directory to write")
    g.add_argument("--overwrite", action="store_true",
                   help="replace an existing probe run directory that no process is writing")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_import)
