"""Corrupted CIFAR-10: the object class is the core label, a corruption type tied to the class the spurious one.

``a`` indexes :data:`probe.data.corruptions.CORRUPTIONS` (10 types: Gaussian, shot, impulse and speckle noise,
Gaussian blur, pixelate, contrast, brightness, saturate, JPEG), applied at a configurable ``severity`` (1..5).
BA/BC rule: label space, bias-aligned iff ``a == y`` (class ``k`` is mostly corrupted with corruption ``k``).
Training: ``a = y`` with probability ``rho``; validation and test: ``a`` independent of ``y``. A corruption covers the
whole image, so there are no masks; the counterfactual re-corrupts the clean image with another corruption.
"""

from __future__ import annotations

import torch

from probe.data.base import (
    BC_RULE_LABEL_SPACE,
    Split,
    SpuriousDataset,
    check_image_size,
    check_rho,
    label_space_bc,
    spurious_attributes,
    unbiased_attributes,
)
from probe.data.cifar import cifar_root, holdout, load_cifar, to_float_images
from probe.data.corruptions import CORRUPTIONS, corrupt_by_attribute
from probe.errors import ProbeInputError


def corrupted_cifar10(
    rho: float = 0.95,
    seed: int = 0,
    image_size: int | None = None,
    severity: int = 3,
    val_fraction: float = 0.2,
    data_root: str | None = None,
) -> SpuriousDataset:
    """Build Corrupted CIFAR-10.

    Args:
        rho: fraction of bias-aligned training samples (default 0.95).
        seed: seed of the split, the attributes and the corruption noise.
        image_size: side length; ``None`` keeps 32. Images are resized before they are corrupted.
        severity: corruption severity 1..5 (default 3).
        val_fraction: share of the CIFAR-10 training release held out as an unbiased validation split.
        data_root: folder holding the CIFAR-10 release (or ``$PROBE_DATA``).
    """
    rho = check_rho(rho, "corrupted-cifar10")
    if image_size is not None:
        image_size = check_image_size(image_size, "corrupted-cifar10")
    if int(severity) not in (1, 2, 3, 4, 5):
        raise ProbeInputError(f"corrupted-cifar10: severity must be 1..5, got {severity}")
    severity = int(severity)
    cifar = load_cifar(data_root, 10)
    g = torch.Generator().manual_seed(seed)
    train_x = to_float_images(cifar.train_images, image_size)
    train_y = torch.from_numpy(cifar.train_labels)
    keep, val = holdout(len(train_y), val_fraction, g)
    parts = {
        "train": (train_x[keep], train_y[keep], keep),
        "val": (train_x[val], train_y[val], val),
        "test": (to_float_images(cifar.test_images, image_size), torch.from_numpy(cifar.test_labels),
                 torch.arange(len(cifar.test_labels)) + 1_000_000),
    }
    clean: dict[str, torch.Tensor] = {}
    splits: dict[str, Split] = {}
    for name, (images, y, index) in parts.items():
        if len(y) == 0:
            continue
        a = spurious_attributes(y, rho, 10, g) if name == "train" else unbiased_attributes(len(y), 10, g)
        clean[name] = images
        splits[name] = Split(
            name=name,
            x=corrupt_by_attribute(images, a, severity, g),
            y=y,
            a=a,
            is_bc=label_space_bc(y, a),
            index=index.long(),
            num_attrs=10,
        )
    cf = torch.Generator().manual_seed(seed + 7919)

    def render_spurious(split: str, positions: torch.Tensor, new_a: torch.Tensor) -> torch.Tensor:
        return corrupt_by_attribute(clean[split][positions.cpu()], new_a.cpu(), severity, cf)

    side = train_x.shape[-1]
    return SpuriousDataset(
        name="corrupted-cifar10",
        num_classes=10,
        num_attrs=10,
        input_shape=(3, side, side),
        splits=splits,
        bc_rule=BC_RULE_LABEL_SPACE,
        source=f"{cifar.source}; corruptions {', '.join(CORRUPTIONS)} at severity {severity}",
        options=dict(rho=rho, seed=seed, image_size=image_size, severity=severity, val_fraction=val_fraction,
                     data_root=cifar_root(data_root)),
        mask_note="none: a corruption covers the whole image; use the counterfactual re-corruption (render_spurious)",
        render_spurious=render_spurious,
    )
