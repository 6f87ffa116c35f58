"""Any classifier as a :class:`~probe.models.base.FeatureModel`: the analyses need penultimate features
(``forward_features``), the head (``forward_head``) and the model's own modules (for hooks, pruning and Grad-CAM).

:func:`as_feature_model` takes a module as it is when it already follows probe's protocol (penultimate
``forward_features(x)`` of shape ``(n, d)``, ``forward_head(features)``); wraps a timm model (``forward_features``
gives a map, ``forward_head(x, pre_logits=True)`` the pooled features) in :class:`TimmSplit`; splits a module whose
classifier is torchvision's ``fc``, ``classifier`` or ``heads`` at the input of that attribute (:class:`HeadSplit`);
and splits any other module at its last ``nn.Linear`` (:class:`LastLinearSplit`). Every wrapper's ``state_dict`` is
the module's own (same keys), so the weights a run stores load into the bare module as well.
:func:`replace_head` gives a module's classifier the dataset's number of classes.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from probe.models.base import FeatureModel


def has_feature_split(module: nn.Module) -> bool:
    """True when ``module`` has callable ``forward_features`` and ``forward_head`` methods."""
    return callable(getattr(module, "forward_features", None)) and callable(getattr(module, "forward_head", None))


def is_timm_style(module: nn.Module) -> bool:
    """True for timm's convention: ``forward_features`` (a map or tokens), ``forward_head(x, pre_logits=...)`` and
    ``get_classifier()``; such a module's ``forward_features`` is not the penultimate features."""
    if not has_feature_split(module) or not callable(getattr(module, "get_classifier", None)):
        return False
    try:
        return "pre_logits" in inspect.signature(module.forward_head).parameters
    except (TypeError, ValueError):
        return False


#: Attributes torchvision names its classifiers by (ResNet, WideResNet: ``fc``; VGG, EfficientNet, MobileNet,
#: DenseNet: ``classifier``; ViT: ``heads``), in the order they are looked for.
HEAD_ATTRIBUTES = ("fc", "classifier", "heads")

#: Modules that act on flat ``(n, d)`` features, which an attribute head (an ``nn.Sequential``) may hold besides its
#: final ``nn.Linear``; an attribute head with anything else (torchvision ConvNeXt's ``LayerNorm2d``, ``Flatten``)
#: is not split there.
_FLAT_MODULES = (nn.Linear, nn.Dropout, nn.Identity, nn.LayerNorm, nn.BatchNorm1d)


def _acts_on_flat_features(module: nn.Module) -> bool:
    return isinstance(module, _FLAT_MODULES) or type(module).__module__ == "torch.nn.modules.activation"


def head_attribute(module: nn.Module) -> str | None:
    """The first of :data:`HEAD_ATTRIBUTES` that is the module's classifier, else None.

    It must be an ``nn.Linear`` or an ``nn.Sequential`` ending in one, whose layers all act on flat features
    (linear, dropout, activations, ``LayerNorm``, ``BatchNorm1d``), and the module's last ``nn.Linear`` (in
    ``named_modules`` order) must lie in it.
    """
    linears = [name for name, m in module.named_modules() if isinstance(m, nn.Linear)]
    for name in HEAD_ATTRIBUTES:
        head = getattr(module, name, None)
        if not isinstance(head, nn.Module) or not linears:
            continue
        if not (linears[-1] == name or linears[-1].startswith(name + ".")):
            continue
        if isinstance(head, nn.Linear):
            return name
        if (isinstance(head, nn.Sequential) and len(head) and isinstance(head[-1], nn.Linear)
                and all(_acts_on_flat_features(m) for m in head.modules() if m is not head)):
            return name
    return None


