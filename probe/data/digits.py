"""Handwritten digits: the embedded default (scikit-learn's bundled real 8x8 scans) for MNIST-based datasets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

EMBEDDED_SOURCE = "embedded default: scikit-learn's bundled 8x8 handwritten digits (1797 real scans)"


@dataclass
class DigitImages:
    """Grayscale digits in [0, 1] with labels, already split into a training and a test pool."""

    train_images: torch.Tensor  # (n, H, W) float32
    train_labels: torch.Tensor  # (n,) int64
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: str


def resize_images(images: torch.Tensor, size: int | tuple[int, int] | None) -> torch.Tensor:
    """Bilinear (antialiased) resize of ``(n, H, W)`` or ``(n, C, H, W)`` images; ``None`` keeps the size."""
    if size is None:
        return images
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(images.shape[-2:]) == hw:
        return images
    squeeze = images.dim() == 3
    x = images.unsqueeze(1) if squeeze else images
    out = F.interpolate(x, size=hw, mode="bilinear", align_corners=False, antialias=True).clamp_(0, 1)
    return out.squeeze(1) if squeeze else out


def digit_parts(pool: torch.Tensor, pool_labels: torch.Tensor, test: torch.Tensor, test_labels: torch.Tensor,
                val_fraction: float, generator: torch.Generator,
                name: str) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``{split: (images, labels, stable index)}`` for MNIST-based datasets: the training pool split by a random
    permutation into train and ``round(n * val_fraction)`` validation digits (none: no ``val`` split), and the test
    pool, whose indices are offset by 1,000,000 so that they never collide with training ones."""
    from probe.errors import ProbeInputError

    if not 0.0 <= val_fraction < 1.0:
        raise ProbeInputError(f"{name}: val_fraction must lie in [0, 1), got {val_fraction}")
    perm = torch.randperm(len(pool_labels), generator=generator)
    n_val = int(round(len(perm) * val_fraction))
    parts = {"train": (pool[perm[n_val:]], pool_labels[perm[n_val:]], perm[n_val:])}
    if n_val:
        parts["val"] = (pool[perm[:n_val]], pool_labels[perm[:n_val]], perm[:n_val])
    parts["test"] = (test, test_labels, torch.arange(len(test_labels)) + 1_000_000)
    return parts


def embedded_digits(seed: int = 0, test_fraction: float = 1 / 3) -> DigitImages:
    """scikit-learn's digits, split once into a training and a test pool by a fixed permutation of ``seed``."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(np.asarray(bunch.images, dtype=np.float32) / 16.0)
    labels = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    g = torch.Generator().manual_seed(10_000 + seed)
    perm = torch.randperm(len(labels), generator=g)
    n_test = int(round(len(labels) * test_fraction))
    test, train = perm[:n_test], perm[n_test:]
    return DigitImages(images[train], labels[train], images[test], labels[test], EMBEDDED_SOURCE)

