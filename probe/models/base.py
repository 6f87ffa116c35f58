"""The model protocol: ``forward(x) = forward_head(forward_features(x))``."""

from __future__ import annotations

import abc

import torch
from torch import nn


class FeatureModel(nn.Module, abc.ABC):
    """Base class: subclasses define ``forward_features`` (penultimate features) and ``head`` (a linear layer)."""

    head: nn.Linear

    @abc.abstractmethod
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``(n, num_features)``."""

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from penultimate features."""
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    @property
    def num_features(self) -> int:
        return self.head.in_features
