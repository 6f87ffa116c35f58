"""CelebA from its attribute and partition lists, in the original ``.txt`` or the common ``.csv`` form.

Files: ``list_attr_celeba.txt`` (first line the image count, second line the 40 attribute names, then
``<file> <40 values of -1 or 1>``) or ``list_attr_celeba.csv`` (``image_id`` plus the 40 columns);
``list_eval_partition.txt`` (``<file> <0|1|2>``) or ``.csv`` (``image_id,partition``); images in
``img_align_celeba/``. Attribute values -1/1 become 0/1. The core label ``y`` is the ``target`` column (default
Blond_Hair), the spurious attribute ``a`` the ``attribute`` column (default Male); ``group = 2 * y + a``; the official
partition gives train (0), val (1) and test (2). BA/BC rule: majority, bias-aligned iff ``a`` is the value of the
attribute most common for class ``y`` in the training split.

Images are decoded on demand: the 178x218 aligned faces are resized so the shorter side is ``resize`` (default
``image_size``) and centre-cropped to ``image_size`` (default 224), then normalised with ImageNet statistics. No masks:
hair colour and sex are not separable image regions. No counterfactual re-rendering.
"""

from __future__ import annotations

from pathlib import Path

import torch

from probe.data.base import BC_RULE_MAJORITY, Split, SpuriousDataset, majority_bc
from probe.data.images import ImageFiles, check_files_exist, crop_geometry
from probe.data.paths import confined_paths
from probe.data.roots import candidate_dirs, missing_data, resolve_data_root
from probe.data.tables import parse_int, read_csv_rows
from probe.errors import DataFormatError, ProbeInputError

CELEBA_WHERE = (
    "put list_attr_celeba.txt (or .csv), list_eval_partition.txt (or .csv) and the img_align_celeba/ folder of "
    "JPEGs in DIR or DIR/celeba/"
)
_DIRS = ("celeba", "CelebA", "celeba-dataset", "Anno", "Eval", "celeba/Anno", "celeba/Eval", "CelebA/Anno",
         "CelebA/Eval")
SPLIT_CODES = {0: "train", 1: "val", 2: "test"}


def _find_file(root: Path, stem: str) -> Path | None:
    for folder in candidate_dirs(root, _DIRS):
        for suffix in (".txt", ".csv"):
            if (folder / f"{stem}{suffix}").is_file():
                return folder / f"{stem}{suffix}"
    return None


def _find_images(root: Path, near: Path) -> Path | None:
    for base in dict.fromkeys([near.parent, near.parent.parent, *candidate_dirs(root, _DIRS)]):
        for sub in ("img_align_celeba/img_align_celeba", "img_align_celeba"):
            if (base / sub).is_dir():
                return base / sub
    return None


def read_attributes(path: Path) -> tuple[list[str], list[str], list[list[int]], list[int]]:
    """``(attribute names, image ids, values in {0, 1} per row, line numbers)`` from the txt or csv form."""
    ids, values, lines = [], [], []
    if path.suffix == ".csv":
        header, rows = read_csv_rows(path, ("image_id",))
        names = [h for h in header if h != "image_id"]
        for line, row in rows:
            ids.append(row["image_id"])
            values.append([_binary(row[n], path, line, n) for n in names])
            lines.append(line)
        return names, ids, values, lines
    try:
        text = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataFormatError(f"{path}: cannot read ({err})") from None
    if len(text) < 2:
        raise DataFormatError(f"{path}: expected a count line and an attribute-name line")
    names = text[1].split()
    for line, raw in enumerate(text[2:], start=3):
        fields = raw.split()
        if not fields:
            continue
        if len(fields) != len(names) + 1:
            raise DataFormatError(f"{path}, line {line}: {len(fields) - 1} values for {len(names)} attributes")
        ids.append(fields[0])
        values.append([_binary(v, path, line, n) for v, n in zip(fields[1:], names)])
        lines.append(line)
    return names, ids, values, lines


def _binary(value: str, path: Path, line: int, column: str) -> int:
    v = parse_int(value, path, line, column, (-1, 0, 1), "attribute value")
    return 1 if v == 1 else 0


