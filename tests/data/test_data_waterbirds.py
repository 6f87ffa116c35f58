"""Waterbirds: metadata.csv, official splits, the majority BC rule, bird masks aligned with the pixels, lazy
loading with workers, malformed input."""

import dataclasses

import pytest
import torch
from probe_data_fixtures import LAND, WATER, write_waterbirds

from probe.data import build_dataset
from probe.data.images import IMAGENET_MEAN, IMAGENET_STD
from probe.errors import DataFormatError, ProbeInputError


@pytest.fixture
def release(tmp_path):
    return write_waterbirds(tmp_path)


def test_counts_groups_splits_and_bc(release, tmp_path):
    ds = build_dataset("waterbirds", data_root=str(tmp_path), image_size=16)
    rows = release["rows"]
    for code, name in ((0, "train"), (1, "val"), (2, "test")):
        s = ds.splits[name]
        mine = [r for r in rows if r[3] == code]
        assert len(s) == len(mine)
        assert s.index.tolist() == [r[0] for r in mine]
        assert s.group.tolist() == [2 * r[2] + r[4] for r in mine]
        # majority rule: land is the training majority of landbirds, water of waterbirds
        assert s.is_bc.tolist() == [r[2] != r[4] for r in mine]
        assert not s.in_memory
    assert torch.bincount(ds.train.group, minlength=4).tolist() == [6, 2, 1, 5]
    assert ds.options["data_root"] == str(tmp_path.resolve())


def test_majority_rule_follows_the_training_split(tmp_path):
    # waterbirds mostly on land in training: land becomes the BA background of both classes
    plan = {0: [(0, 0)] * 4 + [(0, 1)] + [(1, 0)] * 3 + [(1, 1)], 2: [(1, 1), (1, 0)]}
    write_waterbirds(tmp_path, plan=plan, segmentations=False)
    ds = build_dataset("waterbirds", data_root=str(tmp_path), image_size=8)
    assert ds.splits["test"].is_bc.tolist() == [True, False]
    assert "val" not in ds.splits


def test_masks_line_up_with_the_transformed_pixels(release, tmp_path):
    ds = build_dataset("waterbirds", data_root=str(tmp_path), image_size=16, normalize=False,
                       segmentation_root=str(tmp_path))
    for s in ds.splits.values():
        pos = torch.arange(len(s))
        x = s.inputs(pos)
        core, spur = s.masks(pos, "core"), s.masks(pos, "spurious")
        assert core.shape == (len(s), 16, 16) and torch.equal(spur, ~core)
        # the bird is white on a background whose darkest channel is known: after bilinear resampling the darkest
        # channel is bg + (1 - bg) * coverage, so the image alone gives each pixel's bird coverage
        bg = torch.tensor([min(LAND), min(WATER)], dtype=torch.float32)[s.a].view(-1, 1, 1) / 255
        coverage = (x.min(dim=1).values - bg) / (1 - bg)
        clear = (coverage - 0.5).abs() > 0.2  # pixels not on the bird's edge (JPEG noise can tip edge pixels)
        assert clear.float().mean() > 0.8
        assert torch.equal(core[clear], coverage[clear] > 0.5)
        shifted = torch.roll(core, 2, dims=2)  # a mask two pixels off does not line up
        assert (shifted[clear] != (coverage[clear] > 0.5)).float().mean() > 0.05
    # normalisation uses ImageNet statistics
    norm = build_dataset("waterbirds", data_root=str(tmp_path), image_size=16)
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(norm.train.x[0], (ds.train.x[0] - mean) / std)


def test_batches_with_workers_match(release, tmp_path):
    ds = build_dataset("waterbirds", data_root=str(tmp_path), image_size=16)
    s = ds.train
    order = torch.randperm(len(s), generator=torch.Generator().manual_seed(0))
    serial = list(s.batches(5, order=order, num_workers=0))
    parallel = list(s.batches(5, order=order, num_workers=2))
    assert [len(p) for p, _ in serial] == [5, 5, 4]
    for (p0, x0), (p1, x1) in zip(serial, parallel):
        assert torch.equal(p0, p1) and torch.equal(x0, x1)
    assert torch.equal(torch.cat([x for _, x in serial]), s.inputs(order))


