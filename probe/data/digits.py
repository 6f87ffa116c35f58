"""Handwritten digits: the embedded default (scikit-learn's bundled real 8x8 scans) for MNIST-based datasets, and the
rules by which a digit dataset renders samples from source digits.

Source digits are split into train / validation / test pools that never share a digit. A training split renders
``n_train`` samples by cycling through the training pool (every digit ``floor`` or ``ceil(n_train / pool)`` times),
each copy with its own draw of the spurious attribute; exactly ``round((1 - rho) * n_train)`` samples are
bias-conflicting, so their number scales with ``n_train``. Validation and test splits are counterfactual-complete:
every pool digit once with every attribute value.

Sample index: ``copy * SOURCE_STRIDE + source``, where ``source`` is the digit's id in its source (the position in
scikit-learn's 1797 digits; for MNIST the position in the training file, or ``60000 +`` the position in the test file)
and ``copy`` is the copy number (training) or the attribute value (validation, test). Indices are unique within a
split, and ``index % SOURCE_STRIDE`` (:func:`source_digit`) gives the source digit of any sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from probe.errors import ProbeInputError

EMBEDDED_SOURCE = "embedded default: scikit-learn's bundled 8x8 handwritten digits (1797 real scans)"

#: ``index = copy * SOURCE_STRIDE + source``; larger than any source's number of digits (MNIST: 70,000).
SOURCE_STRIDE = 1_000_000

#: Training samples rendered from the embedded digits when ``n_train`` is not given.
EMBEDDED_N_TRAIN = 4000

#: At most this many source digits are rendered (each with every attribute value) in a validation or test split.
MAX_EVAL_DIGITS = 1000


@dataclass
class DigitImages:
    """Grayscale digits in [0, 1] with labels, already split into a training and a test pool.

    ``train_ids`` / ``test_ids`` are the digits' ids in their source (default: training pool ``0..n-1``, test pool
    numbered on after it); the embedded digits use their position among scikit-learn's 1797.
    """

    train_images: torch.Tensor  # (n, H, W) float32
    train_labels: torch.Tensor  # (n,) int64
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: str
    train_ids: torch.Tensor | None = field(default=None)
    test_ids: torch.Tensor | None = field(default=None)

    def __post_init__(self) -> None:
        if self.train_ids is None:
            self.train_ids = torch.arange(len(self.train_labels))
        if self.test_ids is None:
            self.test_ids = torch.arange(len(self.test_labels)) + len(self.train_labels)

    @property
    def embedded(self) -> bool:
        return self.source == EMBEDDED_SOURCE


@dataclass
class DigitPool:
    """The source digits of one split: images ``(m, H, W)``, labels ``(m,)`` and source ids ``(m,)``."""

    images: torch.Tensor
    labels: torch.Tensor
    ids: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


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


def source_digit(index: torch.Tensor) -> torch.Tensor:
    """The source digit id of each sample of a digit dataset: ``index % SOURCE_STRIDE``."""
    return index % SOURCE_STRIDE


def digit_pools(digits: DigitImages, image_size: int | None, val_fraction: float, generator: torch.Generator,
                name: str, max_eval_digits: int = MAX_EVAL_DIGITS) -> dict[str, DigitPool]:
    """``{split: DigitPool}``: the training pool split, class by class, into ``round(m_c * val_fraction)`` random
    validation digits of each class ``c`` (none at all: no ``val`` pool) and training digits, and the test pool.
    The validation and test pools are cut to ``max_eval_digits`` digits each (a random subset); every pool keeps
    the source's order."""
    if not 0.0 <= val_fraction < 1.0:
        raise ProbeInputError(f"{name}: val_fraction must lie in [0, 1), got {val_fraction}")
    images = resize_images(digits.train_images, image_size)
    held, kept = [], []
    for c in digits.train_labels.unique().tolist():  # stratified: every class gives round(n_c * val_fraction)
        of_class = torch.nonzero(digits.train_labels == c).flatten()
        of_class = of_class[torch.randperm(len(of_class), generator=generator)]
        n_c = int(round(len(of_class) * val_fraction))
        held.append(of_class[:n_c])
        kept.append(of_class[n_c:])
    val_pick, train_pick = torch.cat(held).sort().values, torch.cat(kept).sort().values

    def pool(imgs: torch.Tensor, labels: torch.Tensor, ids: torch.Tensor, pick: torch.Tensor) -> DigitPool:
        return DigitPool(imgs[pick], labels[pick], ids[pick])

    def capped(pick: torch.Tensor) -> torch.Tensor:
        if len(pick) <= max_eval_digits:
            return pick
        keep = torch.randperm(len(pick), generator=generator)[:max_eval_digits]
        return pick[keep].sort().values

    pools = {"train": pool(images, digits.train_labels, digits.train_ids, train_pick)}
    if len(val_pick):
        pools["val"] = pool(images, digits.train_labels, digits.train_ids, capped(val_pick))
    test_pick = capped(torch.arange(len(digits.test_labels)))
    pools["test"] = pool(resize_images(digits.test_images, image_size), digits.test_labels, digits.test_ids,
                         test_pick)
    return pools


