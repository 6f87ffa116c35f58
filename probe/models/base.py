"""The model protocol: ``forward(x) = forward_head(forward_features(x))``."""

from __future__ import annotations

import torch
from torch import nn


class FeatureModel(nn.Module):
    """Base class: subclasses define ``forward_features`` (penultimate features) and ``head`` (a linear layer)."""

    head: nn.Linear

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from penultimate features."""
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    @property
    def num_features(self) -> int:
        return self.head.in_features
