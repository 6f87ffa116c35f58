"""Write a synthetic Waterbirds release at realistic size: JPEGs of random sizes in CUB-style class folders,
``metadata.csv`` as the official release, and CUB-style bird masks.

Layout under ``--out``::

    waterbird_complete95_forest2water2/metadata.csv        img_id,img_filename,y,split,place,place_filename
    waterbird_complete95_forest2water2/<NNN.Class>/<Class>_<img_id>_<k>.jpg
    segmentations/<NNN.Class>/<Class>_<img_id>_<k>.png     255 on the bird, 0 elsewhere (CUB's layout)

Counts per split and group (``group = 2 * y + place``) are the official release's (train 3498 / 184 / 56 / 1057, val
467 / 466 / 133 / 133, test 2255 / 2255 / 642 / 642) times ``--fraction``, rounded, at least 1 per group; at
``--fraction 1`` they are exactly the official 4795 + 1199 + 5794 images. Each image is a textured background (land:
green-brown patches; water: blue with horizontal waves) of ``--min-side`` to ``--max-side`` pixels per side with a
bird-like blob (body, head, beak, tail) on it, saved as a JPEG at ``--quality``, so that files and decoding cost
are close to the real composites'. Deterministic for a given ``--seed``::

    python benchmarks/make_waterbirds.py --out /tmp/wb [--fraction 0.25] [--workers 2] [--seed 0]

Then ``probe data check waterbirds --data-root /tmp/wb --data-option segmentation_root=/tmp/wb`` reads it (exit 1
unless ``--fraction 1``: the counts differ from the official ones). Not part of the package.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

DATA_DIR = "waterbird_complete95_forest2water2"
SEG_DIR = "segmentations"
COLUMNS = ("img_id", "img_filename", "y", "split", "place", "place_filename")

#: CUB class folders used for the birds (a subset of CUB's 200, with their CUB numbers): waterbirds (y = 1) and
#: landbirds (y = 0).
WATERBIRD_CLASSES = ("001.Black_footed_Albatross", "002.Laysan_Albatross", "005.Crested_Auklet",
                     "023.Brandt_Cormorant", "045.Northern_Fulmar", "059.California_Gull", "106.Horned_Puffin",
                     "144.Common_Tern")
LANDBIRD_CLASSES = ("009.Brewer_Blackbird", "010.Red_winged_Blackbird", "013.Bobolink", "014.Indigo_Bunting",
                    "017.Cardinal", "019.Gray_Catbird", "029.American_Crow", "036.Northern_Flicker",
                    "047.American_Goldfinch", "094.White_breasted_Nuthatch", "118.House_Sparrow",
                    "200.Common_Yellowthroat")
#: Places365 categories of the backgrounds (the release's ``place_filename`` column): land (place 0), water (1).
LAND_PLACES = ("/b/bamboo_forest", "/f/forest/broadleaf")
WATER_PLACES = ("/o/ocean", "/l/lake/natural")
#: Official order of the splits (code 0 train, 1 val, 2 test).
SPLITS = ("train", "val", "test")
#: Largest image side (the size of the grain tile).
MAX_SIDE = 1024


def official_group_counts() -> dict[str, tuple[int, int, int, int]]:
    """The official counts per split and group (imported here, so that worker processes never import torch)."""
    from probe.data.waterbirds import OFFICIAL_GROUP_COUNTS

    return {name: tuple(OFFICIAL_GROUP_COUNTS[name]) for name in SPLITS}


def group_counts(fraction: float) -> dict[str, list[int]]:
    """Images per split and group: ``max(1, round(official * fraction))`` (exactly the official counts at 1)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    return {name: [max(1, int(round(c * fraction))) for c in counts]
            for name, counts in official_group_counts().items()}


def plan_rows(fraction: float, seed: int) -> list[tuple]:
    """Metadata rows ``(img_id, img_filename, y, split, place, place_filename)``.

    The (split, group) slots are shuffled, then each gets a class folder of its ``y`` and rows are sorted by class
    folder, so that ``img_id`` runs through the folders as in the release (splits interleaved)."""
    rng = np.random.default_rng(seed)
    slots = [(code, g) for code, name in enumerate(SPLITS) for g, c in enumerate(group_counts(fraction)[name])
             for _ in range(c)]
    order = rng.permutation(len(slots))
    entries = []
    for i in order:
        code, g = slots[i]
        y, place = divmod(g, 2)
        pool = WATERBIRD_CLASSES if y == 1 else LANDBIRD_CLASSES
        entries.append((pool[rng.integers(len(pool))], code, y, place))
    entries.sort(key=lambda e: e[0])  # stable: the shuffled order within a folder is kept
    rows = []
    for img_id, (folder, code, y, place) in enumerate(entries, start=1):
        species = folder.split(".", 1)[1]
        name = f"{species}_{img_id:04d}_{int(rng.integers(1, 800000))}.jpg"
        places = WATER_PLACES if place == 1 else LAND_PLACES
        place_file = f"{places[rng.integers(len(places))]}/{int(rng.integers(1, 20000)):08d}.jpg"
        rows.append((img_id, f"{folder}/{name}", y, code, place, place_file))
    return rows


