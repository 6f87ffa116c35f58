"""MNIST-CIFAR: an MNIST digit block (0 or 1) stacked on top of a CIFAR-10 block (automobile or truck).

An image is ``(3, 2S, S)``: the top ``S x S`` block holds an MNIST digit (white on black, 0 or 1: the spurious
attribute ``a``), the bottom block a CIFAR-10 image (automobile = class 0, truck = class 1: the core label ``y``).
BA/BC rule: label space, bias-aligned iff ``a == y`` (digit 0 with automobiles, digit 1 with trucks). Training:
``a = y`` with probability ``rho``; validation and test: ``a`` independent of ``y``. Masks: the bottom block is the
core region, the top block the spurious region. Counterfactuals swap in another digit (new ``a``) or another CIFAR
image of the requested class (new ``y``) from the same split's pool.

CIFAR-10 must be on disk (see :mod:`probe.data.cifar`); the digits come from MNIST IDX files under the same data root
when present, else from the embedded default digits (the dataset's ``source`` says which).
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
from probe.data.digits import embedded_digits, resize_images
from probe.data.double_mnist import draw_of_class
from probe.data.mnist import find_mnist, load_mnist
from probe.data.roots import resolve_data_root

#: CIFAR-10 class ids of the core classes: automobile (y = 0) and truck (y = 1).
CIFAR_CORE_CLASSES = (1, 9)


def stack_blocks(top: torch.Tensor, bottom: torch.Tensor) -> torch.Tensor:
    """``(n, S, S)`` grayscale digits over ``(n, 3, S, S)`` colour images -> ``(n, 3, 2S, S)``."""
    return torch.cat([top.unsqueeze(1).expand(-1, 3, -1, -1), bottom], dim=-2)


def mnist_cifar(
    rho: float = 0.95,
    seed: int = 0,
    image_size: int | None = None,
    val_fraction: float = 0.2,
    data_root: str | None = None,
) -> SpuriousDataset:
    """Build MNIST-CIFAR.

    Args:
        rho: fraction of bias-aligned training samples (default 0.95).
        seed: seed of the split and of every draw.
        image_size: block side ``S`` (default 32, CIFAR's size): images are ``(3, 2S, S)``.
        val_fraction: share of the CIFAR training pool held out as an unbiased validation split.
        data_root: folder holding the CIFAR-10 release (and optionally MNIST IDX files), or ``$PROBE_DATA``.
    """
    rho = check_rho(rho, "mnist-cifar")
    side = check_image_size(image_size, "mnist-cifar") if image_size is not None else 32
    cifar = load_cifar(data_root, 10)
    root = resolve_data_root(data_root)
    digits = load_mnist(root) if root is not None and find_mnist(root) is not None else embedded_digits(seed)
    g = torch.Generator().manual_seed(seed)

    def core_pool(images, labels):
        keep = torch.from_numpy((labels == CIFAR_CORE_CLASSES[0]) | (labels == CIFAR_CORE_CLASSES[1]))
        pos = torch.nonzero(keep).flatten()
        y = (torch.from_numpy(labels)[pos] == CIFAR_CORE_CLASSES[1]).long()
        return to_float_images(images[pos.numpy()], side), y, pos

    train_img, train_y, train_pos = core_pool(cifar.train_images, cifar.train_labels)
    test_img, test_y, test_pos = core_pool(cifar.test_images, cifar.test_labels)
    keep, val = holdout(len(train_y), val_fraction, g)
    parts = {
        "train": (train_img[keep], train_y[keep], train_pos[keep]),
        "val": (train_img[val], train_y[val], train_pos[val]),
        "test": (test_img, test_y, test_pos + 1_000_000),
    }

    def digit_pool_of(images, labels):
        sel = torch.nonzero(labels <= 1).flatten()
        return resize_images(images[sel], side), labels[sel]

    digit_pools = {
        "train": digit_pool_of(digits.train_images, digits.train_labels),
        "test": digit_pool_of(digits.test_images, digits.test_labels),
    }
    digit_pools["val"] = digit_pools["train"]
    top = torch.zeros(2 * side, side, dtype=torch.bool)
    top[:side] = True
    cores: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    tops: dict[str, torch.Tensor] = {}
    splits: dict[str, Split] = {}
    for name, (images, y, index) in parts.items():
        n = len(y)
        if n == 0:
            continue
        a = spurious_attributes(y, rho, 2, g) if name == "train" else unbiased_attributes(n, 2, g)
        dimg, dlab = digit_pools[name]
        chosen = draw_of_class(dlab, a, g)
        cores[name] = (images, y)
        tops[name] = dimg[chosen]
        splits[name] = Split(
            name=name,
            x=stack_blocks(tops[name], images),
            y=y,
            a=a,
            is_bc=label_space_bc(y, a),
            index=index.long(),
            num_attrs=2,
            core_mask=(~top).expand(n, 2 * side, side),
            spurious_mask=top.expand(n, 2 * side, side),
        )
    cf = torch.Generator().manual_seed(seed + 7919)

    def render_spurious(split: str, positions: torch.Tensor, new_a: torch.Tensor) -> torch.Tensor:
        dimg, dlab = digit_pools[split]
        chosen = draw_of_class(dlab, new_a.cpu(), cf)
        return stack_blocks(dimg[chosen], cores[split][0][positions.cpu()])

    def render_core(split: str, positions: torch.Tensor, new_y: torch.Tensor) -> torch.Tensor:
        images, labels = cores[split]
        chosen = draw_of_class(labels, new_y.cpu(), cf)
        return stack_blocks(tops[split][positions.cpu()], images[chosen])

    return SpuriousDataset(
        name="mnist-cifar",
        num_classes=2,
        num_attrs=2,
        input_shape=(3, 2 * side, side),
        splits=splits,
        bc_rule=BC_RULE_LABEL_SPACE,
        source=f"{cifar.source} (automobile vs truck); digits: {digits.source}",
        options=dict(rho=rho, seed=seed, image_size=image_size, val_fraction=val_fraction,
                     data_root=cifar_root(data_root)),
        mask_note="core: bottom block (CIFAR image); spurious: top block (MNIST digit)",
        render_spurious=render_spurious,
        render_core=render_core,
    )
