"""ResNet-18 and ResNet-50 with a CIFAR stem (3x3 conv, no max-pool) for small images and the ImageNet stem
(7x7 stride-2 conv, max-pool) for large ones (side > 64 by default)."""

from __future__ import annotations

import torch
from torch import nn

from probe.models.base import FeatureModel
from probe.options import Option


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.shortcut = _shortcut(in_planes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU()
        self.shortcut = _shortcut(in_planes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.shortcut(x))


def _shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Module:
    if stride == 1 and in_planes == out_planes:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(in_planes, out_planes, 1, stride, bias=False), nn.BatchNorm2d(out_planes))


class ResNet(FeatureModel):
    """ResNet with ``forward_features`` ending in global average pooling.

    Args:
        input_shape: ``(C, H, W)``.
        num_classes: number of logits.
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        layers: blocks per stage.
        stem: ``"auto"`` (CIFAR stem when the side is <= 64, ImageNet stem otherwise), ``"cifar"`` or ``"imagenet"``.
        width: channels of the first stage (default 64).
    """

    def __init__(self, input_shape, num_classes, block, layers, stem: str = "auto", width: int = 64):
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(f"resnet needs image inputs (C, H, W), got input shape {tuple(input_shape)}")
        c, h, _ = input_shape
        if stem == "auto":
            stem = "cifar" if h <= 64 else "imagenet"
        if stem == "cifar":
            self.stem = nn.Sequential(nn.Conv2d(c, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        elif stem == "imagenet":
            self.stem = nn.Sequential(
                nn.Conv2d(c, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(3, 2, 1)
            )
        else:
            raise ValueError(f"unknown resnet stem {stem!r}; use auto, cifar or imagenet")
        self.stem_kind = stem
        in_planes = width
        stages = []
        for i, n_blocks in enumerate(layers):
            planes = width * 2**i
            blocks = []
            for j in range(n_blocks):
                blocks.append(block(in_planes, planes, stride=2 if (i > 0 and j == 0) else 1))
                in_planes = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(in_planes, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.stages(self.stem(x)))


#: Options of :func:`resnet18` and :func:`resnet50`.
RESNET_OPTIONS = (Option("stem", "str", "auto", "input stem: auto, cifar (3x3 conv) or imagenet (7x7 conv and pool)",
                         choices=("auto", "cifar", "imagenet")),
                  Option("width", "int", 64, "channels of the first stage", low=1, high=1024))


def resnet18(input_shape, num_classes, stem: str = "auto", width: int = 64) -> ResNet:
    return ResNet(input_shape, num_classes, BasicBlock, [2, 2, 2, 2], stem=stem, width=width)


def resnet50(input_shape, num_classes, stem: str = "auto", width: int = 64) -> ResNet:
    return ResNet(input_shape, num_classes, Bottleneck, [3, 4, 6, 3], stem=stem, width=width)
