"""A plugin with three models written the way other libraries write them, none of them following probe's protocol:

- ``foreign-plain-cnn``: an ``nn.Sequential`` CNN whose classifier is its last ``nn.Linear`` (:class:`LastLinearSplit`);
- ``foreign-timm-style``: timm's convention, ``forward_features`` returning a 4-D map and
  ``forward_head(x, pre_logits=False)`` pooling it into a ``head.fc`` classifier, with ``get_classifier`` and
  ``reset_classifier`` (:class:`TimmSplit`);
- ``foreign-torchvision-style``: torchvision's ResNet layout, ``conv1``/``bn1``/``layer1``/``avgpool`` and ``fc``
  (:class:`HeadSplit` at ``fc``).

The builders make 10 (or 7) classes and call :func:`probe.models.replace_head` with the dataset's count, as a plugin
wrapping a pretrained model does.
"""

from __future__ import annotations

import torch
from torch import nn

import probe
from probe.models import replace_head


@probe.register_model("foreign-plain-cnn")
def plain_cnn(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return replace_head(nn.Sequential(
        nn.Conv2d(input_shape[0], 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 12), nn.ReLU(), nn.Linear(12, 10)), num_classes)


class ClassifierHead(nn.Module):
    """timm's ``ClassifierHead``: global pooling, dropout, then ``fc`` unless ``pre_logits``."""

    def __init__(self, in_features: int, num_classes: int, drop_rate: float = 0.1):
        super().__init__()
        self.in_features = in_features
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(in_features, num_classes)
        self.flatten = nn.Flatten(1)

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(self.global_pool(x))
        if pre_logits:
            return self.flatten(x)
        return self.flatten(self.fc(x.flatten(1)))


class TimmStyleNet(nn.Module):
    """A small convnet with timm's interface (``forward_features`` -> map, ``forward_head``, ``get_classifier``,
    ``reset_classifier``, ``num_features``)."""

    def __init__(self, in_chans: int, num_classes: int, width: int = 8):
        super().__init__()
        self.num_features = width
        self.stem = nn.Sequential(nn.Conv2d(in_chans, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.stages = nn.ModuleList([nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU())])
        self.head = ClassifierHead(width, num_classes)

    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int) -> None:
        self.head.fc = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@probe.register_model("foreign-timm-style")
def timm_style(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return replace_head(TimmStyleNet(input_shape[0], 7), num_classes)


class TorchvisionStyleNet(nn.Module):
    """torchvision's ResNet layout, shrunk: ``conv1``, ``bn1``, ``relu``, ``layer1``, ``avgpool``, ``fc``."""

    def __init__(self, in_chans: int, num_classes: int = 10, width: int = 8):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                    nn.ReLU(inplace=True))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer1(self.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


@probe.register_model("foreign-torchvision-style")
def torchvision_style(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return replace_head(TorchvisionStyleNet(input_shape[0]), num_classes)


def hand_features(name: str, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The penultimate features of model ``name``'s bare ``module``, written out by hand (eval mode)."""
    if name == "foreign-plain-cnn":
        return module[:-1](x)
    if name == "foreign-timm-style":
        return module.head.global_pool(module.stages[0](module.stem(x))).flatten(1)
    x = module.layer1(module.relu(module.bn1(module.conv1(x))))
    return module.avgpool(x).flatten(1)
