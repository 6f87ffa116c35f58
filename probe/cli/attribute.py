"""``probe attribute RUN_OR_SWEEP``: attribution heatmap grids as PNG files.

For a sweep, rows are its runs ordered by learning rate (then seed), each at ``--epochs`` (default: each run's last
epoch; several epochs give one grid per epoch). For a run, rows are its epochs (default: up to six evenly spaced
committed epochs, first and last included). Columns are the same samples in every row. Next to each PNG a CSV holds
the shares per row (``core_attr_share``, ``spurious_attr_share``, ``pointing_game`` where the dataset has masks).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from probe.errors import ProbeInputError

#: the attribution methods, for the help text: :data:`probe.analyses.attribution_methods.METHODS` (which imports
#: torch; a test keeps the two equal).
METHODS: tuple[str, ...] = ("ig", "saliency", "input_x_gradient", "deeplift", "gradient_shap", "gradcam")


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``attribute`` sub-command."""
    p = subparsers.add_parser(
        "attribute",
        help="write attribution heatmap grids of a run or sweep",
        description="Attribution heatmaps (Captum) of the same samples across the learning rates of a sweep or the "
                    "epochs of a run, each over its image with the core mask outlined. Writes PNG grids and a CSV of "
                    "core/spurious attribution shares.",
    )
    p.add_argument("path", metavar="RUN_OR_SWEEP", help="run directory (rows = epochs), sweep directory or "
                   "folder of runs trained one by one (rows = runs by learning rate and seed)")
    p.add_argument("--method", nargs="+", default=["ig"], metavar="M",
                   help=f"attribution method(s): {', '.join(METHODS)} (default: ig); one grid per method")
    p.add_argument("--samples", default="bc", help="which samples: bc, ba, all or group:<g> (default: bc)")
    p.add_argument("--n", type=int, default=16, help="number of samples (columns) (default: 16)")
    p.add_argument("--epochs", nargs="+", type=int, default=None,
                   help="epochs: rows of a run's grid, or one grid per epoch of a sweep (default: a run's spread of "
                        "up to 6 epochs; a sweep's last epoch per run)")
    p.add_argument("--split", default="test", help="split to draw samples from (default: test)")
    p.add_argument("--out", default=None, help="output folder (default: analyses/<name>/attributions)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample choice and random draws (default: 0)")
    p.add_argument("--n-steps", type=int, default=32, help="integration steps of ig (default: 32)")
    p.add_argument("--smoothgrad", type=float, default=None, metavar="SIGMA",
                   help="SmoothGrad noise level relative to the input range (default: off)")
    p.add_argument("--layer", default=None, metavar="NAME",
                   help="gradcam layer as a dotted module name, e.g. stages.3 or stages.3.2 (default: the last "
                        "residual stage of a ResNet, else the last module with a 4-D output)")
    p.add_argument("--max-batch-size", type=int, default=256, help="samples attributed at once (default: 256)")
    p.add_argument("--device", default="auto",
                   help="auto (CUDA, then MPS, then CPU; the default), cpu, cuda, cuda:N or mps")
    p.set_defaults(func=cmd_attribute)
    return p


def spread_epochs(epochs: list[int], k: int = 6) -> list[int]:
    """Up to ``k`` evenly spaced entries of ``epochs``, first and last included."""
    import numpy as np

    if len(epochs) <= k:
        return list(epochs)
    picks = np.unique(np.round(np.linspace(0, len(epochs) - 1, k)).astype(int))
    return [epochs[i] for i in picks]


def cmd_attribute(args: argparse.Namespace) -> int:
    from probe.analyses.attribution import attribute_run, attribute_sweep
    from probe.analyses.attribution_methods import check_method
    from probe.device import resolve_device
    from probe.store.reader import Run, open_path

    for m in args.method:
        check_method(m)
    if args.n < 1:
        raise ProbeInputError(f"--n must be >= 1, got {args.n}")
    target = open_path(args.path)
    device = resolve_device(args.device)
    out = Path(args.out) if args.out else Path("analyses") / target.name / "attributions"
    options = dict(split=args.split, samples=args.samples, n=args.n, seed=args.seed, device=device,
                   n_steps=args.n_steps, smoothgrad=args.smoothgrad, max_batch_size=args.max_batch_size)
    sg = "" if args.smoothgrad is None else f"_sg{args.smoothgrad:g}"
    written: list[Path] = []
    if isinstance(target, Run):
        if not target.epochs:
            raise ProbeInputError(f"run {target.name!r} has no committed epoch")
        epochs = spread_epochs(target.epochs) if args.epochs is None else args.epochs
        dataset = target.dataset()
        for m in args.method:
            rows = [attribute_run(target, e, m, dataset=dataset, **_with_layer(options, m, args.layer))
                    for e in epochs]
            stem = f"{target.name}_{m}{sg}_{args.samples.replace(':', '')}_{args.split}"
            written += _write(out, stem, rows, f"{target.name}: {m}{sg} on {args.samples} samples "
                                                 f"({args.split}), rows = epochs")
    else:
        epochs = [None] if args.epochs is None else args.epochs
        started = [r for r in target.runs if r.epochs]
        dataset = started[0].dataset() if started else None
        for m in args.method:
            for e in epochs:
                rows = attribute_sweep(target, e, m, dataset=dataset, **_with_layer(options, m, args.layer))
                suffix = "" if e is None else f"_epoch{e}"
                stem = f"{target.name}_{m}{sg}_{args.samples.replace(':', '')}_{args.split}{suffix}"
                when = "last epoch" if e is None else f"epoch {e}"
                written += _write(out, stem, rows, f"{target.name}: {m}{sg} on {args.samples} samples "
                                                     f"({args.split}, {when}), rows = learning rates")
    for path in written:
        print(path)
    return 0


def _with_layer(options: dict, method: str, layer: str | None) -> dict:
    """``options`` plus the gradcam ``layer`` when ``method`` is gradcam and a layer was named."""
    return {**options, "layer": layer} if method == "gradcam" and layer else options


def _write(out: Path, stem: str, rows, title: str) -> list[Path]:
    from probe.analyses.attribution import shares_table
    from probe.report.heatmaps import plot_attributions

    out.mkdir(parents=True, exist_ok=True)
    png = out / f"{stem}.png"
    fig = plot_attributions(rows, title=title)
    fig.savefig(png, dpi=110)
    csv = out / f"{stem}.csv"
    shares_table(rows).to_csv(csv, index=False)
    return [png, csv]
