"""CIFAR-10 / CIFAR-100 in their official releases, and the standard ``cifar10`` / ``cifar100`` datasets.

Binary release (``cifar-10-batches-bin/``, ``cifar-100-binary/``): records of 1 label byte (CIFAR-100: coarse then
fine label byte) followed by 3072 pixel bytes (1024 red, 1024 green, 1024 blue, each row-major 32x32). Python release
(``cifar-10-batches-py/``, ``cifar-100-python/``): pickled dicts; they are read only through
:class:`RestrictedUnpickler`, which admits plain containers, bytes, strings, numbers and numpy's array
reconstruction, and refuses everything else before it can run. When both releases are present the binary one is read.

The standard datasets have one attribute (``A = 1``, ``a = 0``, every sample bias-aligned): they carry no annotated
spurious cue, so group metrics reduce to class accuracy.
"""

from __future__ import annotations

import io
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from probe.data.base import Split, SpuriousDataset, check_image_size
from probe.data.bounded import read_bounded
from probe.data.digits import resize_images
from probe.data.paths import confined_path
from probe.data.roots import candidate_dirs, missing_data, resolve_data_root
from probe.errors import DataFormatError, ProbeInputError

CIFAR10_WHERE = (
    "put the CIFAR-10 python release (data_batch_1 ... data_batch_5, test_batch, batches.meta) in "
    "DIR/cifar-10-batches-py/ or the binary release (data_batch_1.bin ... data_batch_5.bin, test_batch.bin, "
    "batches.meta.txt) in DIR/cifar-10-batches-bin/"
)
CIFAR100_WHERE = (
    "put the CIFAR-100 python release (train, test, meta) in DIR/cifar-100-python/ or the binary release "
    "(train.bin, test.bin, fine_label_names.txt) in DIR/cifar-100-binary/"
)

_CIFAR10_DIRS = ("cifar-10-batches-bin", "cifar-10-batches-py", "cifar10", "CIFAR10", "cifar-10",
                 "cifar10/cifar-10-batches-bin", "cifar10/cifar-10-batches-py")
_CIFAR100_DIRS = ("cifar-100-binary", "cifar-100-python", "cifar100", "CIFAR100", "cifar-100",
                  "cifar100/cifar-100-binary", "cifar100/cifar-100-python")

#: The only globals a CIFAR python batch may name: numpy's array reconstruction.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # protocol-2 pickles written by Python 3 store bytes as _codecs.encode(text, "latin1")
}


