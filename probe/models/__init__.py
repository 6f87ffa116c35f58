"""Models by name. Every model has ``forward_features(x)`` (penultimate features) and ``forward_head(f)`` (logits).

The built-in models (``mlp``, ``cnn``, ``resnet18``, ``resnet50``, ``resnet101``, ``wide_resnet50_2``,
``wide_resnet101_2``) and those plugins register with
:func:`register_model` (``docs/plugins.md``) are built by :func:`build_model`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from probe.errors import ProbeInputError
from probe.models.adapt import HeadSplit, LastLinearSplit, TimmSplit, as_feature_model, replace_head
from probe.models.base import FeatureModel
from probe.models.cnn import SmallCNN
from probe.models.mlp import MLP
from probe.models.resnet import (
    RESNET_OPTIONS,
    ResNet,
    resnet18,
    resnet50,
    resnet101,
    wide_resnet50_2,
    wide_resnet101_2,
)
from probe.options import Option, check_options
from probe.plugins import defining_module

#: ``builder(input_shape, num_classes, **options) -> nn.Module``
ModelBuilder = Callable[..., nn.Module]

#: name -> (builder, declared options; None: any keyword options, passed to the builder unchecked)
_MODELS: dict[str, tuple[ModelBuilder, tuple[Option, ...] | None]] = {
    "mlp": (MLP, MLP.OPTIONS),
    "cnn": (SmallCNN, SmallCNN.OPTIONS),
    "resnet18": (resnet18, RESNET_OPTIONS),
    "resnet50": (resnet50, RESNET_OPTIONS),
    "resnet101": (resnet101, RESNET_OPTIONS),
    "wide_resnet50_2": (wide_resnet50_2, RESNET_OPTIONS),
    "wide_resnet101_2": (wide_resnet101_2, RESNET_OPTIONS),
}


def register_model(name: str, *, options: Sequence[Option] | None = None) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator: make a model builder available to :func:`build_model`, the CLI and run readers as ``name``.

    The builder is called as ``builder(input_shape, num_classes, **options)`` and returns any ``torch.nn.Module``:
    one with probe's ``forward_features(x)`` (penultimate, ``(n, d)``) and ``forward_head(features)`` is used as it
    is; a timm model is wrapped in :class:`TimmSplit`; a module whose classifier is ``fc``, ``classifier`` or
    ``heads`` (torchvision) is split at that attribute's input (:class:`HeadSplit`); any other module whose forward
    returns its last ``nn.Linear``'s output is split there (:class:`LastLinearSplit`). The wrappers keep the
    module's ``state_dict`` keys; :func:`replace_head` sets a module's class count. ``options`` declares the
    model's options with types, ranges and defaults (checked before the model is built, listed in errors); ``None``
    passes any ``--model-option`` to the builder unchecked. Registering a name again with another builder is an error.

    Example:
        >>> import probe
        >>> from torch import nn
        >>> from probe.models import Option
        >>> width = Option("width", "int", 16, "hidden units", low=1)
        >>> @probe.register_model("tiny-mlp", options=(width,))   # doctest: +SKIP
        ... def tiny_mlp(input_shape, num_classes, width=16):
        ...     return nn.Sequential(nn.Flatten(), nn.LazyLinear(width), nn.ReLU(), nn.Linear(width, num_classes))
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"a model name must be a non-empty string, got {name!r}")
    declared = None if options is None else tuple(options)
    if declared is not None and not all(isinstance(o, Option) for o in declared):
        raise TypeError(f"model {name!r}: options must be probe.models.Option instances")

    def wrap(builder: ModelBuilder) -> ModelBuilder:
        if not callable(builder):
            raise TypeError(f"model {name!r}: the builder must be callable, got {builder!r}")
        known = _MODELS.get(name)
        if known is not None and known[0] is not builder:
            raise ValueError(f"model {name!r} is registered already (by {known[0].__module__}."
                             f"{known[0].__qualname__})")
        _MODELS[name] = (builder, declared)
        return builder

    return wrap


def model_plugin(name: str) -> str | None:
    """The plugin module that defines model ``name``'s builder, or None for a built-in model."""
    return defining_module(_spec(name)[0])


#: Largest model built (2^30 parameters, 4 GiB in float32; ResNet-50 has 25 million); counted before allocating.
MAX_PARAMETERS = 2**30


def model_names() -> list[str]:
    return sorted(_MODELS)


def _spec(name: str) -> tuple[ModelBuilder, tuple[Option, ...] | None]:
    try:
        return _MODELS[name]
    except KeyError:
        raise ProbeInputError(f"unknown model {name!r}; known: {', '.join(model_names())} (a plugin's model needs "
                              "--plugin MODULE)") from None


def declared_options(name: str) -> tuple[Option, ...] | None:
    """The options model ``name`` declares, with types, ranges and defaults (None: it takes any options)."""
    return _spec(name)[1]


def model_options(name: str) -> dict[str, Any]:
    """Options a model declares, with defaults (empty for a model that takes any options)."""
    return {o.name: o.default for o in declared_options(name) or ()}


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int, **options: Any) -> nn.Module:
    """Build model ``name`` for inputs of ``input_shape`` and ``num_classes`` logits.

    Options are checked against the model's declared types and ranges (:mod:`probe.options`) and the
    parameter count against :data:`MAX_PARAMETERS` (on the meta device, allocating nothing) before the model is
    built; a bad value or an unknown option is a one-line :class:`ProbeInputError` listing the model's options.
    The result has ``forward_features`` and ``forward_head`` (a plain module is split by :func:`as_feature_model`).
    """
    builder, declared = _spec(name)
    kwargs = dict(options) if declared is None else check_options(f"model {name!r}", declared, options)
    try:
        with torch.device("meta"):  # count the parameters without allocating them
            probe_model = _built(name, builder, tuple(input_shape), num_classes, kwargs)
            count = sum(p.numel() for p in probe_model.parameters())
        if isinstance(probe_model, HeadSplit | TimmSplit):
            probe_model.check_head_is_output(tuple(input_shape))
    except ProbeInputError:
        raise
    except ValueError as err:  # the model refuses the input shape, or cannot be split
        message = str(err)
        raise ProbeInputError(message if message.startswith(name) else f"model {name!r}: {message}") from None
    if count > MAX_PARAMETERS:
        raise ProbeInputError(f"model {name!r} with {kwargs or 'default options'} would have {count} parameters "
                              f"({count / 1e9:.1f} billion), over the limit of {MAX_PARAMETERS}")
    return _built(name, builder, tuple(input_shape), num_classes, kwargs)


def _built(name: str, builder: ModelBuilder, input_shape: tuple[int, ...], num_classes: int,
           kwargs: dict[str, Any]) -> nn.Module:
    try:
        module = builder(input_shape, num_classes, **kwargs)
    except TypeError as err:  # a plugin model that takes any options was given one its builder lacks
        if _MODELS[name][1] is None:
            raise ProbeInputError(f"model {name!r}: {err}") from None
        raise
    try:
        return as_feature_model(module)
    except TypeError as err:
        raise ProbeInputError(f"model {name!r}: {err}") from None

__all__ = ["MLP", "FeatureModel", "HeadSplit", "LastLinearSplit", "Option", "ResNet", "SmallCNN", "TimmSplit",
           "as_feature_model", "build_model", "declared_options", "model_names", "model_options", "model_plugin",
           "register_model", "replace_head"]
