"""Datasets by name, as the CLI spells them."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from probe.data.base import SpuriousDataset
from probe.errors import ProbeInputError

_REGISTRY: dict[str, Callable[..., SpuriousDataset]] = {}


def register_dataset(name: str) -> Callable[[Callable[..., SpuriousDataset]], Callable[..., SpuriousDataset]]:
    """Decorator: make a builder available to :func:`build_dataset` and the CLI under ``name``."""

    def wrap(builder: Callable[..., SpuriousDataset]) -> Callable[..., SpuriousDataset]:
        _REGISTRY[name] = builder
        return builder

    return wrap


def dataset_names() -> list[str]:
    return sorted(_REGISTRY)


def dataset_options(name: str) -> dict[str, Any]:
    """The options a dataset accepts, with their defaults."""
    builder = _builder(name)
    return {
        p.name: p.default
        for p in inspect.signature(builder).parameters.values()
        if p.default is not inspect.Parameter.empty
    }


def _builder(name: str) -> Callable[..., SpuriousDataset]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ProbeInputError(f"unknown dataset {name!r}; known: {', '.join(dataset_names())}") from None


def build_dataset(name: str, /, *, preflight: bool = True, **options: Any) -> SpuriousDataset:
    """Build dataset ``name`` with ``options`` (``None`` values take the builder's default).

    Unknown options are an error naming the options the dataset accepts. With ``preflight`` (the default) one sample
    per split and source file type is decoded (:meth:`SpuriousDataset.preflight`), so that ``probe train``, ``probe
    sweep`` and :class:`~probe.train.Trainer` refuse a damaged image file before they create a run directory.
    """
    builder = _builder(name)
    accepted = dataset_options(name)
    given = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise ProbeInputError(
            f"dataset {name!r} takes no option {', '.join(unknown)}; it takes {', '.join(sorted(accepted))}"
        )
    dataset = builder(**given)
    if preflight:
        dataset.preflight()
    return dataset
