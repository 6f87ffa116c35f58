"""Datasets with a core label and a spurious attribute (see ``docs/datasets.md``)."""

from probe.data.base import (
    BC_RULE_LABEL_SPACE,
    BC_RULE_MAJORITY,
    Split,
    SpuriousDataset,
)
from probe.data.celeba import celeba
from probe.data.cifar import cifar10, cifar100
from probe.data.colored_mnist import colored_mnist
from probe.data.corrupted_cifar import corrupted_cifar10
from probe.data.double_mnist import double_mnist
from probe.data.imagenet import imagenet
from probe.data.mnist_cifar import mnist_cifar
from probe.data.moon_star import moon_star
from probe.data.parity import parity
from probe.data.registry import build_dataset, dataset_names, dataset_options, register_dataset
from probe.data.roots import DATA_ROOT_ENV, resolve_data_root
from probe.data.waterbirds import waterbirds

register_dataset("parity")(parity)
register_dataset("moon-star")(moon_star)
register_dataset("colored-mnist")(colored_mnist)
register_dataset("double-mnist")(double_mnist)
register_dataset("mnist-cifar")(mnist_cifar)
register_dataset("corrupted-cifar10")(corrupted_cifar10)
register_dataset("waterbirds")(waterbirds)
register_dataset("celeba")(celeba)
register_dataset("cifar10")(cifar10)
register_dataset("cifar100")(cifar100)
register_dataset("imagenet")(imagenet)

__all__ = [
    "BC_RULE_LABEL_SPACE",
    "BC_RULE_MAJORITY",
    "DATA_ROOT_ENV",
    "SpuriousDataset",
    "Split",
    "build_dataset",
    "dataset_names",
    "dataset_options",
    "register_dataset",
    "resolve_data_root",
]
