"""MNIST in its official IDX files (``train-images-idx3-ubyte[.gz]`` ...), also under torchvision's ``MNIST/raw/``.

IDX layout: a big-endian header of two zero bytes, a type code (``0x08`` = unsigned byte), the number of dimensions,
then one 32-bit big-endian size per dimension, then the data. Images have magic ``0x00000803`` (n x 28 x 28),
labels ``0x00000801`` (n).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

from probe.data.digits import DigitImages, embedded_digits
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

    Raises :class:`DataFormatError` naming the file on a wrong magic number, a type other than unsigned byte, or a
    size that does not match the header.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
        opener = gzip.open if head == b"\x1f\x8b" else open
        with opener(path, "rb") as fh:
            raw = fh.read()
    except OSError as err:
        raise DataFormatError(f"{path}: cannot read IDX file ({err})") from None
    if len(raw) < 4:
        raise DataFormatError(f"{path}: too short for an IDX header ({len(raw)} bytes)")
    magic = int.from_bytes(raw[:4], "big")
    if expect_magic is not None and magic != expect_magic:
        raise DataFormatError(
            f"{path}: IDX magic number 0x{magic:08x}, expected 0x{expect_magic:08x} "
            f"({'images' if expect_magic == IDX_IMAGES_MAGIC else 'labels'})"
        )
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataFormatError(f"{path}: IDX magic number 0x{magic:08x} is not an unsigned-byte IDX file")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataFormatError(f"{path}: IDX header names {ndim} dimensions but the file ends inside it")
    shape = tuple(int.from_bytes(raw[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    expected = int(np.prod(shape)) if shape else 0
    if len(raw) - header != expected:
        raise DataFormatError(f"{path}: IDX header shape {shape} needs {expected} data bytes, file has "
                              f"{len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


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
        role: read_idx(path, IDX_IMAGES_MAGIC if role.endswith("images") else IDX_LABELS_MAGIC)
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