def as_feature_model(module: nn.Module) -> nn.Module:
    """``module`` as a model with penultimate ``forward_features(x)`` ``(n, d)`` and ``forward_head(features)``:

    - a :class:`~probe.models.base.FeatureModel`, or a module with ``forward_features`` / ``forward_head`` that is
      not timm-style: the module itself;
    - a timm-style module (:func:`is_timm_style`): :class:`TimmSplit`;
    - a module whose classifier is ``fc``, ``classifier`` or ``heads`` (:func:`head_attribute`, torchvision's
      names): :class:`HeadSplit` at that attribute;
    - any other module: :class:`LastLinearSplit`.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"a model must be a torch.nn.Module, got {type(module).__name__}")
    if isinstance(module, FeatureModel):
        return module
    if is_timm_style(module):
        return TimmSplit(module)
    if has_feature_split(module):
        return module
    attribute = head_attribute(module)
    return HeadSplit(module, attribute) if attribute else LastLinearSplit(module)


def _last_linear(module: nn.Module) -> nn.Linear | None:
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def replace_head(module: nn.Module, num_classes: int) -> nn.Module:
    """Give ``module``'s classifier ``num_classes`` outputs when it has another count; returns ``module``.

    A timm-style module (``reset_classifier``) calls ``module.reset_classifier(num_classes)``; otherwise the
    classifier is ``fc``, ``classifier`` or ``heads`` (an ``nn.Linear``, or an ``nn.Sequential`` whose last
    ``nn.Linear`` is replaced) or, without these, the module's last ``nn.Linear``. The new layer is an ``nn.Linear``
    of the same input size, bias, device and dtype, freshly initialised; a classifier that already has
    ``num_classes`` outputs is kept with its weights.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1000))
        >>> replace_head(net, 2)[2].out_features
        2
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"a model must be a torch.nn.Module, got {type(module).__name__}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if callable(getattr(module, "reset_classifier", None)) and callable(getattr(module, "get_classifier", None)):
        current = _last_linear(module.get_classifier())
        if current is None or current.out_features != num_classes:
            module.reset_classifier(num_classes)
        return module
    attribute = head_attribute(module)
    owner = module.get_submodule(attribute) if attribute else module
    names = [name for name, m in owner.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise ValueError(f"{type(module).__name__} has no nn.Linear classifier to replace")
    old = owner.get_submodule(names[-1])
    if old.out_features == num_classes:
        return module
    new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None, device=old.weight.device,
                    dtype=old.weight.dtype)
    if names[-1] == "":  # the attribute itself is the linear layer
        if attribute is None:
            raise ValueError("an nn.Linear on its own has no classifier attribute to replace; build a new one")
        setattr(module, attribute, new)
    else:
        parent, _, leaf = names[-1].rpartition(".")
        setattr(owner.get_submodule(parent) if parent else owner, leaf, new)
    return module


class _Features(Exception):
    """Carries the head's input out of the forward pass, which stops there."""

    def __init__(self, features: torch.Tensor):
        super().__init__()
        self.features = features


class _Wrapper(FeatureModel):
    """What every wrapper of a foreign module shares: ``self.module`` is the module, ``head`` its classifier (a
    subclass names it); ``forward_head`` is the head; ``num_features`` / ``num_classes`` are the ``in_features`` of
    the head's first ``nn.Linear`` and the ``out_features`` of its last; ``state_dict`` / ``load_state_dict`` are the
    module's, without a prefix; submodules are found under the module's own names as well (``get_submodule("layer4")``
    is ``get_submodule("module.layer4")``: the analyses' options name layers as the module does, e.g.
    ``gradcam_layer``)."""

    module: nn.Module

    @property
    def num_features(self) -> int:
        """Size of the head's input: the ``in_features`` of its first ``nn.Linear``."""
        return next(m for m in self.head.modules() if isinstance(m, nn.Linear)).in_features

    @property
    def num_classes(self) -> int:
        """Number of logits: the ``out_features`` of the head's last ``nn.Linear``."""
        return _last_linear(self.head).out_features

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        return self.module.load_state_dict(state_dict, strict=strict, assign=assign)

    def get_submodule(self, target: str) -> nn.Module:
        try:
            return super().get_submodule(target)
        except AttributeError:
            if not target:
                raise
            return self.module.get_submodule(target)


