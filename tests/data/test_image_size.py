"""Every dataset that takes an image side checks it with one helper: 0, -8, a non-number or an absurd size is one line
(exit 2 through the CLI) before any data is read or anything is written."""

import pytest
from probe_data_fixtures import (
    write_celeba,
    write_cifar10_binary,
    write_cifar100,
    write_class_folders,
    write_waterbirds,
)

from probe.cli import main
from probe.data import build_dataset, dataset_names, dataset_options
from probe.data.base import MAX_IMAGE_SIZE
from probe.errors import ProbeInputError

WITH_IMAGE_SIZE = [name for name in dataset_names() if "image_size" in dataset_options(name)]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """One folder holding every release a dataset with an image side can read."""
    root = tmp_path_factory.mktemp("all-releases")
    write_waterbirds(root, segmentations=False)
    write_celeba(root / "celeba")
    write_class_folders(root / "imagenet")
    write_cifar10_binary(root, per_batch=4)
    write_cifar100(root, n_train=10, n_test=5)
    return root


def test_every_image_dataset_is_covered():
    assert set(WITH_IMAGE_SIZE) == {"celeba", "cifar10", "cifar100", "colored-mnist", "corrupted-cifar10",
                                    "double-mnist", "imagenet", "mnist-cifar", "moon-star", "waterbirds"}


@pytest.mark.parametrize("name", WITH_IMAGE_SIZE)
@pytest.mark.parametrize("size", [0, -8, "abc", 2.5, MAX_IMAGE_SIZE + 1])
def test_bad_image_size_is_one_line(data_root, name, size):
    with pytest.raises(ProbeInputError, match=rf"{name}: image_size must .* got {size!r}") as err:
        root = {"data_root": str(data_root)} if "data_root" in dataset_options(name) else {}
        build_dataset(name, image_size=size, **root)
    assert "\n" not in str(err.value)


def test_bad_resize_is_one_line(data_root):
    with pytest.raises(ProbeInputError, match="waterbirds: resize must lie in 1..4096, got -3"):
        build_dataset("waterbirds", data_root=str(data_root), image_size=8, resize=-3)
    with pytest.raises(ProbeInputError, match="need image_size <= resize, got 16 and 8"):
        build_dataset("celeba", data_root=str(data_root), image_size=16, resize=8)


@pytest.mark.parametrize(("name", "size"), [("waterbirds", "0"), ("colored-mnist", "-8")])
def test_cli_exits_2_before_writing(data_root, tmp_path, capsys, name, size):
    out = tmp_path / "run"
    code = main(["train", "--dataset", name, "--data-root", str(data_root), "--image-size", size, "--lr", "0.1",
                 "--epochs", "1", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err == f"probe: error: {name}: image_size must lie in 1..{MAX_IMAGE_SIZE}, got {size}\n"
    assert not out.exists()
