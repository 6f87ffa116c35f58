"""Every dataset trains for one epoch through ``probe train`` on its fixture (written in the real on-disk format)."""

import json

import pytest
from probe_data_fixtures import (
    write_celeba,
    write_cifar10_binary,
    write_cifar100,
    write_class_folders,
    write_mnist,
    write_waterbirds,
)

from probe.cli import main
from probe.data import dataset_names, dataset_options

# name -> (fixture writer or None for generated data, model, extra --data-option values)
FIXTURES = {
    "parity": (None, "mlp", ["n_train=96", "n_val=32", "n_test=32"]),
    "moon-star": (None, "cnn", ["n_train=96", "n_val=32", "n_test=32"]),
    "colored-mnist": (lambda root: write_mnist(root, "gz"), "cnn", []),
    "double-mnist": (lambda root: write_mnist(root, "torchvision"), "cnn", []),
    "mnist-cifar": (lambda root: (write_cifar10_binary(root, per_batch=20), write_mnist(root)), "cnn", []),
    "corrupted-cifar10": (lambda root: write_cifar10_binary(root, per_batch=10), "cnn", []),
    "waterbirds": (write_waterbirds, "cnn", []),
    "celeba": (lambda root: write_celeba(root, "csv"), "cnn", []),
    "cifar10": (lambda root: write_cifar10_binary(root, per_batch=10), "cnn", []),
    "cifar100": (lambda root: write_cifar100(root, "python"), "cnn", []),
    "imagenet": (write_class_folders, "cnn", []),
}


def test_every_registered_dataset_has_a_fixture():
    assert sorted(FIXTURES) == dataset_names()


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_one_epoch_through_probe_train(name, tmp_path, monkeypatch):
    monkeypatch.delenv("PROBE_DATA", raising=False)
    writer, model, extra = FIXTURES[name]
    accepted = dataset_options(name)
    root = tmp_path / "data"
    root.mkdir()
    argv = ["train", "--dataset", name]
    if writer is not None:
        writer(root)
    if "data_root" in accepted:
        argv += ["--data-root", str(root)]
    if "image_size" in accepted:
        argv += ["--image-size", "16"]
    for option in extra:
        argv += ["--data-option", option]
    argv += ["--model", model, "--lr", "0.05", "--epochs", "1", "--batch-size", "32", "--out", str(tmp_path / "run"),
             "--quiet"]
    assert main(argv) == 0
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["config"]["dataset"] == name
    assert (tmp_path / "run" / "manifest.json").is_file()
