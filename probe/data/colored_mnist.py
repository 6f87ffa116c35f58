"""Colored MNIST: the digit is the core feature, the stroke colour (one colour per class, plus noise) the spurious one.

BA/BC rule: label space, bias-aligned iff ``a == y``. Training split: ``a = y`` with probability ``rho``, otherwise
another colour drawn uniformly. Validation and test splits: colour independent of the digit (unbiased). Colour is not
spatial, so there are no masks; the counterfactual recolours a sample's strokes with another attribute's colour.
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

#: One RGB colour per class (attribute), well separated.
PALETTE = torch.tensor(
    [
        [1.00, 0.00, 0.00],
        [0.00, 1.00, 0.00],
        [0.00, 0.00, 1.00],
        [1.00, 1.00, 0.00],
        [1.00, 0.00, 1.00],
        [0.00, 1.00, 1.00],
        [1.00, 0.50, 0.00],
        [0.50, 0.00, 1.00],
        [0.00, 0.50, 0.25],
        [0.60, 0.60, 0.60],
    ]
)


def colorize(gray: torch.Tensor, a: torch.Tensor, jitter: torch.Tensor) -> torch.Tensor:
    """``x[c] = gray * clip(palette[a, c] + jitter[c], 0, 1)`` for ``(n, H, W)`` grayscale digits."""
    colours = (PALETTE.to(gray.device)[a] + jitter).clamp(0, 1)
    return gray.unsqueeze(1) * colours[:, :, None, None]


def colored_mnist(
    rho: float = 0.99,
    seed: int = 0,
    image_size: int | None = None,
    color_noise: float = 0.05,
    val_fraction: float = 0.2,
    data_root: str | None = None,
) -> SpuriousDataset:
    """Build Colored MNIST.

    Args:
        rho: fraction of bias-aligned training samples (default 0.99).
        seed: seed of the split, the attributes and the colour noise.
        image_size: side length; ``None`` keeps the source's native size (8 for the embedded digits, 28 for MNIST).
        color_noise: standard deviation of the per-sample Gaussian jitter added to the class colour.
        val_fraction: share of the training pool held out as an unbiased validation split.
        data_root: folder with MNIST IDX files (or ``$PROBE_DATA``); ``None`` uses the embedded default digits.
    """
    rho = check_rho(rho, "colored-mnist")
    if image_size is not None:
        image_size = check_image_size(image_size, "colored-mnist")
    digits, root = digit_pool(data_root, seed)
    g = torch.Generator().manual_seed(seed)
    parts = digit_parts(resize_images(digits.train_images, image_size), digits.train_labels,
                        resize_images(digits.test_images, image_size), digits.test_labels, val_fraction, g,
                        "colored-mnist")
    grays: dict[str, torch.Tensor] = {}
    jitters: dict[str, torch.Tensor] = {}
    splits: dict[str, Split] = {}
    for name, (gray, y, index) in parts.items():
        a = spurious_attributes(y, rho, 10, g) if name == "train" else unbiased_attributes(len(y), 10, g)
        jitter = torch.randn(len(y), 3, generator=g) * color_noise
        grays[name], jitters[name] = gray, jitter
        splits[name] = Split(
            name=name,
            x=colorize(gray, a, jitter),
            y=y,
            a=a,
            is_bc=label_space_bc(y, a),
            index=index.long(),
            num_attrs=10,
        )

    def render_spurious(split: str, positions: torch.Tensor, new_a: torch.Tensor) -> torch.Tensor:
        positions = positions.cpu()
        return colorize(grays[split][positions], new_a.cpu(), jitters[split][positions])

    side = parts["train"][0].shape[-1]
    return SpuriousDataset(
        name="colored-mnist",
        num_classes=10,
        num_attrs=10,
        input_shape=(3, side, side),
        splits=splits,
        bc_rule=BC_RULE_LABEL_SPACE,
        source=digits.source,
        options=dict(rho=rho, seed=seed, image_size=image_size, color_noise=color_noise,
                     val_fraction=val_fraction, data_root=root),
        mask_note="none: colour is not spatial; use the counterfactual recolouring (render_spurious)",
        render_spurious=render_spurious,
    )
