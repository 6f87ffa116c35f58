"""Datasets by name, as the CLI spells them: the built-in ones and those plugins register (``docs/plugins.md``)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from probe.data.base import SpuriousDataset
from probe.errors import ProbeInputError
from probe.plugins import defining_module

DatasetBuilder = Callable[..., SpuriousDataset]

_REGISTRY: dict[str, DatasetBuilder] = {}


def register_dataset(name: str) -> Callable[[DatasetBuilder], DatasetBuilder]:
    """Decorator: make a dataset builder available to :func:`build_dataset`, the CLI and run readers as ``name``.

    The builder takes keyword options only, each with a default (they are the dataset's options, listed by ``probe
    data options NAME`` and given with ``--data-option key=value``), and returns a
    :class:`~probe.data.SpuriousDataset` whose ``options`` rebuild it. Registering a name again with another
    builder is an error, so a plugin cannot silently replace a built-in dataset.

    Example:
        >>> import probe
        >>> @probe.register_dataset("my-dataset")                 # doctest: +SKIP
        ... def my_dataset(rho: float = 0.95, seed: int = 0) -> probe.data.SpuriousDataset:
        ...     ...
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"a dataset name must be a non-empty string, got {name!r}")

    def wrap(builder: DatasetBuilder) -> DatasetBuilder:
        if not callable(builder):
            raise TypeError(f"dataset {name!r}: the builder must be callable, got {builder!r}")
        known = _REGISTRY.get(name)
        if known is not None and known is not builder:
            raise ValueError(f"dataset {name!r} is registered already (by {known.__module__}.{known.__qualname__})")
        _REGISTRY[name] = builder
        return builder

    return wrap


def dataset_plugin(name: str) -> str | None:
    """The plugin module that defines dataset ``name``'s builder, or None for a built-in dataset."""
    return defining_module(_builder(name))


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
        raise ProbeInputError(f"unknown dataset {name!r}; known: {', '.join(dataset_names())} (a plugin's dataset "
                              "needs --plugin MODULE)") from None


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
