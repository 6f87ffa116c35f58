"""``probe analyze``: every registered analysis over a run, a sweep or a folder of sweeps."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from probe.errors import ProbeInputError

#: exit code when the analysis is written but an analysis raised an error or a run is damaged.
EXIT_ANALYSIS_ERRORS = 1


def _epochs_arg(values: list[str] | None, flag: str) -> Any:
    """``None`` -> None; one word (``all``, ``last``, ``none``, ``default``) -> the word; else epoch numbers."""
    if not values:
        return None
    if len(values) == 1 and not values[0].isdigit():
        word = values[0].lower()
        if word not in ("all", "last", "none", "default"):
            raise ProbeInputError(f"{flag} takes epoch numbers or one of all, last, none, default; got {values[0]!r}")
        return word
    bad = [v for v in values if not v.isdigit()]
    if bad:
        raise ProbeInputError(f"{flag} takes epoch numbers (>= 0), got {bad[0]!r}")
    return [int(v) for v in values]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "analyze", help="analyse a run or sweep: tables, metrics.json, figures, report.html",
        description="Run every registered analysis over a run, a sweep, or a folder holding sweeps; write "
                    "epochs.csv, runs.csv, claims.csv, metrics.json, figures and one self-contained report.html. "
                    "Results are cached per (run, epoch, analysis); re-running reuses them. See docs/analyze.md.")
    p.add_argument("path", help="run directory, sweep directory, or a folder of sweeps (e.g. a fixed-steps sweep and "
                                "its matched-budget twin)")
    p.add_argument("--out", help="output folder (default: analyses/<name of PATH>)")
    p.add_argument("--control", metavar="MATCHED_SWEEP",
                   help="matched-budget sweep (probe sweep --budget matched) analysed alongside PATH; the claims "
                        "then say whether each effect survives the control")
    p.add_argument("--compare", nargs="+", metavar="SWEEP", default=[],
                   help="more sweeps (over batch_size, weight_decay, l2 ... at fixed or gridded lr) analysed "
                        "alongside PATH; each property is then compared along each swept axis (comparison.csv, "
                        "dominance.csv, the report's comparison section; see docs/compare.md)")
    p.add_argument("--epochs", nargs="+", metavar="E",
                   help="epochs of the record-level analyses: numbers, or all / last (default: all committed; each "
                        "run's early and last epochs are always included)")
    p.add_argument("--model-epochs", nargs="+", metavar="E",
                   help="epochs of the analyses that load the model: numbers, or default / last / all / none "
                        "(default: epoch 0, those nearest 25/50/75%% of training, and the last)")
    p.add_argument("--analyses", nargs="+", metavar="NAME", help="only these registered analyses (default: all)")
    p.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="analysis option, e.g. attr_n=128 attr_methods=ig,saliency (repeatable; the options each "
                        "analysis declares are listed in docs/analyze.md)")
    p.add_argument("--device", default="cpu",
                   help="device for model analyses: cpu (default), auto (CUDA, then MPS, then CPU), cuda, cuda:N, mps")
    p.add_argument("--no-report", action="store_true", help="tables and metrics.json only (no figures or HTML)")
    p.add_argument("--no-cache", action="store_true",
                   help="recompute and redraw everything (the caches are still rewritten)")
    p.add_argument("--no-attribution-grids", action="store_true",
                   help="leave the attribution heatmap grids out of the report")
    p.add_argument("--strict", action="store_true", help="stop at the first analysis that raises an error")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_analyze)


def cmd_analyze(args: argparse.Namespace) -> int:
    """Validate, :func:`probe.analyses.engine.analyze`, the attribution grids, :func:`probe.report.write_report`,
    the summary."""
    import gc

    from probe.analyses.engine import analyze, attribution_grids, summary_text, write_tables
    from probe.cli.options import parse_options
    from probe.report import write_report

    # the objects of the imports above (torch, pandas ...) live as long as the process: out of the collector's
    # reach, its full passes over the hundred thousand rows of the epochs table no longer re-scan them
    gc.freeze()
    result = analyze(
        args.path, out=args.out, epochs=_epochs_arg(args.epochs, "--epochs"),
        model_epochs=_epochs_arg(args.model_epochs, "--model-epochs"), device=args.device,
        progress=not args.quiet, options=parse_options(args.option, "--option"), control=args.control,
        compare=args.compare, analyses=args.analyses, strict=args.strict, use_cache=not args.no_cache,
    )
    if not args.no_report:
        grids = None if args.no_attribution_grids else attribution_grids(result, strict=args.strict)
        errors = len(result.errors)
        write_report(result, grids, strict=args.strict, use_cache=not args.no_cache)
        if len(result.errors) != errors:
            write_tables(result)  # again: metrics.json lists the figures that failed
    print(summary_text(result))
    for name in ("report.html", "metrics.json", "runs.csv", "epochs.csv", "claims.csv",
                 *(["comparison.csv", "dominance.csv"] if len(result.comparison) else [])):
        if name in result.files:
            print(f"  {name:14s} {result.files[name]}")
    if result.errors:
        print(f"probe analyze: {len(result.errors)} analysis error(s) (listed in metrics.json and the report)",
              file=sys.stderr)
    if len(result.damaged):
        print(f"probe analyze: {len(result.damaged)} damaged run(s) left out (listed in failures.csv and the report)",
              file=sys.stderr)
    return EXIT_ANALYSIS_ERRORS if result.errors or len(result.damaged) else 0
