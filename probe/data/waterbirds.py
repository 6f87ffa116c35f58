"""Waterbirds from its ``metadata.csv`` release, with optional bird masks from CUB's segmentations.

Layout (``waterbird_complete95_forest2water2/`` or ``waterbirds_v1.0/``): ``metadata.csv`` with columns
``img_id, img_filename, y, split, place, place_filename`` and the JPEGs at ``<root>/<img_filename>``.
``y``: 1 waterbird, 0 landbird (core); ``place``: 1 water, 0 land background (spurious ``a``);
``split``: 0 train, 1 val, 2 test (the official splits are kept); ``group = 2 * y + place``.
BA/BC rule: majority, bias-aligned iff ``a`` is the background most common for class ``y`` in the training split
(land for landbirds, water for waterbirds in the release).

Images are decoded on demand (a lazy map-style ``x``, streamed by ``Split.batches`` with workers). With
``transform="reference"`` (group_DRO's ``cub_dataset.py``, which DFR adapts: use it for numbers comparable with the
literature) evaluation resizes both sides to ``resize x resize`` (default ``round(image_size * 256 / 224)``, 256 for
224; the aspect ratio is not kept) then centre-crops ``image_size`` (default 224), and training augmentation is
torchvision's ``RandomResizedCrop(image_size, scale=(0.7, 1), ratio=(3/4, 4/3))`` on the original image and a random
horizontal flip; with ``transform="probe"`` (the default, so that runs recorded before the option existed rebuild
as they were trained) evaluation resizes the shorter side to ``resize`` and centre-crops, and augmentation crops random
squares. Both normalise with ImageNet statistics (``normalize``). Masks: with a CUB
segmentation folder (``segmentations/<class folder>/<name>.png``, the masks the composites were made with), the core
mask is the bird and the spurious mask the background, transformed exactly like the (un-augmented) image. Without
it there are no masks. No counterfactual: re-compositing needs the original CUB photos and Places.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import torch

from probe.data.base import BC_RULE_MAJORITY, Split, SpuriousDataset, majority_bc
from probe.data.images import ImageFiles, MaskFiles, check_files_exist, check_geometry, crop_geometry
from probe.data.paths import confined_paths
from probe.data.roots import candidate_dirs, missing_data, resolve_data_root
from probe.data.tables import parse_int, read_csv_rows
from probe.errors import DataFormatError, ProbeInputError

WATERBIRDS_WHERE = (
    "put the Waterbirds release (metadata.csv and its 200 class folders of JPEGs, e.g. "
    "waterbird_complete95_forest2water2/) at DIR or DIR/waterbird_complete95_forest2water2/"
)
_DIRS = ("waterbird_complete95_forest2water2", "waterbirds_v1.0", "waterbirds", "Waterbirds",
         "waterbirds/waterbird_complete95_forest2water2")
_COLUMNS = ("img_filename", "y", "split", "place")
SPLIT_CODES = {0: "train", 1: "val", 2: "test"}

#: Group names in ``group = 2 * y + place`` order.
GROUP_NAMES = ("landbird-land", "landbird-water", "waterbird-land", "waterbird-water")
#: Image counts per split and group of the official release (``metadata.csv`` of
#: ``waterbird_complete95_forest2water2``, Sagawa et al. 2020): train 4795, val 1199, test 5794.
OFFICIAL_GROUP_COUNTS = {
    "train": (3498, 184, 56, 1057),
    "val": (467, 466, 133, 133),
    "test": (2255, 2255, 642, 642),
}
OFFICIAL_SPLIT_COUNTS = {name: sum(c) for name, c in OFFICIAL_GROUP_COUNTS.items()}


def compare_with_official(group_counts: dict[str, list[int]]) -> tuple[list[dict], bool]:
    """Rows ``{split, group, found, official, match}`` comparing ``group_counts`` (split -> 4 counts in
    :data:`GROUP_NAMES` order; a missing split counts 0) with :data:`OFFICIAL_GROUP_COUNTS`, one row per split and
    group then one ``group="total"`` row per split; and whether every row matches."""
    rows = []
    for split, official in OFFICIAL_GROUP_COUNTS.items():
        found = [int(c) for c in group_counts.get(split, [0] * 4)]
        if len(found) != len(official):
            raise ProbeInputError(f"waterbirds: {split} needs {len(official)} group counts, got {len(found)}")
        pairs = list(zip(GROUP_NAMES, found, official)) + [("total", sum(found), sum(official))]
        rows += [{"split": split, "group": g, "found": f, "official": o, "match": f == o} for g, f, o in pairs]
    return rows, all(r["match"] for r in rows)


def find_waterbirds(root: Path) -> Path | None:
    for folder in candidate_dirs(root, _DIRS):
        if (folder / "metadata.csv").is_file():
            return folder
    return None


def find_segmentations(segmentation_root: str | Path) -> Path:
    """The folder holding CUB's per-class segmentation folders (given directly, or as ``<CUB>/segmentations``)."""
    seg = Path(segmentation_root).expanduser()
    for candidate in (seg / "segmentations", seg / "CUB_200_2011" / "segmentations", seg):
        if candidate.is_dir() and any(p.is_dir() for p in candidate.iterdir()):
            return candidate.resolve()
    raise ProbeInputError(
        f"waterbirds: segmentation_root {str(seg)!r} holds no CUB segmentation class folders "
        "(expected segmentations/<class folder>/<image name>.png)"
    )