class HeadSplit(_Wrapper):
    """A module seen as features and head, split at the input of its submodule ``head_name``.

    ``forward(x)`` is the module's own forward; ``forward_features(x)`` runs it up to the head and returns the head's
    input; ``forward_head(f)`` is the head (an ``nn.Linear``, or an ``nn.Sequential`` ending in one, such as VGG's
    ``classifier``). The module's forward must return the head's output (the logits), which
    :func:`probe.models.build_model` checks on the meta device. ``state_dict`` and ``load_state_dict`` are the
    module's, without a prefix.

    Example:
        >>> net = nn.Sequential()
        >>> net.add_module("body", nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.ReLU()))
        >>> net.add_module("classifier", nn.Sequential(nn.Dropout(0.2), nn.Linear(8, 2)))
        >>> model = HeadSplit(net, "classifier")
        >>> model.num_features, model.num_classes, model.forward_features(torch.zeros(5, 4)).shape
        (8, 2, torch.Size([5, 8]))
    """

    def __init__(self, module: nn.Module, head_name: str):
        super().__init__()
        head = module.get_submodule(head_name)
        linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError(f"{type(module).__name__}.{head_name} has no nn.Linear layer to take as its classifier")
        self.module = module
        self.head_name = head_name

    @property
    def head(self) -> nn.Module:  # type: ignore[override]
        return self.module.get_submodule(self.head_name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        def stop(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            raise _Features(inputs[0])

        handle = self.head.register_forward_pre_hook(stop)
        try:
            self.module(x)
        except _Features as found:
            return found.features
        finally:
            handle.remove()
        raise RuntimeError(f"the head {self.head_name!r} did not run in the forward pass")

    def check_head_is_output(self, input_shape: tuple[int, ...]) -> None:
        """Raise ``ValueError`` unless the module's output is its head's output and the head's input is 2-D, tried
        on a batch of 2 meta tensors (nothing is allocated; a forward the meta device cannot run is not checked)."""
        seen: list[torch.Tensor] = []
        inputs: list[torch.Tensor] = []
        handles = [self.head.register_forward_hook(lambda _m, _i, out: seen.append(out)),
                   self.head.register_forward_pre_hook(lambda _m, i: inputs.append(i[0]))]
        try:
            with torch.device("meta"):
                out = self.module(torch.zeros(2, *input_shape))
        except (NotImplementedError, RuntimeError):
            return
        finally:
            for handle in handles:
                handle.remove()
        if not seen or out is not seen[-1]:
            raise ValueError(f"{type(self.module).__name__}: its output is not its {self._head_words()} "
                             f"({self.head_name!r}); give it forward_features(x) and forward_head(features) methods")
        if inputs[-1].dim() != 2:
            raise ValueError(f"{type(self.module).__name__}: the input of its classifier {self.head_name!r} has shape "
                             f"{tuple(inputs[-1].shape)}, not (n, d); give it forward_features(x) and "
                             "forward_head(features) methods")

    def _head_words(self) -> str:
        return "classifier"


class LastLinearSplit(HeadSplit):
    """A plain module seen as features and head, split at its last ``nn.Linear`` (in ``named_modules`` order):
    a :class:`HeadSplit` whose head is that layer.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> model = LastLinearSplit(net)
        >>> model.head_name, list(model.state_dict())[:2]
        ('3', ['1.weight', '1.bias'])
        >>> model.forward_features(torch.zeros(5, 4)).shape
        torch.Size([5, 8])
    """

    def __init__(self, module: nn.Module):
        linears = [name for name, m in module.named_modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError(f"{type(module).__name__} has no nn.Linear layer to take as its classifier head; give it "
                             "forward_features(x) and forward_head(features) methods")
        super().__init__(module, linears[-1])

    def _head_words(self) -> str:
        return "last nn.Linear"


class TimmSplit(_Wrapper):
    """A timm-style module (:func:`is_timm_style`) under probe's protocol.

    timm's ``forward_features(x)`` is the last map (or tokens) and ``forward_head(m, pre_logits=False)`` pools it and
    applies the classifier, ``get_classifier()``. Here

    - ``forward_features(x) = module.forward_head(module.forward_features(x), pre_logits=True)``: the pooled
      penultimate features ``(n, d)``, as the classifier receives them;
    - ``forward_head(f) = module.get_classifier()(f)`` (``head``), so ``forward(x)`` equals the module's own forward;
    - ``state_dict`` and ``load_state_dict`` are the module's, without a prefix.

    Example:
        >>> class Tiny(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.conv, self.fc = nn.Conv2d(1, 4, 3), nn.Linear(4, 2)
        ...     def forward_features(self, x): return self.conv(x)
        ...     def forward_head(self, x, pre_logits=False):
        ...         x = x.mean((2, 3))
        ...         return x if pre_logits else self.fc(x)
        ...     def get_classifier(self): return self.fc
        ...     def forward(self, x): return self.forward_head(self.forward_features(x))
        >>> TimmSplit(Tiny()).forward_features(torch.zeros(5, 1, 6, 6)).shape
        torch.Size([5, 4])
    """

    def __init__(self, module: nn.Module):
        super().__init__()
        if _last_linear(module.get_classifier()) is None:
            raise ValueError(f"{type(module).__name__}.get_classifier() has no nn.Linear (num_classes=0?); build it "
                             "with the dataset's num_classes")
        self.module = module

    @property
    def head(self) -> nn.Module:  # type: ignore[override]
        return self.module.get_classifier()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.module.forward_head(self.module.forward_features(x), pre_logits=True)

    def check_head_is_output(self, input_shape: tuple[int, ...]) -> None:
        """Raise ``ValueError`` unless the penultimate features are 2-D and ``forward`` gives logits of the module's
        own output shape, tried on meta tensors (a forward the meta device cannot run is not checked)."""
        try:
            with torch.device("meta"):
                x = torch.zeros(2, *input_shape)
                features = self.forward_features(x)
                ours, theirs = self.forward_head(features), self.module(x)
        except (NotImplementedError, RuntimeError):
            return
        if features.dim() != 2 or ours.shape != theirs.shape:
            raise ValueError(f"{type(self.module).__name__}: forward_head(forward_features(x), pre_logits=True) has "
                             f"shape {tuple(features.shape)} and its classifier gives {tuple(ours.shape)}, the module "
                             f"{tuple(theirs.shape)}; give it probe's forward_features(x) and forward_head(features)")
