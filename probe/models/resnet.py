"""ResNet-18, -50, -101 and Wide ResNet-50-2 and -101-2 with a CIFAR stem (3x3 conv, no max-pool) for small images
and the ImageNet stem (7x7 stride-2 conv, max-pool) for large ones (side > 64 by default).

The layers are torchvision's (a bottleneck's stride on its 3x3 conv, "ResNet v1.5"), so torchvision's and timm's
ImageNet weights load through :mod:`probe.models.weights`. ``input_norm="imagenet"`` standardises the inputs with the
ImageNet channel means and standard deviations first (constants, not in the ``state_dict``)."""

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
    """1x1 conv to ``inner = planes x inner_factor`` channels, 3x3 conv (with the stride), 1x1 conv to ``4 planes``;
    ``inner_factor`` 2 is the wide ResNet's (torchvision's ``width_per_group=128``)."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1, inner_factor: int = 1):
        super().__init__()
        inner = planes * inner_factor
        self.conv1 = nn.Conv2d(in_planes, inner, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(inner)
        self.conv2 = nn.Conv2d(inner, inner, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(inner)
        self.conv3 = nn.Conv2d(inner, planes * self.expansion, 1, bias=False)
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
        inner_factor: a bottleneck's 3x3 conv has ``inner_factor x planes`` channels (2: wide ResNet).
        input_norm: ``"none"`` or ``"imagenet"``: inputs become ``(x - mean) / std`` per channel with ImageNet's
            ``mean = (0.485, 0.456, 0.406)`` and ``std = (0.229, 0.224, 0.225)`` (three-channel inputs only).
    """

    def __init__(self, input_shape, num_classes, block, layers, stem: str = "auto", width: int = 64,
                 inner_factor: int = 1, input_norm: str = "none"):
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
        if input_norm not in INPUT_NORMS:
            raise ValueError(f"unknown input_norm {input_norm!r}; use {' or '.join(INPUT_NORMS)}")
        if input_norm == "imagenet" and c != 3:
            raise ValueError(f"input_norm imagenet needs three-channel (RGB) inputs, got {c} channels")
        self.input_norm = input_norm
        if input_norm == "imagenet":  # constants: persistent=False keeps them out of the state_dict
            self.register_buffer("norm_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
            self.register_buffer("norm_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        block_kwargs = {"inner_factor": inner_factor} if inner_factor != 1 else {}
        in_planes = width
        stages = []
        for i, n_blocks in enumerate(layers):
            planes = width * 2**i
            blocks = []
            for j in range(n_blocks):
                blocks.append(block(in_planes, planes, stride=2 if (i > 0 and j == 0) else 1, **block_kwargs))
                in_planes = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(in_planes, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_norm == "imagenet":
            x = (x - self.norm_mean) / self.norm_std
        return self.pool(self.stages(self.stem(x)))


#: ImageNet's per-channel RGB mean and standard deviation (torchvision's and timm's ResNet weights expect them).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INPUT_NORMS = ("none", "imagenet")

#: Options of the ResNets (:func:`resnet18` ... :func:`wide_resnet101_2`).
RESNET_OPTIONS = (Option("stem", "str", "auto", "input stem: auto, cifar (3x3 conv) or imagenet (7x7 conv and pool)",
                         choices=("auto", "cifar", "imagenet")),
                  Option("width", "int", 64, "channels of the first stage", low=1, high=1024),
                  Option("input_norm", "str", "none", "input standardisation: none, or imagenet (ImageNet's "
                         "channel means and stds; the default with --weights)", choices=INPUT_NORMS))


def resnet18(input_shape, num_classes, stem: str = "auto", width: int = 64, input_norm: str = "none") -> ResNet:
    return ResNet(input_shape, num_classes, BasicBlock, [2, 2, 2, 2], stem=stem, width=width, input_norm=input_norm)


def resnet50(input_shape, num_classes, stem: str = "auto", width: int = 64, input_norm: str = "none") -> ResNet:
    return ResNet(input_shape, num_classes, Bottleneck, [3, 4, 6, 3], stem=stem, width=width, input_norm=input_norm)


def resnet101(input_shape, num_classes, stem: str = "auto", width: int = 64, input_norm: str = "none") -> ResNet:
    return ResNet(input_shape, num_classes, Bottleneck, [3, 4, 23, 3], stem=stem, width=width, input_norm=input_norm)


def wide_resnet50_2(input_shape, num_classes, stem: str = "auto", width: int = 64,
                    input_norm: str = "none") -> ResNet:
    """ResNet-50 with each bottleneck's 3x3 conv twice as wide (torchvision's ``wide_resnet50_2``)."""
    return ResNet(input_shape, num_classes, Bottleneck, [3, 4, 6, 3], stem=stem, width=width, inner_factor=2,
                  input_norm=input_norm)


def wide_resnet101_2(input_shape, num_classes, stem: str = "auto", width: int = 64,
                     input_norm: str = "none") -> ResNet:
    """ResNet-101 with each bottleneck's 3x3 conv twice as wide (torchvision's ``wide_resnet101_2``)."""
    return ResNet(input_shape, num_classes, Bottleneck, [3, 4, 23, 3], stem=stem, width=width, inner_factor=2,
                  input_norm=input_norm)
