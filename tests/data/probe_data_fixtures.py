"""Writers of tiny datasets in the real on-disk formats (IDX, CIFAR binary / python, Waterbirds, CelebA, class
folders). Every writer returns what it wrote so tests compare the readers against it."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

# --------------------------------------------------------------------------- MNIST (IDX)


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """An IDX file: big-endian magic (0x0000_08_<ndim>), one 32-bit size per dimension, uint8 data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    magic = (0x08 << 8 | array.ndim) if magic is None else magic
    header = magic.to_bytes(4, "big") + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    return header + array.tobytes()


def digit_arrays(n: int, seed: int, side: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """``n`` real handwritten digits (scikit-learn's scans, upsampled to ``side``) with every class present."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    images = np.empty((n, side, side), dtype=np.uint8)
    for i, c in enumerate(labels):
        pool = np.flatnonzero(bunch.target == c)
        img = Image.fromarray((bunch.images[rng.choice(pool)] * 255 / 16).astype(np.uint8))
        images[i] = np.asarray(img.resize((side, side), Image.BILINEAR))
    return images, labels.astype(np.uint8)


def write_mnist(root: Path, layout: str = "plain", n_train: int = 60, n_test: int = 30) -> dict[str, np.ndarray]:
    """MNIST IDX files under ``root`` (``layout``: "plain", "gz", or "torchvision" = gz under ``MNIST/raw``)."""
    folder = root / "MNIST" / "raw" if layout == "torchvision" else root
    folder.mkdir(parents=True, exist_ok=True)
    tr_x, tr_y = digit_arrays(n_train, 0)
    te_x, te_y = digit_arrays(n_test, 1)
    arrays = {"train-images-idx3-ubyte": tr_x, "train-labels-idx1-ubyte": tr_y,
              "t10k-images-idx3-ubyte": te_x, "t10k-labels-idx1-ubyte": te_y}
    for name, arr in arrays.items():
        data = idx_bytes(arr)
        if layout in ("gz", "torchvision"):
            with gzip.open(folder / f"{name}.gz", "wb") as fh:
                fh.write(data)
        else:
            (folder / name).write_bytes(data)
    return arrays


# --------------------------------------------------------------------------- CIFAR


def cifar_arrays(n: int, num_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images ``(n, 3072)`` uint8 and labels cycling through the classes; each image's mean encodes its label
    loosely (so a model can learn something) on top of noise."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) * 7 + seed) % num_classes
    base = (labels[:, None] * 255 // max(1, num_classes - 1)).astype(np.int64)
    data = np.clip(base + rng.integers(-40, 40, size=(n, 3072)), 0, 255).astype(np.uint8)
    return data, labels.astype(np.int64)


def write_cifar10_binary(root: Path, per_batch: int = 10) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for k, name in enumerate([f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]):
        data, labels = cifar_arrays(per_batch, 10, k)
        rec = np.concatenate([labels.astype(np.uint8)[:, None], data], axis=1)
        (folder / name).write_bytes(rec.tobytes())
        out[name] = (data, labels)
    (folder / "batches.meta.txt").write_text("\n".join(CIFAR10_NAMES) + "\n")
    return out


CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar10_python(root: Path, per_batch: int = 10) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for k, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        data, labels = cifar_arrays(per_batch, 10, k)
        batch = {b"batch_label": name.encode(), b"labels": labels.tolist(), b"data": data,
                 b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
        out[name] = (data, labels)
    meta = {b"label_names": [n.encode() for n in CIFAR10_NAMES], b"num_cases_per_batch": per_batch}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return out


def write_cifar100(root: Path, form: str = "binary", n_train: int = 40, n_test: int = 20) -> dict:
    out = {}
    if form == "binary":
        folder = root / "cifar-100-binary"
        folder.mkdir(parents=True, exist_ok=True)
        for k, (name, n) in enumerate((("train.bin", n_train), ("test.bin", n_test))):
            data, fine = cifar_arrays(n, 100, k)
            coarse = (fine // 5).astype(np.uint8)
            rec = np.concatenate([coarse[:, None], fine.astype(np.uint8)[:, None], data], axis=1)
            (folder / name).write_bytes(rec.tobytes())
            out[name] = (data, fine)
    else:
        folder = root / "cifar-100-python"
        folder.mkdir(parents=True, exist_ok=True)
        for k, (name, n) in enumerate((("train", n_train), ("test", n_test))):
            data, fine = cifar_arrays(n, 100, k)
            batch = {b"data": data, b"fine_labels": fine.tolist(), b"coarse_labels": (fine // 5).tolist()}
            (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
            out[name] = (data, fine)
        meta = {b"fine_label_names": [f"class{i}".encode() for i in range(100)]}
        (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    return out


class RunsCodeOnUnpickle:
    """Unpickling this object calls ``exec`` on a statement that writes ``marker``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('code ran')",))


def write_malicious_cifar10_python(root: Path, marker: Path) -> Path:
    """A CIFAR-10 python release whose first batch runs code (writes ``marker``) when unpickled naively."""
    write_cifar10_python(root, per_batch=4)
    path = root / "cifar-10-batches-py" / "data_batch_1"
    data, labels = cifar_arrays(4, 10, 0)
    path.write_bytes(pickle.dumps({b"data": data, b"labels": labels.tolist(), b"x": RunsCodeOnUnpickle(marker)},
                                  protocol=2))
    return path


# --------------------------------------------------------------------------- Waterbirds

LAND, WATER = (60, 160, 60), (40, 90, 200)


def bird_box(i: int, h: int, w: int) -> tuple[int, int, int, int]:
    """The bird's rectangle ``(top, left, bottom, right)`` in image ``i`` (moves from image to image)."""
    top = 2 + (i % 4) * (h // 10)
    left = 2 + (i % 3) * (w // 8)
    return top, left, top + h // 2, left + w // 2


def write_waterbirds(root: Path, h: int = 40, w: int = 32, segmentations: bool = True,
                     plan: dict | None = None) -> dict:
    """A Waterbirds release: ``metadata.csv`` and JPEGs in CUB class folders; the bird is a white rectangle on a land
    (green) or water (blue) background; CUB-style segmentation PNGs (255 on the bird) under ``root/segmentations``.

    ``plan`` maps split code -> list of (y, place) rows; default: train 6/2/1/5 per group, val and test 2 per group.
    """
    data = root / "waterbird_complete95_forest2water2"
    seg = root / "segmentations"
    plan = plan or {0: [(0, 0)] * 6 + [(0, 1)] * 2 + [(1, 0)] * 1 + [(1, 1)] * 5,
                    1: [(0, 0), (0, 1), (1, 0), (1, 1)] * 2,
                    2: [(0, 0), (0, 1), (1, 0), (1, 1)] * 2}
    rows = []
    img_id = 1
    for split, pairs in plan.items():
        for y, place in pairs:
            folder = "001.Black_footed_Albatross" if y == 1 else "010.Red_winged_Blackbird"
            name = f"bird_{img_id:04d}.jpg"
            rel = f"{folder}/{name}"
            img = np.zeros((h, w, 3), dtype=np.uint8)
            img[:] = WATER if place == 1 else LAND
            t, lft, b, r = bird_box(img_id, h, w)
            img[t:b, lft:r] = 255
            (data / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(data / rel, quality=98, subsampling=0)
            if segmentations:
                mask = np.zeros((h, w), dtype=np.uint8)
                mask[t:b, lft:r] = 255
                (seg / folder).mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask).save(seg / folder / name.replace(".jpg", ".png"))
            rows.append((img_id, rel, y, split, place, f"place/{place}/{img_id}.jpg"))
            img_id += 1
    lines = ["img_id,img_filename,y,split,place,place_filename"] + [",".join(map(str, r)) for r in rows]
    (data / "metadata.csv").write_text("\n".join(lines) + "\n")
    return {"folder": data, "segmentations": seg, "rows": rows}


# --------------------------------------------------------------------------- CelebA

CELEBA_ATTRS = ["5_o_Clock_Shadow", "Bald", "Blond_Hair", "Male", "Smiling"]


def waterbirds_test_split(root: Path, crop: int = 24, resize: int = 28):
    """``(split, positions)``: the test split of a Waterbirds release written under ``root`` (40 x 32 images with bird
    segmentations), read unnormalised at ``crop`` after resizing to ``resize``, and all of its positions."""
    import torch

    from probe.data.waterbirds import waterbirds

    written = write_waterbirds(root, h=40, w=32)
    ds = waterbirds(image_size=crop, resize=resize, normalize=False, segmentation_root=str(written["segmentations"]),
                    data_root=str(root))
    split = ds.split("test")
    return split, torch.arange(len(split))


def celeba_table(n: int = 24) -> list[tuple[str, list[int], int]]:
    """Rows ``(file, attribute values in {-1, 1}, partition)``: every (Blond_Hair, Male) group in every split."""
    rows = []
    for i in range(n):
        blond, male = (i % 4) // 2, i % 2
        values = [1 if (i * 7 + k) % 3 == 0 else -1 for k in range(len(CELEBA_ATTRS))]
        values[2] = 1 if blond else -1
        values[3] = 1 if male else -1
        rows.append((f"{i + 1:06d}.jpg", values, 0 if i < n // 2 else (1 if i < 3 * n // 4 else 2)))
    return rows


def write_celeba(root: Path, form: str = "txt", n: int = 24, h: int = 22, w: int = 18) -> list:
    """CelebA in ``form`` "txt" (list_attr_celeba.txt, list_eval_partition.txt) or "csv"; JPEGs in img_align_celeba/."""
    rows = celeba_table(n)
    images = root / "img_align_celeba"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, values, _ in rows:
        img = rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)
        img[: h // 3] = (230, 210, 90) if values[2] == 1 else (60, 40, 20)
        Image.fromarray(img).save(images / name, quality=90)
    if form == "txt":
        lines = [str(len(rows)), " ".join(CELEBA_ATTRS)]
        lines += [f"{name}  " + " ".join(f"{v:2d}" for v in values) for name, values, _ in rows]
        (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
        (root / "list_eval_partition.txt").write_text("\n".join(f"{name} {p}" for name, _, p in rows) + "\n")
    else:
        lines = ["image_id," + ",".join(CELEBA_ATTRS)] + [f"{name}," + ",".join(map(str, values))
                                                          for name, values, _ in rows]
        (root / "list_attr_celeba.csv").write_text("\n".join(lines) + "\n")
        (root / "list_eval_partition.csv").write_text(
            "image_id,partition\n" + "\n".join(f"{name},{p}" for name, _, p in rows) + "\n")
    return rows


# --------------------------------------------------------------------------- ImageNet-style class folders


def write_class_folders(root: Path, classes: tuple[str, ...] = ("n01", "n02", "n03"), per_class: int = 6,
                        per_class_val: int = 2, side: int = 20) -> dict:
    rng = np.random.default_rng(0)
    counts = {}
    for split, n in (("train", per_class), ("val", per_class_val)):
        for k, c in enumerate(classes):
            folder = root / split / c
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = np.clip(k * 80 + rng.integers(0, 60, size=(side, side + 4, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(folder / f"{c}_{i}.JPEG", quality=90)
            counts[(split, c)] = n
    return counts


# --------------------------------------------------------------------------- refusals


def refused_training(data_root: Path, out: Path, capsys) -> str:
    """``probe train`` on a Waterbirds folder that must be refused: exit 2, one ``probe: error:`` line, and no run
    directory at ``out``. Returns that line."""
    from probe.cli import main

    code = main(["train", "--dataset", "waterbirds", "--data-root", str(data_root), "--image-size", "8", "--lr", "0.1",
                 "--epochs", "1", "--out", str(out)])
    stderr = capsys.readouterr().err
    assert code == 2
    assert stderr.count("\n") == 1 and stderr.startswith("probe: error: ")
    assert not out.exists()
    return stderr