def check_count(value: int, name: str, option: str) -> int:
    """``value`` as a positive int, else a one-line :class:`ProbeInputError` naming ``option``."""
    whole = isinstance(value, int) or (isinstance(value, float) and float(value).is_integer())
    if isinstance(value, bool) or not whole or int(value) < 1:
        raise ProbeInputError(f"{name}: {option} must be a positive whole number, got {value!r}")
    return int(value)


def check_n_train(n_train: int | None, digits: DigitImages, pool_size: int, name: str) -> int:
    """``n_train`` as a positive int; ``None``: :data:`EMBEDDED_N_TRAIN` for the embedded digits, else one sample per
    training digit (``pool_size``)."""
    if n_train is None:
        return EMBEDDED_N_TRAIN if digits.embedded else pool_size
    return check_count(n_train, name, "n_train")


def training_copies(pool_size: int, n_train: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``(positions, copy)`` of ``n_train`` training samples: the pool cycled in fresh random orders, so every digit
    is rendered ``floor`` or ``ceil(n_train / pool_size)`` times; ``copy`` numbers a digit's renderings 0, 1, ..."""
    rounds = -(-n_train // pool_size)
    positions = torch.cat([torch.randperm(pool_size, generator=generator) for _ in range(rounds)])[:n_train]
    return positions, torch.arange(n_train) // pool_size


def counterfactual_complete(pool_size: int, num_attrs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(positions, a)`` of an unbiased evaluation split: every pool digit once with every attribute value,
    attribute-major (all digits with ``a = 0``, then ``a = 1`` ...)."""
    positions = torch.arange(pool_size).repeat(num_attrs)
    return positions, torch.arange(num_attrs).repeat_interleave(pool_size)


def exact_spurious_attributes(y: torch.Tensor, rho: float, num_attrs: int,
                              generator: torch.Generator) -> torch.Tensor:
    """``a`` for labels ``y`` in a label-space dataset with exactly ``round((1 - rho) * n)`` bias-conflicting samples
    at random positions (``a`` uniform over the other ``num_attrs - 1`` values there) and ``a = y`` elsewhere: the
    BC count a metric is computed over does not depend on the luck of the draw."""
    n = len(y)
    n_bc = int(round((1.0 - rho) * n))
    conflicting = torch.zeros(n, dtype=torch.bool)
    conflicting[torch.randperm(n, generator=generator)[:n_bc]] = True
    offset = torch.randint(1, num_attrs, (n,), generator=generator)
    return torch.where(conflicting, (y + offset) % num_attrs, y)


def sample_index(ids: torch.Tensor, copy: torch.Tensor) -> torch.Tensor:
    """``copy * SOURCE_STRIDE + source id``: unique within a split, source recoverable by :func:`source_digit`."""
    return copy.long() * SOURCE_STRIDE + ids.long()


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
    return DigitImages(images[train], labels[train], images[test], labels[test], EMBEDDED_SOURCE,
                       train_ids=train, test_ids=test)
