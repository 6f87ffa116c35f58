"""Colored MNIST: the digit is the core feature, the stroke colour (one colour per class, plus noise) the spurious one.

BA/BC rule: label space, bias-aligned iff ``a == y``. Training split: ``n_train`` samples rendered from the training
digits (each copy of a digit its own draws), exactly ``round((1 - rho) * n_train)`` of them, at random, in another
colour than their class's (drawn uniformly), the rest in their class's colour. Validation and test splits: every
digit of the pool once in each of the 10 colours (unbiased and counterfactual-complete). Colour is not spatial, so
there are no masks; the counterfactual recolours a sample's strokes with another attribute's colour, keeping its
colour jitter and pixel noise.

A sample is ``x[c] = gray * clip(palette[a, c] + jitter[c], 0, 1) + noise[c]`` with ``jitter ~ N(0, color_noise^2)``
per sample and channel, ``noise ~ N(0, pixel_noise^2)`` per pixel and channel (``x`` is not clipped).
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
)
from probe.data.digits import (
    MAX_EVAL_DIGITS,
    check_count,
    check_n_train,
    counterfactual_complete,
    digit_pools,
    exact_spurious_attributes,
    sample_index,
    training_copies,
)
from probe.data.mnist import digit_pool
from probe.errors import ProbeInputError

#: One RGB colour per class (attribute): matplotlib's tab10 colours, none with a zero channel.
TAB10 = torch.tensor(
    [
        [0x1F, 0x77, 0xB4],  # blue
        [0xFF, 0x7F, 0x0E],  # orange
        [0x2C, 0xA0, 0x2C],  # green
        [0xD6, 0x27, 0x28],  # red
        [0x94, 0x67, 0xBD],  # purple
        [0x8C, 0x56, 0x4B],  # brown
        [0xE3, 0x77, 0xC2],  # pink
        [0x7F, 0x7F, 0x7F],  # grey
        [0xBC, 0xBD, 0x22],  # olive
        [0x17, 0xBE, 0xCF],  # cyan
    ],
    dtype=torch.float32,
) / 255.0

#: The IRM-style set: pure primaries and their mixtures (12 of 30 channels are zero).
PRIMARIES = torch.tensor(
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

#: Palettes by the name the ``palette`` option takes.
PALETTES = {"tab10": TAB10, "primaries": PRIMARIES}

#: The default palette (kept under this name for callers of earlier versions).
PALETTE = TAB10


def colorize(gray: torch.Tensor, a: torch.Tensor, jitter: torch.Tensor, palette: torch.Tensor = TAB10) -> torch.Tensor:
    """``x[c] = gray * clip(palette[a, c] + jitter[c], 0, 1)`` for ``(n, H, W)`` grayscale digits."""
    colours = (palette.to(gray.device)[a] + jitter).clamp(0, 1)
    return gray.unsqueeze(1) * colours[:, :, None, None]


def _check_noise(value: float, option: str) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ProbeInputError(f"colored-mnist: {option} must lie in [0, 1], got {value}")
    return value


def colored_mnist(
    rho: float = 0.99,
    seed: int = 0,
    image_size: int | None = None,
    n_train: int | None = None,
    palette: str = "tab10",
    color_noise: float = 0.05,
    pixel_noise: float = 0.02,
    val_fraction: float = 0.2,
    max_eval_digits: int = MAX_EVAL_DIGITS,
    data_root: str | None = None,
) -> SpuriousDataset:
    """Build Colored MNIST.

    Args:
        rho: fraction of bias-aligned training samples (default 0.99).
        seed: seed of the split, the attributes and the noise.
        image_size: side length; ``None`` keeps the source's native size (8 for the embedded digits, 28 for MNIST).
        n_train: training samples rendered from the training digits; ``None``: 4000 for the embedded digits (about
            40 bias-conflicting at rho 0.99), one per training digit for MNIST.
        palette: ``"tab10"`` (default; no zero channel) or ``"primaries"`` (pure primaries, the IRM-style set).
        color_noise: standard deviation of the per-sample Gaussian jitter added to the class colour.
        pixel_noise: standard deviation of the Gaussian noise added to every pixel and channel.
        val_fraction: share of the training digits held out for the unbiased validation split (0: none).
        max_eval_digits: at most this many digits in the validation and the test split (each in all 10 colours).
        data_root: folder with MNIST IDX files (or ``$PROBE_DATA``); ``None`` uses the embedded default digits.
    """
    rho = check_rho(rho, "colored-mnist")
    if image_size is not None:
        image_size = check_image_size(image_size, "colored-mnist")
    if palette not in PALETTES:
        raise ProbeInputError(f"colored-mnist: palette must be one of {', '.join(PALETTES)}, got {palette!r}")
    colours = PALETTES[palette]
    color_noise = _check_noise(color_noise, "color_noise")
    pixel_noise = _check_noise(pixel_noise, "pixel_noise")
    max_eval_digits = check_count(max_eval_digits, "colored-mnist", "max_eval_digits")
    digits, root = digit_pool(data_root, seed)
    g = torch.Generator().manual_seed(seed)
    pools = digit_pools(digits, image_size, val_fraction, g, "colored-mnist", max_eval_digits)
    n_train = check_n_train(n_train, digits, len(pools["train"]), "colored-mnist")
    grays: dict[str, torch.Tensor] = {}  # per split: the pool digits
    sources: dict[str, torch.Tensor] = {}  # per split: each sample's position in its pool
    jitters: dict[str, torch.Tensor] = {}
    splits: dict[str, Split] = {}
    for name, pool in pools.items():
        if name == "train":
            positions, copy = training_copies(len(pool), n_train, g)
            y = pool.labels[positions]
            a = exact_spurious_attributes(y, rho, 10, g)
        else:
            positions, a = counterfactual_complete(len(pool), 10)
            y, copy = pool.labels[positions], a
        jitter = torch.randn(len(y), 3, generator=g) * color_noise
        rendered = colorize(pool.images[positions], a, jitter, colours)
        rendered += torch.randn(rendered.shape, generator=g) * pixel_noise
        grays[name], sources[name], jitters[name] = pool.images, positions, jitter
        splits[name] = Split(
            name=name,
            x=rendered,
            y=y,
            a=a,
            is_bc=label_space_bc(y, a),
            index=sample_index(pool.ids[positions], copy),
            num_attrs=10,
        )

    def render_spurious(split: str, positions: torch.Tensor, new_a: torch.Tensor) -> torch.Tensor:
        """The same digit, jitter and pixel noise in the colour of ``new_a``."""
        positions = positions.cpu()
        gray, jitter = grays[split][sources[split][positions]], jitters[split][positions]
        noise = splits[split].x[positions] - colorize(gray, splits[split].a[positions], jitter, colours)
        return colorize(gray, new_a.cpu(), jitter, colours) + noise

    side = pools["train"].images.shape[-1]
    return SpuriousDataset(
        name="colored-mnist",
        num_classes=10,
        num_attrs=10,
        input_shape=(3, side, side),
        splits=splits,
        bc_rule=BC_RULE_LABEL_SPACE,
        source=digits.source,
        options=dict(rho=rho, seed=seed, image_size=image_size, n_train=n_train, palette=palette,
                     color_noise=color_noise, pixel_noise=pixel_noise, val_fraction=val_fraction,
                     max_eval_digits=max_eval_digits, data_root=root),
        mask_note="none: colour is not spatial; use the counterfactual recolouring (render_spurious)",
        render_spurious=render_spurious,
    )