def read_metadata(path: Path) -> dict[str, list]:
    """Columns of ``metadata.csv`` as lists: filename, y, place, split code, img_id, line number."""
    header, rows = read_csv_rows(path, _COLUMNS)
    out: dict[str, list] = {"filename": [], "y": [], "place": [], "split": [], "img_id": [], "line": []}
    for line, row in rows:
        if not row["img_filename"]:
            raise DataFormatError(f"{path}, line {line}: column 'img_filename' is empty")
        out["filename"].append(row["img_filename"])
        out["y"].append(parse_int(row["y"], path, line, "y", (0, 1), "label"))
        out["place"].append(parse_int(row["place"], path, line, "place", (0, 1), "place"))
        out["split"].append(parse_int(row["split"], path, line, "split", (0, 1, 2), "split code"))
        img_id = parse_int(row["img_id"], path, line, "img_id") if "img_id" in header else line - 2
        out["img_id"].append(img_id)
        out["line"].append(line)
    return out


def waterbirds(
    image_size: int = 224,
    resize: int | None = None,
    normalize: bool = True,
    augment: bool = False,
    segmentation_root: str | None = None,
    data_root: str | None = None,
    transform: str = "probe",
) -> SpuriousDataset:
    """Build Waterbirds from its ``metadata.csv`` release.

    Args:
        image_size: side of the centre crop (default 224).
        resize: side before cropping: of the square resize (``reference``), or the shorter side (``probe``); default
            ``round(image_size * 256 / 224)``.
        normalize: normalise with ImageNet channel statistics (default True).
        augment: random resized crop and horizontal flip on the training split (masks describe un-augmented images).
        segmentation_root: CUB's ``segmentations`` folder (or the CUB folder holding it) for bird masks.
        data_root: folder holding the release (or ``$PROBE_DATA``).
        transform: ``"probe"`` (default: shorter side, square crops) or ``"reference"`` (group_DRO's geometry);
            :mod:`probe.data.images`.
    """
    root = resolve_data_root(data_root)
    folder = find_waterbirds(root) if root is not None else None
    if folder is None:
        raise missing_data("waterbirds", WATERBIRDS_WHERE, root)
    image_size, resize = crop_geometry("waterbirds", image_size, resize)
    transform = check_geometry(transform, "waterbirds transform")
    meta_path = folder / "metadata.csv"
    meta = read_metadata(meta_path)
    rows = [f"{line}, column 'img_filename'" for line in meta["line"]]
    paths = confined_paths(folder, meta["filename"], source=meta_path, rows=rows, what="image file")
    check_files_exist(paths, meta_path, rows)
    seg = find_segmentations(segmentation_root) if segmentation_root is not None else None
    mask_paths = None
    if seg is not None:
        mask_names = [str(PurePosixPath(f).with_suffix(".png")) for f in meta["filename"]]
        mask_paths = confined_paths(seg, mask_names, source=meta_path, rows=rows, what="segmentation file")
        check_files_exist(mask_paths, meta_path, meta["line"], what="segmentation file")
    y_all = torch.tensor(meta["y"], dtype=torch.long)
    a_all = torch.tensor(meta["place"], dtype=torch.long)
    code = torch.tensor(meta["split"], dtype=torch.long)
    ids = torch.tensor(meta["img_id"], dtype=torch.long)
    train_sel = code == 0
    if not bool(train_sel.any()):
        raise ProbeInputError(f"waterbirds: {meta_path} has no training rows (split 0)")
    splits: dict[str, Split] = {}
    for k, name in SPLIT_CODES.items():
        pos = torch.nonzero(code == k).flatten().tolist()
        if not pos:
            continue
        y, a = y_all[pos], a_all[pos]
        split_paths = [paths[p] for p in pos]
        core = spur = None
        if mask_paths is not None:
            split_masks = [mask_paths[p] for p in pos]
            core = MaskFiles(split_masks, split_paths, image_size, resize, geometry=transform)
            spur = MaskFiles(split_masks, split_paths, image_size, resize, invert=True, geometry=transform)
        splits[name] = Split(
            name=name,
            x=ImageFiles(split_paths, image_size, resize, normalize, augment=augment and name == "train",
                         geometry=transform),
            y=y,
            a=a,
            is_bc=majority_bc(y, a, y_all[train_sel], a_all[train_sel], 2, 2),
            index=ids[pos],
            num_attrs=2,
            core_mask=core,
            spurious_mask=spur,
        )
    return SpuriousDataset(
        name="waterbirds",
        num_classes=2,
        num_attrs=2,
        input_shape=(3, image_size, image_size),
        splits=splits,
        bc_rule=BC_RULE_MAJORITY,
        source=f"Waterbirds metadata.csv release in {folder}" + (f"; bird masks from {seg}" if seg else ""),
        options=dict(image_size=image_size, resize=resize, normalize=normalize, augment=augment, transform=transform,
                     segmentation_root=None if seg is None else str(seg), data_root=str(root)),
        mask_note=("core: bird (CUB segmentation), spurious: background, aligned with the transformed image"
                   if seg else "none: pass segmentation_root (CUB's segmentations folder) for bird masks"),
    )
