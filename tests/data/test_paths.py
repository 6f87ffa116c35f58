"""Every file a reader joins to a data folder stays inside it: ``..``, absolute paths and symlinks out are refused
(real symlinks, real files outside the root that an unconfined reader would open) when the dataset is built."""

import os
import shutil

import numpy as np
import pytest
from PIL import Image
from probe_data_fixtures import (
    idx_bytes,
    refused_training,
    write_celeba,
    write_cifar10_binary,
    write_class_folders,
    write_waterbirds,
)

from probe.data import build_dataset
from probe.data.paths import confined_path, confined_paths
from probe.errors import UnsafePathError


@pytest.fixture
def secret(tmp_path):
    """A real JPEG outside every data root: what an unconfined reader would open and train on."""
    path = tmp_path / "secret" / "secret.jpg"
    path.parent.mkdir()
    Image.fromarray(np.full((40, 32, 3), 7, np.uint8)).save(path)
    return path


def _set_img_filename(meta, line, value):
    lines = meta.read_text().splitlines()
    fields = lines[line - 1].split(",")
    fields[1] = value
    lines[line - 1] = ",".join(fields)
    meta.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("listed", ["../../secret/secret.jpg", "ABSOLUTE", "/etc/passwd",
                                    "001.Black_footed_Albatross/../../../secret/secret.jpg"])
def test_waterbirds_refuses_listed_paths_out_of_the_release(tmp_path, secret, listed):
    release = write_waterbirds(tmp_path / "data", segmentations=False)
    listed = str(secret) if listed == "ABSOLUTE" else listed
    _set_img_filename(release["folder"] / "metadata.csv", 4, listed)
    with pytest.raises(UnsafePathError) as err:
        build_dataset("waterbirds", data_root=str(tmp_path / "data"), image_size=8)
    message = str(err.value)
    assert "metadata.csv, line 4, column 'img_filename'" in message and repr(listed) in message
    assert "\n" not in message


def test_waterbirds_refuses_a_symlink_out_of_the_release(tmp_path, secret):
    release = write_waterbirds(tmp_path / "data", segmentations=False)
    victim = release["folder"] / release["rows"][5][1]
    victim.unlink()
    victim.symlink_to(secret)
    with pytest.raises(UnsafePathError, match=rf"line 7, column 'img_filename'.*is a symlink to '{secret}'"):
        build_dataset("waterbirds", data_root=str(tmp_path / "data"), image_size=8)


def test_waterbirds_refuses_a_class_folder_symlinked_out(tmp_path):
    release = write_waterbirds(tmp_path / "data", segmentations=False)
    folder = release["folder"] / "001.Black_footed_Albatross"
    outside = tmp_path / "elsewhere"
    shutil.move(folder, outside)
    folder.symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePathError, match=rf"lies in '{outside}' \(through a symlink\)"):
        build_dataset("waterbirds", data_root=str(tmp_path / "data"), image_size=8)


def test_waterbirds_follows_symlinks_that_stay_inside(tmp_path):
    release = write_waterbirds(tmp_path / "data", segmentations=False)
    folder = release["folder"]
    victim = folder / release["rows"][5][1]
    kept = folder / "kept.jpg"
    victim.rename(kept)
    victim.symlink_to(kept)
    ds = build_dataset("waterbirds", data_root=str(tmp_path / "data"), image_size=8)
    assert ds.train.x[5].shape == (3, 8, 8)
    # the release folder itself may be a symlink (a release kept on another disk)
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / folder.name).symlink_to(folder, target_is_directory=True)
    assert len(build_dataset("waterbirds", data_root=str(tmp_path / "linked"), image_size=8).train) == 14


def test_waterbirds_segmentations_are_confined_too(tmp_path, secret):
    release = write_waterbirds(tmp_path / "data")
    mask = release["segmentations"] / release["rows"][0][1].replace(".jpg", ".png")
    mask.unlink()
    mask.symlink_to(secret)
    with pytest.raises(UnsafePathError, match="segmentation file"):
        build_dataset("waterbirds", data_root=str(tmp_path / "data"), image_size=8,
                      segmentation_root=str(release["segmentations"]))


@pytest.mark.parametrize("listed", ["../secret/secret.jpg", "/etc/passwd"])
def test_celeba_refuses_listed_paths_out_of_the_image_folder(tmp_path, secret, listed):
    write_celeba(tmp_path / "data", "txt")
    for name in ("list_attr_celeba.txt", "list_eval_partition.txt"):
        path = tmp_path / "data" / name
        path.write_text(path.read_text().replace("000003.jpg", listed))
    with pytest.raises(UnsafePathError, match=rf"list_attr_celeba.txt, line 5: image file '{listed}'"):
        build_dataset("celeba", data_root=str(tmp_path / "data"), image_size=8)


def test_imagenet_refuses_an_image_symlinked_out(tmp_path, secret):
    write_class_folders(tmp_path / "data")
    (tmp_path / "data" / "train" / "n02" / "stolen.JPEG").symlink_to(secret)
    with pytest.raises(UnsafePathError, match=r"train: image file 'n02/stolen.JPEG' is a symlink"):
        build_dataset("imagenet", data_root=str(tmp_path / "data"), image_size=8)


def test_mnist_and_cifar_refuse_files_symlinked_out(tmp_path):
    (tmp_path / "mnist").mkdir()
    for split, n in (("train", 20), ("t10k", 10)):
        (tmp_path / "mnist" / f"{split}-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((n, 28, 28), np.uint8)))
        (tmp_path / "mnist" / f"{split}-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(n, np.uint8)))
    outside = tmp_path / "outside-labels"
    labels = tmp_path / "mnist" / "train-labels-idx1-ubyte"
    labels.rename(outside)
    labels.symlink_to(outside)
    with pytest.raises(UnsafePathError, match="'train-labels-idx1-ubyte' is a symlink"):
        build_dataset("colored-mnist", data_root=str(tmp_path / "mnist"))
    write_cifar10_binary(tmp_path / "cifar")
    batch = tmp_path / "cifar" / "cifar-10-batches-bin" / "data_batch_3.bin"
    os.replace(batch, tmp_path / "outside.bin")
    batch.symlink_to(tmp_path / "outside.bin")
    with pytest.raises(UnsafePathError, match="'data_batch_3.bin' is a symlink"):
        build_dataset("cifar10", data_root=str(tmp_path / "cifar"))


def test_confined_paths_rules(tmp_path):
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.jpg").write_bytes(b"x")
    assert confined_paths(root, ["a/x.jpg", "a/missing.jpg"], source="list.csv") == [root / "a" / "x.jpg",
                                                                                     root / "a" / "missing.jpg"]
    for bad, why in (("", "not a usable path"), ("a/\0x", "not a usable path"), ("/a/x.jpg", "absolute"),
                     ("a/../a/x.jpg", r"'\.\.'"), ("a/..", r"'\.\.'")):
        with pytest.raises(UnsafePathError, match=rf"list.csv, line 9: file .* {why}"):
            confined_path(root, bad, source="list.csv", row=9)


def test_cli_refuses_before_creating_the_run(tmp_path, capsys):
    release = write_waterbirds(tmp_path / "data", segmentations=False)
    _set_img_filename(release["folder"] / "metadata.csv", 3, "/etc/passwd")
    stderr = refused_training(tmp_path / "data", tmp_path / "run", capsys)
    assert "'/etc/passwd'" in stderr and "line 3" in stderr
