"""Multi-layer perceptron on flattened inputs."""

from __future__ import annotations

import math

import torch
from torch import nn

from probe.models.base import FeatureModel
from probe.options import Option


class MLP(FeatureModel):
    """``depth`` hidden layers of ``width`` ReLU units, then a linear head.

    Args:
        input_shape: per-sample input shape; flattened.
        num_classes: number of logits.
        width: hidden units per layer (default 256).
        depth: number of hidden layers (default 2; 0 gives a linear model on the flattened input).
    """

    OPTIONS = (Option("width", "int", 256, "hidden units per layer", low=1, high=65536),
               Option("depth", "int", 2, "hidden layers (0: a linear model)", low=0, high=256))

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, width: int = 256, depth: int = 2):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        fan_in = math.prod(input_shape)
        for _ in range(depth):
            layers += [nn.Linear(fan_in, width), nn.ReLU()]
            fan_in = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(fan_in, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)