_GRAIN: np.ndarray | None = None


def grain(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """An ``(h, w, 3)`` int16 window of fine Gaussian grain (sd 8) at a random offset of a tile drawn once per process
    (drawing fresh normal noise for every image would cost more than the rest of the image)."""
    global _GRAIN
    if _GRAIN is None:
        _GRAIN = np.clip(np.random.default_rng(12345).normal(0, 8, (MAX_SIDE, MAX_SIDE, 3)), -40, 40).astype(np.int16)
    top, left = int(rng.integers(0, MAX_SIDE - h + 1)), int(rng.integers(0, MAX_SIDE - w + 1))
    return _GRAIN[top : top + h, left : left + w]


def background(rng: np.random.Generator, h: int, w: int, water: bool) -> np.ndarray:
    """A textured ``(h, w, 3)`` uint8 background: coarse colour patches, mid-scale detail (smooth noise upsampled
    bicubically), horizontal waves on water, and pixel grain."""
    base = (np.array([40, 90, 170]) if water else np.array([70, 120, 50])) + rng.integers(-25, 25, 3)
    sh, sw = max(2, h // 4), max(2, w // 4)  # the texture is drawn at a quarter of the size, then upsampled once
    low = np.repeat(rng.integers(-12, 13, (sh, sw, 1), dtype=np.int16), 3, axis=2)
    for cells, amp, channels in ((6, 2, 1), (6, 1, 3), (24, 2, 1)):  # light and colour patches of ~70 px, ~17 px
        small = rng.integers(0, 256, (max(2, h * cells // 400), max(2, w * cells // 400), channels), dtype=np.uint8)
        up = Image.fromarray(small.squeeze(2) if channels == 1 else small).resize((sw, sh), Image.BICUBIC)
        up = np.asarray(up, dtype=np.int16).reshape(sh, sw, channels)
        low += ((up - 128) * amp) >> 3
    texture = Image.fromarray(np.clip(low + 128, 0, 255).astype(np.uint8)).resize((w, h), Image.BICUBIC)
    img = (np.asarray(texture, dtype=np.int16) - 128) * 2 + base.astype(np.int16)
    if water:
        rows = np.arange(h, dtype=np.float32)[:, None]
        cols = np.arange(w, dtype=np.float32)[None, :]
        phase = rng.uniform(0, 2 * np.pi)
        waves = np.sin(rows / rng.uniform(3, 8) + 0.6 * np.sin(cols / rng.uniform(20, 60)) + phase)
        img += (waves * 24).astype(np.int16)[:, :, None]
    img += grain(rng, h, w)
    return np.clip(img, 0, 255).astype(np.uint8)


def bird_mask(rng: np.random.Generator, h: int, w: int) -> Image.Image:
    """A bird-like silhouette ("L" image, 255 on the bird): an elliptic body, a round head, a beak and a tail."""
    mask = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(mask)
    side = min(h, w)
    bw, bh = side * rng.uniform(0.3, 0.55), side * rng.uniform(0.18, 0.3)
    cx, cy = w * rng.uniform(0.35, 0.65), h * rng.uniform(0.4, 0.65)
    facing = 1 if rng.random() < 0.5 else -1
    draw.ellipse([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], fill=255)
    r = bh * rng.uniform(0.35, 0.5)
    hx, hy = cx + facing * bw * 0.45, cy - bh * 0.55
    draw.ellipse([hx - r, hy - r, hx + r, hy + r], fill=255)
    tip = hx + facing * r * rng.uniform(1.6, 2.4)
    draw.polygon([(hx + facing * r * 0.7, hy - r * 0.3), (tip, hy + r * 0.1), (hx + facing * r * 0.7, hy + r * 0.4)],
                 fill=255)
    tx = cx - facing * bw / 2
    draw.polygon([(tx + facing * bw * 0.1, cy - bh * 0.2), (tx - facing * bw * 0.3, cy - bh * 0.5),
                  (tx - facing * bw * 0.3, cy + bh * 0.1)], fill=255)
    return mask.filter(ImageFilter.SMOOTH)


def write_image(task: tuple) -> int:
    """Write one image and its mask; returns the bytes written. ``task``: (seed, img_id, relative name, place, y,
    data folder, segmentation folder, min side, max side, quality)."""
    seed, img_id, rel, place, y, data, seg, lo, hi, quality = task
    rng = np.random.default_rng([seed, img_id])
    h, w = (int(v) for v in rng.integers(lo, hi + 1, 2))
    img = background(rng, h, w, water=place == 1)
    mask = bird_mask(rng, h, w)
    left, top, right, bottom = mask.getbbox() or (0, 0, 1, 1)
    colour = np.array([235, 235, 225]) if y == 1 else rng.integers(20, 220, 3)
    bird = np.clip(colour + 2 * grain(rng, bottom - top, right - left), 0, 255).astype(np.uint8)
    out = Image.fromarray(img)
    out.paste(Image.fromarray(bird), (left, top), mask.crop((left, top, right, bottom)))
    img_path = Path(data) / rel
    mask_path = (Path(seg) / rel).with_suffix(".png")
    out.save(img_path, quality=quality)
    mask.point(lambda v: 255 if v >= 128 else 0).save(mask_path)
    return img_path.stat().st_size + mask_path.stat().st_size


def make_waterbirds(out: str | Path, fraction: float = 0.25, seed: int = 0, workers: int | None = None,
                    min_side: int = 256, max_side: int = 500, quality: int = 75) -> dict:
    """Write the release under ``out``; returns ``{"folder", "segmentations", "rows", "bytes", "seconds"}``."""
    if not 1 <= min_side <= max_side <= MAX_SIDE:
        raise ValueError(f"need 1 <= min_side <= max_side <= {MAX_SIDE}, got {min_side} and {max_side}")
    start = time.perf_counter()
    out = Path(out)
    data, seg = out / DATA_DIR, out / SEG_DIR
    rows = plan_rows(fraction, seed)
    for folder in sorted({r[1].split("/")[0] for r in rows}):
        (data / folder).mkdir(parents=True, exist_ok=True)
        (seg / folder).mkdir(parents=True, exist_ok=True)
    tasks = [(seed, r[0], r[1], r[4], r[2], str(data), str(seg), min_side, max_side, quality) for r in rows]
    workers = max(1, os.cpu_count() or 1) if workers is None else max(1, workers)
    if workers == 1:
        sizes = [write_image(t) for t in tasks]
    else:
        with get_context("spawn").Pool(workers) as pool:  # spawn: workers import numpy and Pillow only
            sizes = pool.map(write_image, tasks, chunksize=32)
    lines = [",".join(COLUMNS)] + [",".join(map(str, r)) for r in rows]
    meta = data / "metadata.csv"
    meta.write_text("\n".join(lines) + "\n")
    total = sum(sizes) + meta.stat().st_size
    return {"folder": data, "segmentations": seg, "rows": rows, "bytes": total,
            "seconds": time.perf_counter() - start}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="folder to write (gets waterbird_complete95_forest2water2/ and "
                                                "segmentations/)")
    p.add_argument("--fraction", type=float, default=0.25,
                   help="fraction of the official counts per split and group (default 0.25: 2947 images; 1: 11788)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None, help="processes writing images (default: every core)")
    p.add_argument("--min-side", type=int, default=256, help="smallest image side in pixels (default 256)")
    p.add_argument("--max-side", type=int, default=500, help="largest image side in pixels (default 500)")
    p.add_argument("--quality", type=int, default=75, help="JPEG quality (default 75)")
    args = p.parse_args(argv)
    if (Path(args.out) / DATA_DIR / "metadata.csv").exists():
        print(f"make_waterbirds: {args.out} already holds a release; choose an empty folder", file=sys.stderr)
        return 2
    try:
        made = make_waterbirds(args.out, args.fraction, args.seed, args.workers, args.min_side, args.max_side,
                               args.quality)
    except ValueError as err:
        print(f"make_waterbirds: {err}", file=sys.stderr)
        return 2
    counts = group_counts(args.fraction)
    n = len(made["rows"])
    print(f"wrote {n} images ({', '.join(f'{s} {sum(c)}' for s, c in counts.items())}) and their masks to "
          f"{args.out}: {made['bytes'] / 1e6:.1f} MB ({made['bytes'] / n / 1e3:.1f} kB per image and mask) in "
          f"{made['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
