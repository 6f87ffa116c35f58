"""``probe data``: ``list`` the datasets, ``check NAME`` (what was found, counts per split and group), ``show NAME``
(a PNG grid of samples, one row per group).

``probe data check waterbirds`` also compares the image counts per split and group with the official release's
(:data:`probe.data.waterbirds.OFFICIAL_GROUP_COUNTS`) and exits with code 1 when any differs (0 when all match), like
``probe verify`` for a damaged run; bad input still exits with code 2."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from probe.errors import ProbeInputError

if TYPE_CHECKING:  # the commands import torch and the datasets, so that building the parser stays light
    from probe.data.base import SpuriousDataset


def dataset_from_args(args: argparse.Namespace) -> SpuriousDataset:
    """Build the dataset named by ``args.name`` with ``--data-root``, ``--rho``, ``--image-size``, ``--seed`` and
    every ``--data-option``."""
    from probe.cli.options import parse_options  # the same key=value reading as ``probe train``
    from probe.data.registry import build_dataset

    options: dict[str, Any] = parse_options(args.data_option, "--data-option")
    for key in ("data_root", "rho", "image_size", "seed"):
        value = getattr(args, key, None)
        if value is not None:
            options[key] = value
    return build_dataset(args.name, **options)


def _add_dataset_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="dataset name (probe data list prints them with their options)")
    p.add_argument("--data-root", help="folder holding the dataset's files (default: $PROBE_DATA)")
    p.add_argument("--rho", type=float, help="fraction of bias-aligned training samples")
    p.add_argument("--image-size", type=int, help="image side length")
    p.add_argument("--seed", "--data-seed", dest="seed", type=int, help="seed of the dataset's draws")
    p.add_argument("--data-option", action="append", metavar="KEY=VALUE", help="any other dataset option")


def check_command(args: argparse.Namespace) -> int:
    """Build the dataset, decode one sample per split and print what was found."""
    import torch

    ds = dataset_from_args(args)
    info = ds.describe()
    print(f"{ds.name}: {ds.source}")
    print(f"  K={ds.num_classes} A={ds.num_attrs} input shape {tuple(ds.input_shape)}")
    print(f"  BA/BC rule: {ds.bc_rule}")
    print(f"  masks: {ds.mask_note}")
    cf = [n for n, f in (("spurious", ds.render_spurious), ("core", ds.render_core)) if f is not None]
    print(f"  counterfactual re-rendering: {', '.join(cf) if cf else 'none'}")
    print(f"  options: {json.dumps(ds.options)}")
    for name, s in ds.splits.items():
        row = info["splits"][name]
        storage = "in memory" if s.in_memory else "decoded on demand"
        print(f"  {name}: n={row['n']} BA fraction {row['ba_fraction']:.3f} ({storage}) "
              f"group counts {row['group_counts']}")
        if len(s):
            x = s.inputs(torch.tensor([0]))
            if tuple(x.shape[1:]) != tuple(ds.input_shape):
                raise ProbeInputError(f"{ds.name}/{name}: first sample has shape {tuple(x.shape[1:])}, "
                                      f"expected {tuple(ds.input_shape)}")
            if s.has_masks:
                m = s.masks(torch.tensor([0]), "core")
                print(f"    first sample decoded; core mask covers {float(m.float().mean()):.2f} of its pixels")
    if ds.name == "waterbirds":
        return _check_official_waterbirds(ds)
    return 0


def _check_official_waterbirds(ds: SpuriousDataset) -> int:
    """Print the official-count table of Waterbirds; 0 when every count matches, 1 otherwise."""
    import torch

    from probe.data.waterbirds import compare_with_official

    counts = {name: torch.bincount((2 * s.y + s.a).cpu(), minlength=4).tolist() for name, s in ds.splits.items()}
    rows, ok = compare_with_official(counts)
    print("  official counts (split, group, found, official):")
    for r in rows:
        flag = "" if r["match"] else "  MISMATCH"
        print(f"    {r['split']:<5} {r['group']:<15} {r['found']:>6} {r['official']:>6}{flag}")
    bad = sum(not r["match"] for r in rows)
    totals = ", ".join(f"{r['split']} {r['official']}" for r in rows if r["group"] == "total")
    print("  matches the official release" if ok else f"  {bad} count(s) differ from the official release ({totals})")
    return 0 if ok else 1


def show_command(args: argparse.Namespace) -> int:
    """Write the sample grid of one split."""
    from probe.data.show import save_sample_grid

    ds = dataset_from_args(args)
    if args.per_group < 1:
        raise ProbeInputError(f"--per-group must be at least 1, got {args.per_group}")
    out = save_sample_grid(ds, args.out, split=args.split, per_group=args.per_group, max_groups=args.max_groups)
    print(f"wrote {out}")
    return 0


def list_command(args: argparse.Namespace) -> int:
    """Print every dataset with its options and defaults."""
    from probe.data.registry import dataset_names, dataset_options

    for name in dataset_names():
        opts = ", ".join(f"{k}={v!r}" for k, v in dataset_options(name).items())
        print(f"{name}: {opts}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``probe data {list,check,show}`` to the top-level sub-parsers."""
    data = subparsers.add_parser("data", help="inspect datasets: list, check what was found, show samples")
    sub = data.add_subparsers(dest="data_command", metavar="{list,check,show}")
    sub.required = True
    p = sub.add_parser("list", help="every dataset and its options")
    p.set_defaults(func=list_command)
    p = sub.add_parser("check", help="build a dataset and report what was found")
    _add_dataset_arguments(p)
    p.set_defaults(func=check_command)
    p = sub.add_parser("show", help="write a PNG grid of samples, one row per group")
    _add_dataset_arguments(p)
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--split", default="train", help="split to show (default train)")
    p.add_argument("--per-group", type=int, default=8, help="samples per group (default 8)")
    p.add_argument("--max-groups", type=int, default=20, help="at most this many group rows (default 20)")
    p.set_defaults(func=show_command)
