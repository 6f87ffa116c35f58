"""Models by name. Every model has ``forward_features(x)`` (penultimate features) and ``forward_head(f)`` (logits)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from probe.errors import ProbeInputError
from probe.models.base import FeatureModel
from probe.models.cnn import SmallCNN
from probe.models.mlp import MLP
from probe.models.resnet import ResNet, resnet18, resnet50

_MODELS: dict[str, Callable[..., FeatureModel]] = {
    "mlp": MLP,
    "cnn": SmallCNN,
    "resnet18": resnet18,
    "resnet50": resnet50,
}


def model_names() -> list[str]:
    return sorted(_MODELS)


def model_options(name: str) -> dict[str, Any]:
    """Options a model accepts, with defaults."""
    if name not in _MODELS:
        raise ProbeInputError(f"unknown model {name!r}; known: {', '.join(model_names())}")
    sig = inspect.signature(_MODELS[name])
    return {p.name: p.default for p in sig.parameters.values() if p.default is not inspect.Parameter.empty}


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int, **options: Any) -> FeatureModel:
    """Build model ``name`` for inputs of ``input_shape`` and ``num_classes`` logits."""
    accepted = model_options(name)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ProbeInputError(f"model {name!r} takes no option {', '.join(unknown)}; it takes {', '.join(accepted)}")
    try:
        return _MODELS[name](tuple(input_shape), num_classes, **options)
    except ValueError as err:
        raise ProbeInputError(str(err)) from None


__all__ = ["MLP", "FeatureModel", "ResNet", "SmallCNN", "build_model", "model_names", "model_options"]