def read_partition(path: Path) -> dict[str, tuple[int, int]]:
    """``image id -> (split code, line number)`` from the txt or csv form."""
    out: dict[str, tuple[int, int]] = {}
    if path.suffix == ".csv":
        _, rows = read_csv_rows(path, ("image_id", "partition"))
        for line, row in rows:
            out[row["image_id"]] = (parse_int(row["partition"], path, line, "partition", (0, 1, 2), "split code"),
                                    line)
        return out
    try:
        text = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataFormatError(f"{path}: cannot read ({err})") from None
    for line, raw in enumerate(text, start=1):
        fields = raw.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise DataFormatError(f"{path}, line {line}: expected '<file> <partition>', got {raw.strip()!r}")
        out[fields[0]] = (parse_int(fields[1], path, line, "partition", (0, 1, 2), "split code"), line)
    return out


def celeba(
    target: str = "Blond_Hair",
    attribute: str = "Male",
    image_size: int = 224,
    resize: int | None = None,
    normalize: bool = True,
    augment: bool = False,
    data_root: str | None = None,
) -> SpuriousDataset:
    """Build CelebA with ``y`` = ``target`` and ``a`` = ``attribute``.

    Args:
        target: attribute column used as the core label (default Blond_Hair).
        attribute: attribute column used as the spurious attribute (default Male).
        image_size: side of the centre crop (default 224).
        resize: shorter side before cropping (default ``image_size``: the crop spans the face's width).
        normalize: normalise with ImageNet channel statistics (default True).
        augment: random resized crop and horizontal flip on the training split.
        data_root: folder holding the release (or ``$PROBE_DATA``).
    """
    if target == attribute:
        raise ProbeInputError(f"celeba: target and attribute must differ, both are {target!r}")
    root = resolve_data_root(data_root)
    attr_path = _find_file(root, "list_attr_celeba") if root is not None else None
    part_path = _find_file(root, "list_eval_partition") if root is not None else None
    if attr_path is None or part_path is None:
        raise missing_data("celeba", CELEBA_WHERE, root)
    images = _find_images(root, attr_path)
    if images is None:
        raise missing_data("celeba", CELEBA_WHERE + " (img_align_celeba/ is missing)", root)
    image_size, resize = crop_geometry("celeba", image_size, resize, resize_default=lambda side: side)
    names, ids, values, lines = read_attributes(attr_path)
    for column in (target, attribute):
        if column not in names:
            raise DataFormatError(f"{attr_path}: missing column {column!r} (it has {', '.join(names)})")
    ti, ai = names.index(target), names.index(attribute)
    partition = read_partition(part_path)
    codes = []
    for image_id, line in zip(ids, lines):
        if image_id not in partition:
            raise DataFormatError(f"{part_path}: no partition for {image_id!r} (listed at line {line} of "
                                  f"{attr_path.name})")
        codes.append(partition[image_id][0])
    paths = confined_paths(images, ids, source=attr_path, rows=lines, what="image file")
    check_files_exist(paths, attr_path, lines)
    y_all = torch.tensor([v[ti] for v in values], dtype=torch.long)
    a_all = torch.tensor([v[ai] for v in values], dtype=torch.long)
    code = torch.tensor(codes, dtype=torch.long)
    index = torch.tensor([int(Path(i).stem) if Path(i).stem.isdigit() else k for k, i in enumerate(ids)])
    train_sel = code == 0
    if not bool(train_sel.any()):
        raise ProbeInputError(f"celeba: {part_path} puts no image in the training partition (0)")
    splits: dict[str, Split] = {}
    for k, name in SPLIT_CODES.items():
        pos = torch.nonzero(code == k).flatten()
        if len(pos) == 0:
            continue
        y, a = y_all[pos], a_all[pos]
        splits[name] = Split(
            name=name,
            x=ImageFiles([paths[p] for p in pos.tolist()], image_size, resize, normalize,
                         augment=augment and name == "train"),
            y=y,
            a=a,
            is_bc=majority_bc(y, a, y_all[train_sel], a_all[train_sel], 2, 2),
            index=index[pos],
            num_attrs=2,
        )
    return SpuriousDataset(
        name="celeba",
        num_classes=2,
        num_attrs=2,
        input_shape=(3, image_size, image_size),
        splits=splits,
        bc_rule=BC_RULE_MAJORITY,
        source=f"CelebA {attr_path.name} + {part_path.name} in {attr_path.parent}, images in {images}; "
               f"y = {target}, a = {attribute}",
        options=dict(target=target, attribute=attribute, image_size=image_size, resize=resize, normalize=normalize,
                     augment=augment, data_root=str(root)),
        mask_note="none: hair colour and sex are not separable image regions",
    )
