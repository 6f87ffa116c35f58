"""A small convolutional network for small images (8x8 to 64x64)."""

from __future__ import annotations

import torch
from torch import nn

from probe.models.base import FeatureModel
from probe.options import Option


class SmallCNN(FeatureModel):
    """Two 3x3 conv blocks (conv, ReLU, 2x2 max-pool when the side allows), global average pooling, a ReLU
    fully connected layer of ``width`` units, then a linear head.

    Args:
        input_shape: ``(C, H, W)``.
        num_classes: number of logits.
        channels: channels of the two conv blocks (default 32).
        width: penultimate feature width (default 128).
    """

    OPTIONS = (Option("channels", "int", 32, "channels of the convolutions", low=1, high=4096),
               Option("width", "int", 128, "units of the hidden linear layer", low=1, high=65536))

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, channels: int = 32, width: int = 128):
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(f"cnn needs image inputs (C, H, W), got input shape {tuple(input_shape)}")
        c, h, _ = input_shape
        pool1 = nn.MaxPool2d(2) if h >= 8 else nn.Identity()
        self.conv = nn.Sequential(
            nn.Conv2d(c, channels, 3, padding=1),
            nn.ReLU(),
            pool1,
            nn.Conv2d(channels, 2 * channels, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.fc = nn.Sequential(nn.Linear(2 * channels, width), nn.ReLU())
        self.head = nn.Linear(width, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x))
