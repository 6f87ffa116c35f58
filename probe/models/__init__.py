"""Models by name. Every model has ``forward_features(x)`` (penultimate features) and ``forward_head(f)`` (logits)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from probe.errors import ProbeInputError
from probe.models.base import FeatureModel
from probe.models.cnn import SmallCNN
from probe.models.mlp import MLP
from probe.models.options import Option, check_options
from probe.models.resnet import RESNET_OPTIONS, ResNet, resnet18, resnet50

#: name -> (builder, declared options)
_MODELS: dict[str, tuple[Callable[..., FeatureModel], tuple[Option, ...]]] = {
    "mlp": (MLP, MLP.OPTIONS),
    "cnn": (SmallCNN, SmallCNN.OPTIONS),
    "resnet18": (resnet18, RESNET_OPTIONS),
    "resnet50": (resnet50, RESNET_OPTIONS),
}

#: Largest model built (2^30 parameters, 4 GiB in float32; ResNet-50 has 25 million); counted before allocating.
MAX_PARAMETERS = 2**30


def model_names() -> list[str]:
    return sorted(_MODELS)


def _spec(name: str) -> tuple[Callable[..., FeatureModel], tuple[Option, ...]]:
    try:
        return _MODELS[name]
    except KeyError:
        raise ProbeInputError(f"unknown model {name!r}; known: {', '.join(model_names())}") from None


def declared_options(name: str) -> tuple[Option, ...]:
    """The options model ``name`` declares, with types, ranges and defaults."""
    return _spec(name)[1]


def model_options(name: str) -> dict[str, Any]:
    """Options a model accepts, with defaults."""
    return {o.name: o.default for o in declared_options(name)}


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int, **options: Any) -> FeatureModel:
    """Build model ``name`` for inputs of ``input_shape`` and ``num_classes`` logits.

    Options are checked against the model's declared types and ranges (:mod:`probe.models.options`) and the
    parameter count against :data:`MAX_PARAMETERS` (on the meta device, allocating nothing) before the model is
    built; a bad value or an unknown option is a one-line :class:`ProbeInputError` listing the model's options.
    """
    builder, declared = _spec(name)
    kwargs = check_options(name, declared, options)
    try:
        with torch.device("meta"):  # count the parameters without allocating them
            count = sum(p.numel() for p in builder(tuple(input_shape), num_classes, **kwargs).parameters())
    except ValueError as err:  # the model refuses the input shape
        raise ProbeInputError(str(err)) from None
    if count > MAX_PARAMETERS:
        raise ProbeInputError(f"model {name!r} with {kwargs or 'default options'} would have {count} parameters "
                              f"({count / 1e9:.1f} billion), over the limit of {MAX_PARAMETERS}")
    return builder(tuple(input_shape), num_classes, **kwargs)

__all__ = ["MLP", "FeatureModel", "Option", "ResNet", "SmallCNN", "build_model", "declared_options", "model_names",
           "model_options"]
