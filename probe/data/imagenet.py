"""ImageNet-style class folders: ``train/<class>/*.JPEG`` and ``val/<class>/*.JPEG``.

Class index = position of the folder name in the sorted list of ``train/`` folders; ``val/`` is the evaluation split
(named ``test`` here) and may hold a subset of the classes. One attribute (``A = 1``, ``a = 0``, every sample
bias-aligned). Images are decoded on demand: resize the shorter side to ``resize`` (default ``image_size * 256 / 224``),
centre-crop ``image_size`` (default 224), normalise with ImageNet statistics. No masks, no counterfactuals.
"""

from __future__ import annotations

from pathlib import Path

import torch

from probe.data.base import SpuriousDataset
from probe.data.cifar import STANDARD_BC_RULE, STANDARD_MASK_NOTE, holdout, single_attribute_split
from probe.data.images import IMAGE_SUFFIXES, ImageFiles, crop_geometry
from probe.data.paths import confined_paths
from probe.data.roots import candidate_dirs, missing_data, resolve_data_root
from probe.errors import DataFormatError

IMAGENET_WHERE = "put class folders at DIR/train/<class>/*.JPEG and DIR/val/<class>/*.JPEG"
_DIRS = ("imagenet", "ImageNet", "ILSVRC2012", "imagenet/ILSVRC/Data/CLS-LOC", "ILSVRC/Data/CLS-LOC")


def find_imagenet(root: Path) -> Path | None:
    for folder in candidate_dirs(root, _DIRS):
        if (folder / "train").is_dir() and (folder / "val").is_dir():
            return folder
    return None


def scan_class_folders(folder: Path, classes: list[str] | None = None) -> tuple[list[str], list[Path], list[int]]:
    """``(class names, image paths, labels)`` of a class-folder tree; ``classes`` fixes the class order."""
    subdirs = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not subdirs:
        loose = [p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
        hint = f" but {len(loose)} loose images: arrange them in class folders" if loose else ""
        raise DataFormatError(f"{folder}: no class folders{hint}")
    names = subdirs if classes is None else classes
    lookup = {c: k for k, c in enumerate(names)}
    paths: list[Path] = []
    labels: list[int] = []
    for c in subdirs:
        if c not in lookup:
            raise DataFormatError(f"{folder / c}: class folder not among the {len(names)} training classes")
        files = sorted(p.name for p in (folder / c).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        paths.extend(confined_paths(folder, [f"{c}/{f}" for f in files], source=folder, what="image file"))
        labels.extend([lookup[c]] * len(files))
    if not paths:
        raise DataFormatError(f"{folder}: class folders hold no images ({', '.join(IMAGE_SUFFIXES)})")
    return names, paths, labels


def imagenet(
    seed: int = 0,
    image_size: int = 224,
    resize: int | None = None,
    normalize: bool = True,
    augment: bool = False,
    val_fraction: float = 0.0,
    data_root: str | None = None,
) -> SpuriousDataset:
    """Build an ImageNet-style class-folder dataset.

    Args:
        seed: seed of the validation hold-out.
        image_size: side of the centre crop (default 224).
        resize: shorter side before cropping (default ``round(image_size * 256 / 224)``).
        normalize: normalise with ImageNet channel statistics (default True).
        augment: random resized crop and horizontal flip on the training split.
        val_fraction: share of ``train/`` held out as a validation split (0: none); ``val/`` is the test split.
        data_root: folder holding ``train/`` and ``val/`` (or ``$PROBE_DATA``).
    """
    root = resolve_data_root(data_root)
    folder = find_imagenet(root) if root is not None else None
    if folder is None:
        raise missing_data("imagenet", IMAGENET_WHERE, root)
    image_size, resize = crop_geometry("imagenet", image_size, resize)
    classes, train_paths, train_labels = scan_class_folders(folder / "train")
    _, test_paths, test_labels = scan_class_folders(folder / "val", classes)
    train_y = torch.tensor(train_labels, dtype=torch.long)
    keep, val = holdout(len(train_y), val_fraction, torch.Generator().manual_seed(seed))

    def files(positions: torch.Tensor, paths: list[Path], aug: bool) -> ImageFiles:
        return ImageFiles([paths[p] for p in positions.tolist()], image_size, resize, normalize, augment=aug)

    splits = {"train": single_attribute_split("train", files(keep, train_paths, augment), train_y[keep], keep)}
    if len(val):
        splits["val"] = single_attribute_split("val", files(val, train_paths, False), train_y[val], val)
    test_pos = torch.arange(len(test_paths))
    splits["test"] = single_attribute_split("test", files(test_pos, test_paths, False),
                                            torch.tensor(test_labels, dtype=torch.long), test_pos + 1_000_000)
    return SpuriousDataset(
        name="imagenet",
        num_classes=len(classes),
        num_attrs=1,
        input_shape=(3, image_size, image_size),
        splits=splits,
        bc_rule=STANDARD_BC_RULE,
        source=f"class folders in {folder} ({len(classes)} classes)",
        options=dict(seed=seed, image_size=image_size, resize=resize, normalize=normalize, augment=augment,
                     val_fraction=val_fraction, data_root=str(root)),
        mask_note=STANDARD_MASK_NOTE,
    )
