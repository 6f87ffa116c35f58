"""MNIST in its official IDX files (``train-images-idx3-ubyte[.gz]`` ...), also under torchvision's ``MNIST/raw/``.

IDX layout: a big-endian header of two zero bytes, a type code (``0x08`` = unsigned byte), the number of dimensions,
then one 32-bit big-endian size per dimension, then the data. Images have magic ``0x00000803`` (n x 28 x 28),
labels ``0x00000801`` (n).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from probe.data.bounded import read_declared, read_exactly
from probe.data.digits import DigitImages, embedded_digits
from probe.data.paths import confined_path
from probe.data.roots import candidate_dirs, missing_data, resolve_data_root, root_given_explicitly
from probe.errors import DataFormatError

IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801

#: The four files, by role.
MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

#: Sub-folders of a data root searched for the IDX files (the root itself first).
MNIST_DIRS = ("MNIST/raw", "mnist/raw", "MNIST", "mnist", "raw")

MNIST_WHERE = (
    "put train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte "
    "(each optionally .gz) in DIR or DIR/MNIST/raw/"
)


def read_idx(path: str | Path, expect_magic: int | None = None) -> np.ndarray:
    """Read one IDX file (gzipped or plain) into a uint8 array of the shape its header gives.

    The header is read first and the size it declares checked against :data:`~probe.data.bounded.MAX_DATA_BYTES` and
    against what the file can hold before anything is allocated (see :func:`~probe.data.bounded.read_declared`).
    Raises :class:`DataFormatError` naming the file on a wrong magic number, a type other than unsigned byte, or a
    size that does not match the header, and :class:`SizeLimitError` on a header declaring more than the limit.
    """
    path = Path(path)

    def parse_header(fh) -> tuple[int, tuple[int, ...], str]:
        head = read_exactly(fh, 4, path, "IDX header")
        magic = int.from_bytes(head, "big")
        if expect_magic is not None and magic != expect_magic:
            raise DataFormatError(
                f"{path}: IDX magic number 0x{magic:08x}, expected 0x{expect_magic:08x} "
                f"({'images' if expect_magic == IDX_IMAGES_MAGIC else 'labels'})"
            )
        if head[0] != 0 or head[1] != 0 or head[2] != 0x08:
            raise DataFormatError(f"{path}: IDX magic number 0x{magic:08x} is not an unsigned-byte IDX file")
        ndim = head[3]
        dims = read_exactly(fh, 4 * ndim, path, f"IDX header ({ndim} dimensions)")
        shape = tuple(int.from_bytes(dims[4 * k : 4 * k + 4], "big") for k in range(ndim))
        return (math.prod(shape) if shape else 0), shape, f"IDX header shape {shape}"

    shape, data = read_declared(path, parse_header)
    return data.reshape(shape)


def find_mnist(root: str | Path) -> dict[str, Path] | None:
    """The four IDX files under ``root`` (or ``root/MNIST/raw`` ...), preferring plain over ``.gz``; else None."""
    for folder in candidate_dirs(Path(root), MNIST_DIRS):
        found: dict[str, Path] = {}
        for role, name in MNIST_FILES.items():
            for candidate in (folder / name, folder / f"{name}.gz"):
                if candidate.is_file():
                    found[role] = candidate
                    break
        if len(found) == len(MNIST_FILES):
            return found
    return None


def load_mnist(data_root: str | Path) -> DigitImages:
    """MNIST from the IDX files under ``data_root``, as grayscale images in [0, 1]."""
    root = Path(data_root)
    files = find_mnist(root)
    if files is None:
        raise missing_data("mnist", MNIST_WHERE, root)
    arrays = {
        role: read_idx(confined_path(path.parent, path.name, source=path.parent),
                       IDX_IMAGES_MAGIC if role.endswith("images") else IDX_LABELS_MAGIC)
        for role, path in files.items()
    }
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3:
            raise DataFormatError(f"{files[f'{split}_images']}: expected 3 dimensions (n, H, W), got {images.shape}")
        if labels.ndim != 1 or len(labels) != len(images):
            raise DataFormatError(
                f"{files[f'{split}_labels']}: {labels.shape} labels for {len(images)} images in "
                f"{files[f'{split}_images'].name}"
            )
        if labels.size and labels.max() > 9:
            bad = int(np.argmax(labels > 9))
            raise DataFormatError(f"{files[f'{split}_labels']}: row {bad}: label {int(labels[bad])} is not a digit")

    def images(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.astype(np.float32) / 255.0)

    def labels(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.astype(np.int64))

    folder = files["train_images"].parent
    return DigitImages(
        images(arrays["train_images"]),
        labels(arrays["train_labels"]),
        images(arrays["test_images"]),
        labels(arrays["test_labels"]),
        f"MNIST IDX files in {folder}",
    )


def resolve_mnist_root(data_root: str | os.PathLike | None) -> Path | None:
    """The folder to read MNIST from, or None for the embedded digits.

    An explicit ``data_root`` must hold the IDX files (else a one-line error says where to put them). A root taken
    from ``$PROBE_DATA`` is used when it holds them and otherwise quietly falls back to the embedded digits.
    """
    root = resolve_data_root(data_root)
    if root is None:
        return None
    if find_mnist(root) is not None:
        return root
    if root_given_explicitly(data_root):
        raise missing_data("mnist", MNIST_WHERE, root)
    return None


def digit_pool(data_root: str | os.PathLike | None, seed: int) -> tuple[DigitImages, str | None]:
    """Digits for an MNIST-based dataset and the resolved root to record in its options (None = embedded)."""
    root = resolve_mnist_root(data_root)
    if root is None:
        return embedded_digits(seed), None
    return load_mnist(root), str(root)