def test_batches_of_a_partial_order(release, tmp_path):
    """An order shorter than the split (the rest of a pass on resume) gives only its own batches."""
    ds = build_dataset("waterbirds", data_root=str(tmp_path), image_size=16)
    s = ds.train
    order = torch.arange(len(s))[8:]
    for workers in (0, 2):
        batches = list(s.batches(4, order=order, num_workers=workers))
        assert [p.tolist() for p, _ in batches] == [[8, 9, 10, 11], [12, 13]]
        assert torch.equal(torch.cat([x for _, x in batches]), s.inputs(order))
    in_memory = dataclasses.replace(s, x=s.inputs(torch.arange(len(s))))
    assert [p.tolist() for p, _ in in_memory.batches(4, order=order)] == [[8, 9, 10, 11], [12, 13]]


def test_augment_changes_only_training_reads(release, tmp_path):
    ds = build_dataset("waterbirds", data_root=str(tmp_path), image_size=16, augment=True)
    torch.manual_seed(0)
    draws = torch.stack([ds.train.x[0] for _ in range(6)])
    assert not all(torch.equal(draws[0], d) for d in draws[1:])
    assert torch.equal(ds.splits["test"].x[0], ds.splits["test"].x[0])


def _rewrite(path, old, new):
    path.write_text(path.read_text().replace(old, new, 1))


def test_missing_column(release):
    meta = release["folder"] / "metadata.csv"
    _rewrite(meta, "place,place_filename", "background,place_filename")
    with pytest.raises(DataFormatError, match=r"metadata.csv: missing column 'place'"):
        build_dataset("waterbirds", data_root=str(release["folder"]), image_size=8)


def test_unknown_split_code(release):
    meta = release["folder"] / "metadata.csv"
    lines = meta.read_text().splitlines()
    fields = lines[3].split(",")
    fields[3] = "7"
    lines[3] = ",".join(fields)
    meta.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=r"metadata.csv, line 4: column 'split': unknown split code 7"):
        build_dataset("waterbirds", data_root=str(release["folder"]), image_size=8)


def test_missing_image_file(release):
    folder = release["folder"]
    victim = release["rows"][4][1]
    (folder / victim).unlink()
    with pytest.raises(DataFormatError, match=rf"metadata.csv, line 6, column 'img_filename': image file .*{victim}"):
        build_dataset("waterbirds", data_root=str(folder), image_size=8)


def test_broken_jpeg_names_file(release, tmp_path):
    victim = release["rows"][2][1]  # not the first training image, which the pre-flight check decodes
    (release["folder"] / victim).write_bytes(b"not a jpeg")
    ds = build_dataset("waterbirds", data_root=str(tmp_path), image_size=8)
    with pytest.raises(DataFormatError, match=f"{victim}: cannot decode image"):
        ds.train.x[2]


def test_no_root_explains_where(monkeypatch, tmp_path):
    monkeypatch.delenv("PROBE_DATA", raising=False)
    with pytest.raises(ProbeInputError, match="metadata.csv"):
        build_dataset("waterbirds")
    with pytest.raises(ProbeInputError, match="nothing usable under"):
        build_dataset("waterbirds", data_root=str(tmp_path))


def test_official_counts_and_their_comparison():
    from probe.data.waterbirds import GROUP_NAMES, OFFICIAL_GROUP_COUNTS, OFFICIAL_SPLIT_COUNTS, compare_with_official

    assert OFFICIAL_SPLIT_COUNTS == {"train": 4795, "val": 1199, "test": 5794}
    assert OFFICIAL_GROUP_COUNTS["train"] == (3498, 184, 56, 1057)
    assert GROUP_NAMES == ("landbird-land", "landbird-water", "waterbird-land", "waterbird-water")
    official = {k: list(v) for k, v in OFFICIAL_GROUP_COUNTS.items()}
    rows, ok = compare_with_official(official)
    assert ok and len(rows) == 15 and all(r["match"] for r in rows)
    # two training landbirds on land relabelled as on water: those two groups differ, the total does not
    off = {**official, "train": [3496, 186, 56, 1057]}
    rows, ok = compare_with_official(off)
    assert not ok
    assert [(r["split"], r["group"], r["found"], r["official"]) for r in rows if not r["match"]] == [
        ("train", "landbird-land", 3496, 3498), ("train", "landbird-water", 186, 184)]
    # a missing split counts zero
    rows, ok = compare_with_official({"train": official["train"], "val": official["val"]})
    assert not ok and {r["split"] for r in rows if not r["match"]} == {"test"}
    with pytest.raises(ProbeInputError, match="needs 4 group counts"):
        compare_with_official({"train": [1, 2, 3]})
