"""Option helpers shared by the sub-commands: ``key=value`` options and the dataset arguments."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from probe.errors import ProbeInputError


def parse_value(text: str) -> Any:
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
        out[key.replace("-", "_")] = parse_value(value)
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
