"""Any classifier as a :class:`~probe.models.base.FeatureModel`: the analyses need penultimate features
(``forward_features``), the head (``forward_head``) and the model's own modules (for hooks, pruning and Grad-CAM).

A module that has ``forward_features`` and ``forward_head`` (timm's convention) is used as it is. A plain module is
wrapped in :class:`LastLinearSplit`, which takes its last ``nn.Linear`` as the head: the penultimate features are the
input of that layer. The wrapper's ``state_dict`` is the module's own (same keys), so the weights a run stores load
into the bare module as well.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from probe.models.base import FeatureModel


def has_feature_split(module: nn.Module) -> bool:
    """True when ``module`` has callable ``forward_features`` and ``forward_head`` methods."""
    return callable(getattr(module, "forward_features", None)) and callable(getattr(module, "forward_head", None))


def as_feature_model(module: nn.Module) -> nn.Module:
    """``module`` itself when it splits into features and head, else :class:`LastLinearSplit` around it."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"a model must be a torch.nn.Module, got {type(module).__name__}")
    return module if has_feature_split(module) else LastLinearSplit(module)


class _Features(Exception):
    """Carries the head's input out of the forward pass, which stops there."""

    def __init__(self, features: torch.Tensor):
        super().__init__()
        self.features = features


class LastLinearSplit(FeatureModel):
    """A plain module seen as features and head, split at its last ``nn.Linear`` (in ``named_modules`` order).

    ``forward(x)`` is the module's own forward; ``forward_features(x)`` runs it up to the head and returns the head's
    input; ``forward_head(f)`` is the head. The module's forward must return the head's output (the logits), which
    :func:`probe.models.build_model` checks on the meta device. ``state_dict`` and ``load_state_dict`` are the
    module's, without a prefix.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> model = LastLinearSplit(net)
        >>> model.head_name, list(model.state_dict())[:2]
        ('3', ['1.weight', '1.bias'])
        >>> model.forward_features(torch.zeros(5, 4)).shape
        torch.Size([5, 8])
    """

    def __init__(self, module: nn.Module):
        super().__init__()
        linears = [name for name, m in module.named_modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError(f"{type(module).__name__} has no nn.Linear layer to take as its classifier head; give it "
                             "forward_features(x) and forward_head(features) methods")
        self.module = module
        self.head_name = linears[-1]

    @property
    def head(self) -> nn.Linear:  # type: ignore[override]
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

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        return self.module.load_state_dict(state_dict, strict=strict, assign=assign)

    def check_head_is_output(self, input_shape: tuple[int, ...]) -> None:
        """Raise ``ValueError`` unless the module's output is its head's output, tried on a batch of 2 meta tensors
        (nothing is allocated; a forward the meta device cannot run is not checked)."""
        seen: list[torch.Tensor] = []
        handle = self.head.register_forward_hook(lambda _m, _i, out: seen.append(out))
        try:
            with torch.device("meta"):
                out = self.module(torch.zeros(2, *input_shape))
        except (NotImplementedError, RuntimeError):
            return
        finally:
            handle.remove()
        if not seen or out is not seen[-1]:
            raise ValueError(f"{type(self.module).__name__}: its output is not its last nn.Linear ({self.head_name!r});"
                             " give it forward_features(x) and forward_head(features) methods")
