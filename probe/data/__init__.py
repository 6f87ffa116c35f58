"""Datasets with a core label and a spurious attribute (see ``docs/datasets.md``)."""

from probe.data.base import (
    BC_RULE_LABEL_SPACE,
    BC_RULE_MAJORITY,
    Split,
    SpuriousDataset,
)
from probe.data.colored_mnist import colored_mnist
from probe.data.parity import parity
from probe.data.registry import build_dataset, dataset_names, dataset_options, register_dataset

register_dataset("parity")(parity)
register_dataset("colored-mnist")(colored_mnist)

__all__ = [
    "BC_RULE_LABEL_SPACE",
    "BC_RULE_MAJORITY",
    "SpuriousDataset",
    "Split",
    "build_dataset",
    "dataset_names",
    "dataset_options",
    "register_dataset",
]
