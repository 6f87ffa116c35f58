"""Double MNIST: two digits side by side, a dim core digit on the left and a bright spurious digit on the right.

An image is ``(1, S, 2S)``: the left half holds a digit of class ``y`` scaled to ``core_brightness`` (default 0.5),
the right half a digit of class ``a`` at full brightness. BA/BC rule: label space, bias-aligned iff ``a == y``.
Training: ``a = y`` with probability ``rho``, else another class uniformly; validation and test: ``a`` independent of
``y`` (unbiased). Masks: the left half is the core region, the right half the spurious region. Counterfactuals put
another digit of the requested class in the right (spurious) or left (core) half.
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
from probe.data.digits import digit_parts, resize_images
from probe.data.mnist import digit_pool
from probe.errors import ProbeInputError


def draw_of_class(labels: torch.Tensor, wanted: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """For each entry of ``wanted``, a random position ``j`` with ``labels[j] == wanted`` (uniform within class)."""
    out = torch.empty(len(wanted), dtype=torch.long)
    for c in wanted.unique().tolist():
        pool = torch.nonzero(labels == c).flatten()
        if len(pool) == 0:
            raise ProbeInputError(f"no digit of class {c} in the pool of {len(labels)} digits to draw from")
        sel = torch.nonzero(wanted == c).flatten()
        out[sel] = pool[torch.randint(0, len(pool), (len(sel),), generator=generator)]
    return out


def compose_pair(left: torch.Tensor, right: torch.Tensor, core_brightness: float) -> torch.Tensor:
    """``(n, S, S)`` left and right digits -> ``(n, 1, S, 2S)`` with ``x = [core_brightness * left | right]``."""
    return torch.cat([left * core_brightness, right], dim=-1).unsqueeze(1)


def double_mnist(
    rho: float = 0.95,
    seed: int = 0,
    image_size: int | None = None,
    core_brightness: float = 0.5,
    val_fraction: float = 0.2,
    data_root: str | None = None,
) -> SpuriousDataset:
    """Build Double MNIST.

    Args:
        rho: fraction of bias-aligned training samples (default 0.95).
        seed: seed of the split and of every draw.
        image_size: side ``S`` of each digit; ``None`` keeps the source's size (8 embedded, 28 MNIST: 28x56).
        core_brightness: intensity of the left (core) digit in (0, 1]; the right digit has intensity 1.
        val_fraction: share of the training pool held out as an unbiased validation split.
        data_root: folder with MNIST IDX files (or ``$PROBE_DATA``); ``None`` uses the embedded default digits.
    """
    rho = check_rho(rho, "double-mnist")
    if image_size is not None:
        image_size = check_image_size(image_size, "double-mnist")
    if not 0.0 < core_brightness <= 1.0:
        raise ProbeInputError(f"double-mnist: core_brightness must lie in (0, 1], got {core_brightness}")
    digits, root = digit_pool(data_root, seed)
    g = torch.Generator().manual_seed(seed)
    pool_images = resize_images(digits.train_images, image_size)
    test_images = resize_images(digits.test_images, image_size)
    parts = digit_parts(pool_images, digits.train_labels, test_images, digits.test_labels, val_fraction, g,
                        "double-mnist")
    side = pool_images.shape[-1]
    left_half = torch.zeros(side, 2 * side, dtype=torch.bool)
    left_half[:, :side] = True
    pools: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    pair: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # (left, right) positions
    splits: dict[str, Split] = {}
    # the spurious (right) digit of a training or validation sample comes from the whole training pool, that of a
    # test sample from the test pool
    right_pools = {"train": (pool_images, digits.train_labels), "val": (pool_images, digits.train_labels),
                   "test": (test_images, digits.test_labels)}
    for name, (images, y, index) in parts.items():
        n = len(y)
        if n == 0:
            continue
        a = spurious_attributes(y, rho, 10, g) if name == "train" else unbiased_attributes(n, 10, g)
        right = draw_of_class(right_pools[name][1], a, g)
        pools[name] = (images, y)
        pair[name] = (torch.arange(n), right)
        splits[name] = Split(
            name=name,
            x=compose_pair(images, right_pools[name][0][right], core_brightness),
            y=y,
            a=a,
            is_bc=label_space_bc(y, a),
            index=index.long(),
            num_attrs=10,
            core_mask=left_half.expand(n, side, 2 * side),
            spurious_mask=(~left_half).expand(n, side, 2 * side),
        )
    cf = torch.Generator().manual_seed(seed + 7919)

    def render_spurious(split: str, positions: torch.Tensor, new_a: torch.Tensor) -> torch.Tensor:
        images, labels = right_pools[split]
        positions = positions.cpu()
        right = draw_of_class(labels, new_a.cpu(), cf)
        return compose_pair(pools[split][0][positions], images[right], core_brightness)

    def render_core(split: str, positions: torch.Tensor, new_y: torch.Tensor) -> torch.Tensor:
        images, labels = pools[split]
        positions = positions.cpu()
        left = draw_of_class(labels, new_y.cpu(), cf)
        return compose_pair(images[left], right_pools[split][0][pair[split][1][positions]], core_brightness)

    return SpuriousDataset(
        name="double-mnist",
        num_classes=10,
        num_attrs=10,
        input_shape=(1, side, 2 * side),
        splits=splits,
        bc_rule=BC_RULE_LABEL_SPACE,
        source=digits.source,
        options=dict(rho=rho, seed=seed, image_size=image_size, core_brightness=core_brightness,
                     val_fraction=val_fraction, data_root=root),
        mask_note="core: left half (the dim digit); spurious: right half (the bright digit)",
        render_spurious=render_spurious,
        render_core=render_core,
    )
