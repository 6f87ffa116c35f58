"""benchmarks/make_waterbirds.py writes a Waterbirds release that probe reads with the planned counts."""

from __future__ import annotations

import csv
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from probe.cli import main
from probe.data import build_dataset

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "make_waterbirds.py"
#: The official release's counts per split and group (landbird-land, landbird-water, waterbird-land, waterbird-water)
#: written out here, independent of the package's table.
OFFICIAL = {"train": [3498, 184, 56, 1057], "val": [467, 466, 133, 133], "test": [2255, 2255, 642, 642]}


def load_generator():
    spec = importlib.util.spec_from_file_location("make_waterbirds", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_full_size_plan_is_the_official_release():
    gen = load_generator()
    assert gen.group_counts(1.0) == OFFICIAL
    rows = gen.plan_rows(1.0, seed=0)
    assert len(rows) == 4795 + 1199 + 5794
    assert [r[0] for r in rows] == list(range(1, len(rows) + 1))
    assert len({r[1] for r in rows}) == len(rows)  # no file name twice


def test_tiny_release_is_read_with_its_counts_and_masks(tmp_path, capsys):
    fraction = 0.002
    expected = {s: [max(1, round(c * fraction)) for c in counts] for s, counts in OFFICIAL.items()}
    out = tmp_path / "wb"
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--fraction", str(fraction),
                           "--min-side", "40", "--max-side", "72", "--workers", "2"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    n = sum(map(sum, expected.values()))
    assert done.stdout.startswith(f"wrote {n} images") and " MB " in done.stdout and " s\n" in done.stdout

    folder = out / "waterbird_complete95_forest2water2"
    with open(folder / "metadata.csv", newline="") as fh:
        table = list(csv.reader(fh))
    assert table[0] == ["img_id", "img_filename", "y", "split", "place", "place_filename"]
    gen = load_generator()
    for k, (img_id, filename, y, split, place, place_file) in enumerate(table[1:], start=1):
        folder_name = filename.split("/")[0]
        assert int(img_id) == k and split in ("0", "1", "2") and filename.endswith(".jpg")
        assert (folder_name in gen.WATERBIRD_CLASSES) == (y == "1") and folder_name[:3].isdigit()
        with Image.open(folder / filename) as im:
            assert im.format == "JPEG" and all(40 <= side <= 72 for side in im.size)
        mask = np.asarray(Image.open((out / "segmentations" / filename).with_suffix(".png")))
        assert mask.shape == im.size[::-1] and set(np.unique(mask)) == {0, 255}
        assert place_file.startswith("/") and (place_file.split("/")[2] in ("ocean", "lake")) == (place == "1")

    ds = build_dataset("waterbirds", data_root=str(out), image_size=32, segmentation_root=str(out),
                       transform="reference")
    for name, counts in expected.items():
        split = ds.splits[name]
        assert torch.bincount(2 * split.y + split.a, minlength=4).tolist() == counts
        x = split.inputs(torch.arange(2))
        assert x.shape == (2, 3, 32, 32) and torch.isfinite(x).all()
        core = split.masks(torch.arange(len(split)), "core").float().mean(dim=(1, 2))
        assert bool(((core > 0.02) & (core < 0.8)).all())  # a bird, not the whole frame, in every image

    code = main(["data", "check", "waterbirds", "--data-root", str(out), "--image-size", "32",
                 "--data-option", f"segmentation_root={out}", "--data-option", "transform=reference"])
    text = capsys.readouterr().out
    assert code == 1  # a fraction of the release: the official counts differ
    assert "MISMATCH" in text and f"train: n={sum(expected['train'])} " in text
    assert "core mask covers" in text


def test_refuses_a_folder_that_holds_a_release(tmp_path):
    gen = load_generator()
    gen.make_waterbirds(tmp_path, fraction=0.0005, workers=1, min_side=16, max_side=20)
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "already holds a release" in done.stderr
