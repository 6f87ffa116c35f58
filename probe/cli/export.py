"""``probe export RUN_OR_SWEEP``: each epoch's weights as ``.safetensors`` (``--weights DIR``), or the per-epoch
metrics and training records to TensorBoard (``--to tensorboard DIR``) or an MLflow file store (``--to mlflow DIR``).
See ``docs/import-export.md``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from probe.errors import ProbeInputError

#: tracker -> (module imported to check the extra is installed, the setup.cfg extra that installs it)
TRACKERS = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow")}


def require_extra(tracker: str) -> None:
    """A one-line :class:`ProbeInputError` (exit 2) naming the extra when the tracker's package is missing."""
    import importlib

    module, extra = TRACKERS[tracker]
    try:
        importlib.import_module(module)
    except ImportError:
        raise ProbeInputError(f"--to {tracker} needs the optional extra: pip install 'probe[{extra}]'") from None


def analysis_epochs(args: argparse.Namespace) -> dict:
    """``metrics.json``'s epochs from ``--analysis`` (default ``analyses/<name of PATH>``, where ``probe analyze``
    writes); when there is none, the record-level analyses are run into that folder first."""
    from probe.store.export import read_analysis_epochs

    folder = Path(args.analysis) if args.analysis else Path("analyses") / Path(args.path).resolve().name
    metrics = folder / "metrics.json"
    if not metrics.is_file():
        if args.analysis:
            raise ProbeInputError(f"{metrics}: no such file; run probe analyze {args.path} --out {folder} first")
        from probe.analyses.base import load_analyses
        from probe.analyses.engine.engine import analyze

        record_level = [name for name, a in load_analyses().items() if not a.needs_model]
        print(f"probe export: no {metrics}; running the record-level analyses ({', '.join(record_level)}) there "
              "first", file=sys.stderr)
        analyze(args.path, folder, analyses=record_level, model_epochs="none", progress=not args.quiet)
    return read_analysis_epochs(metrics)


def cmd_export(args: argparse.Namespace) -> int:
    from probe.store.export import collect_exports, export_weights, target_runs, write_mlflow, write_tensorboard

    if (args.weights is None) == (args.to is None):
        raise ProbeInputError("give exactly one of --weights DIR or --to {tensorboard,mlflow} DIR")
    if args.weights is not None:
        files = export_weights(args.path, args.weights)
        print(f"{args.weights}: {len(files)} weight file(s) written")
        return 0
    tracker, out = args.to
    if tracker not in TRACKERS:
        raise ProbeInputError(f"--to takes tensorboard or mlflow, got {tracker!r}")
    require_extra(tracker)
    runs = target_runs(args.path)
    exports = collect_exports(runs, analysis_epochs(args))
    if tracker == "tensorboard":
        write_tensorboard(exports, out)
    else:
        write_mlflow(exports, out, experiment=args.experiment)
    scalars = sum(len(e.scalars) for e in exports)
    print(f"{out}: {len(exports)} run(s), {scalars} scalar values exported to {tracker}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export", help="export weights as safetensors, or metrics to TensorBoard / MLflow",
        description="Export a run or sweep: --weights DIR writes DIR/<run>/epoch_NNNNN.safetensors for every epoch "
                    "that keeps weights; --to tensorboard DIR writes one TensorBoard run per probe run; --to mlflow "
                    "DIR one MLflow run per probe run in the file store DIR. See docs/import-export.md.")
    p.add_argument("path", help="run or sweep directory, or a folder of runs trained one by one")
    p.add_argument("--weights", metavar="DIR", help="folder to write the .safetensors files into")
    p.add_argument("--to", nargs=2, metavar=("TRACKER", "DIR"), help="tensorboard DIR or mlflow DIR")
    p.add_argument("--analysis", metavar="FOLDER",
                   help="probe analyze's output folder holding metrics.json (default: analyses/<name of PATH>; "
                        "when it has none, the record-level analyses are run there first)")
    p.add_argument("--experiment", default="probe", help="MLflow experiment name (default: probe)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_export)