def _latin1_encode(text: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    """The only form of ``_codecs.encode`` admitted: text to bytes through latin-1."""
    if not isinstance(text, str) or encoding.lower().replace("-", "") != "latin1":
        raise DataFormatError(f"refused _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1", errors)


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds plain containers, bytes, strings, numbers and numpy arrays, and nothing else.

    Admitted globals: numpy's ``_reconstruct``, ``ndarray`` and ``dtype`` (array reconstruction) and
    ``_codecs.encode`` restricted to latin-1 (how Python 3 writes bytes in protocol-2 pickles).

    Any other global a pickle names (``os.system``, ``builtins.eval``, a class with a ``__reduce__`` ...) is refused
    with :class:`DataFormatError` before it is looked up, so no code from the file runs.
    """

    def __init__(self, file: Any, path: str | Path):
        super().__init__(file, encoding="bytes")
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise DataFormatError(
                f"{self.path}: refused to unpickle global {module}.{name}; a CIFAR python batch holds only "
                f"containers and numpy arrays"
            )
        if module == "_codecs":
            return _latin1_encode
        if name == "_reconstruct":
            try:
                from numpy._core.multiarray import _reconstruct
            except ImportError:  # numpy < 2
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        return getattr(np, name)

    def persistent_load(self, pid: Any) -> Any:
        raise DataFormatError(f"{self.path}: refused a persistent id in a CIFAR python batch")


def load_pickled_batch(path: str | Path) -> dict:
    """Read one CIFAR python batch through :class:`RestrictedUnpickler`; keys are returned as ``str``."""
    path = Path(path)
    raw = read_bounded(path)
    try:
        obj = RestrictedUnpickler(io.BytesIO(raw), path).load()
    except DataFormatError:
        raise
    except Exception as err:
        raise DataFormatError(f"{path}: not a readable CIFAR python batch ({type(err).__name__}: {err})") from None
    if not isinstance(obj, dict):
        raise DataFormatError(f"{path}: expected a dict, found {type(obj).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def _field(batch: dict, key: str, path: Path) -> Any:
    if key not in batch:
        raise DataFormatError(f"{path}: missing field {key!r} (has {', '.join(sorted(batch))})")
    return batch[key]


def _pixels(data: Any, path: Path) -> np.ndarray:
    arr = np.asarray(data)
    if arr.dtype != np.uint8 or arr.ndim != 2 or arr.shape[1] != 3072:
        raise DataFormatError(f"{path}: field 'data' must be uint8 (n, 3072), got {arr.dtype} {arr.shape}")
    return arr.reshape(-1, 3, 32, 32)


def _labels(data: Any, n: int, num_classes: int, path: Path, key: str) -> np.ndarray:
    arr = np.asarray(data)
    if arr.dtype == object or arr.ndim != 1 or len(arr) != n:
        raise DataFormatError(f"{path}: field {key!r} must hold {n} integer labels, got shape {arr.shape}")
    arr = arr.astype(np.int64)
    bad = np.flatnonzero((arr < 0) | (arr >= num_classes))
    if len(bad):
        raise DataFormatError(f"{path}: row {int(bad[0])}: label {int(arr[bad[0]])} outside 0..{num_classes - 1}")
    return arr


def read_binary_batch(path: str | Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Read a binary batch: ``(images uint8 (n, 3, 32, 32), labels int64 (n,))``; CIFAR-100 gives fine labels."""
    path = Path(path)
    label_bytes = 1 if num_classes == 10 else 2
    record = label_bytes + 3072
    raw = np.frombuffer(read_bounded(path), dtype=np.uint8)
    if raw.size == 0 or raw.size % record:
        raise DataFormatError(f"{path}: {raw.size} bytes is not a whole number of {record}-byte CIFAR records")
    rows = raw.reshape(-1, record)
    labels = _labels(rows[:, label_bytes - 1], len(rows), num_classes, path, "label byte")
    return rows[:, label_bytes:].reshape(-1, 3, 32, 32).copy(), labels


@dataclass
class CifarArrays:
    """A CIFAR release in memory: uint8 ``(n, 3, 32, 32)`` images and int64 labels."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: list[str]
    source: str


def _find(root: Path, dirs: tuple[str, ...], marker: str) -> Path | None:
    for folder in candidate_dirs(root, dirs):
        if (folder / marker).is_file():
            return folder
    return None


#: Largest class-name list read (CIFAR-100's is 1 KB).
_NAMES_LIMIT = 2**20


def _names_txt(path: Path, k: int) -> list[str]:
    if not path.is_file():
        return [str(i) for i in range(k)]
    text = read_bounded(path, limit=_NAMES_LIMIT).decode("utf-8", "replace")
    names = [line.strip() for line in text.splitlines() if line.strip()]
    return names if len(names) == k else [str(i) for i in range(k)]


def _names_pickle(path: Path, key: str, k: int) -> list[str]:
    if not path.is_file():
        return [str(i) for i in range(k)]
    names = load_pickled_batch(path).get(key)
    if not isinstance(names, list) or len(names) != k:
        return [str(i) for i in range(k)]
    return [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names]


def load_cifar(data_root: str | Path | None, num_classes: int = 10) -> CifarArrays:
    """Read CIFAR-10 (``num_classes=10``) or CIFAR-100 (fine labels) from ``data_root`` (or ``$PROBE_DATA``)."""
    if num_classes not in (10, 100):
        raise ProbeInputError(f"CIFAR has 10 or 100 classes, not {num_classes}")
    name = f"cifar{num_classes}"
    where = CIFAR10_WHERE if num_classes == 10 else CIFAR100_WHERE
    root = resolve_data_root(data_root)
    if root is None:
        raise missing_data(name, where, None)
    if num_classes == 10:
        train_bin = [f"data_batch_{i}.bin" for i in range(1, 6)]
        train_py = [f"data_batch_{i}" for i in range(1, 6)]
        test_bin, test_py, dirs = "test_batch.bin", "test_batch", _CIFAR10_DIRS
    else:
        train_bin, train_py, test_bin, test_py, dirs = ["train.bin"], ["train"], "test.bin", "test", _CIFAR100_DIRS
    folder = _find(root, dirs, train_bin[0])
    if folder is not None:
        for f in [*train_bin, test_bin]:
            if not (folder / f).is_file():
                raise DataFormatError(f"{folder / f}: missing from the CIFAR binary release in {folder}")
        parts = [read_binary_batch(confined_path(folder, f, source=folder), num_classes) for f in train_bin]
        test_x, test_y = read_binary_batch(confined_path(folder, test_bin, source=folder), num_classes)
        names = _names_txt(confined_path(folder, "batches.meta.txt" if num_classes == 10 else "fine_label_names.txt",
                                         source=folder), num_classes)
        kind = "binary"
    else:
        folder = _find(root, dirs, train_py[0])
        if folder is None:
            raise missing_data(name, where, root)
        for f in [*train_py, test_py]:
            if not (folder / f).is_file():
                raise DataFormatError(f"{folder / f}: missing from the CIFAR python release in {folder}")
        label_key = "labels" if num_classes == 10 else "fine_labels"

        def read(path: Path) -> tuple[np.ndarray, np.ndarray]:
            batch = load_pickled_batch(path)
            x = _pixels(_field(batch, "data", path), path)
            return x, _labels(_field(batch, label_key, path), len(x), num_classes, path, label_key)

        parts = [read(confined_path(folder, f, source=folder)) for f in train_py]
        test_x, test_y = read(confined_path(folder, test_py, source=folder))
        names = (_names_pickle(confined_path(folder, "batches.meta", source=folder), "label_names", 10)
                 if num_classes == 10
                 else _names_pickle(confined_path(folder, "meta", source=folder), "fine_label_names", 100))
        kind = "python"
    return CifarArrays(
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        test_x,
        test_y,
        names,
        f"CIFAR-{num_classes} {kind} release in {folder}",
    )


def cifar_root(data_root: str | os.PathLike | None) -> str | None:
    """The resolved root to record in a dataset's options."""
    root = resolve_data_root(data_root)
    return None if root is None else str(root)


def to_float_images(images: np.ndarray, image_size: int | None) -> torch.Tensor:
    """uint8 ``(n, 3, 32, 32)`` -> float32 in [0, 1], resized to ``image_size`` when given."""
    return resize_images(torch.from_numpy(images).float().div_(255.0), image_size)


def holdout(n: int, fraction: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Split positions ``0..n-1`` into ``(kept, held_out)`` with ``round(n * fraction)`` held out at random."""
    if not 0.0 <= fraction < 1.0:
        raise ProbeInputError(f"val_fraction must lie in [0, 1), got {fraction}")
    perm = torch.randperm(n, generator=generator)
    n_val = int(round(n * fraction))
    return perm[n_val:].sort().values, perm[:n_val].sort().values


def standard_splits(train_x: torch.Tensor, train_y: torch.Tensor, test_x: Any, test_y: torch.Tensor,
                    val_fraction: float, seed: int) -> dict[str, Split]:
    """Train / (val) / test splits of a standard classification set: ``a = 0``, nothing bias-conflicting.

    ``index`` is the position in the training release for train and val, and 1_000_000 + position for test.
    """
    g = torch.Generator().manual_seed(seed)
    keep, val = holdout(len(train_y), val_fraction, g)
    splits = {"train": single_attribute_split("train", train_x[keep], train_y[keep], keep)}
    if len(val):
        splits["val"] = single_attribute_split("val", train_x[val], train_y[val], val)
    splits["test"] = single_attribute_split("test", test_x, test_y, torch.arange(len(test_y)) + 1_000_000)
    return splits


def single_attribute_split(name: str, x: Any, y: torch.Tensor, index: torch.Tensor) -> Split:
    """A split with one attribute: ``a = 0`` and no bias-conflicting sample."""
    n = len(y)
    return Split(name=name, x=x, y=y, a=torch.zeros(n, dtype=torch.long), is_bc=torch.zeros(n, dtype=torch.bool),
                 index=index.long(), num_attrs=1)


STANDARD_BC_RULE = "none: one attribute (A = 1), every sample counts as bias-aligned"
STANDARD_MASK_NOTE = "none: standard classification has no annotated core or spurious region"


def _standard_cifar(num_classes: int, seed: int, image_size: int | None, val_fraction: float,
                    data_root: str | None) -> SpuriousDataset:
    if image_size is not None:
        image_size = check_image_size(image_size, f"cifar{num_classes}")
    arrays = load_cifar(data_root, num_classes)
    train_x = to_float_images(arrays.train_images, image_size)
    test_x = to_float_images(arrays.test_images, image_size)
    splits = standard_splits(train_x, torch.from_numpy(arrays.train_labels), test_x,
                             torch.from_numpy(arrays.test_labels), val_fraction, seed)
    side = train_x.shape[-1]
    return SpuriousDataset(
        name=f"cifar{num_classes}",
        num_classes=num_classes,
        num_attrs=1,
        input_shape=(3, side, side),
        splits=splits,
        bc_rule=STANDARD_BC_RULE,
        source=arrays.source,
        options=dict(seed=seed, image_size=image_size, val_fraction=val_fraction, data_root=cifar_root(data_root)),
        mask_note=STANDARD_MASK_NOTE,
    )


def cifar10(seed: int = 0, image_size: int | None = None, val_fraction: float = 0.0,
            data_root: str | None = None) -> SpuriousDataset:
    """CIFAR-10 (K = 10, A = 1) from its binary or python release.

    Args:
        seed: seed of the validation hold-out.
        image_size: side length; ``None`` keeps 32.
        val_fraction: share of the training release held out as a validation split (0: no validation split).
        data_root: folder holding ``cifar-10-batches-py/`` or ``cifar-10-batches-bin/`` (or ``$PROBE_DATA``).
    """
    return _standard_cifar(10, seed, image_size, val_fraction, data_root)


def cifar100(seed: int = 0, image_size: int | None = None, val_fraction: float = 0.0,
             data_root: str | None = None) -> SpuriousDataset:
    """CIFAR-100 (K = 100 fine labels, A = 1) from its binary or python release; arguments as :func:`cifar10`."""
    return _standard_cifar(100, seed, image_size, val_fraction, data_root)
