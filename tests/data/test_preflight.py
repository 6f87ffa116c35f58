"""A damaged image is found before a run directory exists (pre-flight: one sample per split and file type), and one
reached later, in a DataLoader worker or not, is a one-line DataFormatError naming the file."""

import pytest
import torch
from PIL import Image
from probe_data_fixtures import refused_training, write_waterbirds

from probe.cli import main
from probe.data import build_dataset
from probe.errors import DataFormatError


def truncate(path):
    """Cut a real JPEG in the middle of its compressed data."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_cli_refuses_a_truncated_jpeg_before_creating_the_run(tmp_path, capsys):
    release = write_waterbirds(tmp_path / "data", segmentations=False)
    victim = release["rows"][0][1]  # the first training image: the one the pre-flight check decodes
    truncate(release["folder"] / victim)
    stderr = refused_training(tmp_path / "data", tmp_path / "run", capsys)
    assert f"{victim}: cannot decode image" in stderr


def test_preflight_decodes_one_sample_per_split_and_file_type(tmp_path):
    release = write_waterbirds(tmp_path / "data")
    folder = release["folder"]
    ds = build_dataset("waterbirds", data_root=str(tmp_path / "data"), image_size=8,
                       segmentation_root=str(release["segmentations"]))
    assert ds.preflight() == 9  # 3 splits x (image, core mask, spurious mask)
    # a PNG in the middle of the training split is a file type of its own: pre-flight decodes (and refuses) it
    jpg = release["rows"][4][1]
    png = jpg.replace(".jpg", ".png")
    with Image.open(folder / jpg) as im:
        im.save(folder / png)
    truncate(folder / png)
    meta = folder / "metadata.csv"
    meta.write_text(meta.read_text().replace(jpg, png))
    with pytest.raises(DataFormatError, match=f"{png}: cannot decode image"):
        build_dataset("waterbirds", data_root=str(tmp_path / "data"), image_size=8)


def test_a_bad_image_reached_in_training_is_one_typed_line(tmp_path):
    release = write_waterbirds(tmp_path / "data", segmentations=False)
    victim = release["rows"][9][1]  # a training image the pre-flight check does not decode
    truncate(release["folder"] / victim)
    ds = build_dataset("waterbirds", data_root=str(tmp_path / "data"), image_size=8)
    with pytest.raises(DataFormatError, match=f"{victim}: cannot decode image") as err:
        ds.train.x[9]
    assert "\n" not in str(err.value)
    # decoded in DataLoader worker processes: the same one-line error, not a worker traceback
    with pytest.raises(DataFormatError) as err:
        for _ in ds.train.batches(4, order=torch.arange(len(ds.train)), num_workers=2):
            pass
    assert str(err.value).startswith(str(release["folder"] / victim)) and "\n" not in str(err.value)


def test_cli_training_that_reaches_a_bad_image_exits_2_with_one_line(tmp_path, capsys):
    release = write_waterbirds(tmp_path / "data", segmentations=False)
    victim = release["rows"][9][1]
    truncate(release["folder"] / victim)
    code = main(["train", "--dataset", "waterbirds", "--data-root", str(tmp_path / "data"), "--image-size", "8",
                 "--lr", "0.1", "--epochs", "1", "--workers", "2", "--quiet", "--out", str(tmp_path / "run")])
    stderr = capsys.readouterr().err
    assert code == 2, stderr
    assert stderr.count("\n") == 1 and f"{victim}: cannot decode image" in stderr
