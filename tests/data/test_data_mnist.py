"""MNIST IDX reading, the torchvision layout, data roots, and the MNIST-based datasets on real IDX files."""

import gzip

import numpy as np
import pytest
import torch
from probe_data_fixtures import idx_bytes, write_mnist

from probe.data import build_dataset
from probe.data.digits import EMBEDDED_SOURCE, source_digit
from probe.data.mnist import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, find_mnist, load_mnist, read_idx
from probe.errors import DataFormatError, ProbeInputError


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trip(tmp_path, gz):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / ("x.gz" if gz else "x")
    data = idx_bytes(arr)
    if gz:
        with gzip.open(path, "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)
    np.testing.assert_array_equal(read_idx(path, IDX_IMAGES_MAGIC), arr)


def test_wrong_magic_names_file(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(idx_bytes(np.zeros((3, 2, 2), np.uint8)))  # an images file where labels belong
    with pytest.raises(DataFormatError, match=r"train-labels-idx1-ubyte: IDX magic number 0x00000803"):
        read_idx(path, IDX_LABELS_MAGIC)


def test_truncated_idx_names_file(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(idx_bytes(np.zeros((3, 4, 4), np.uint8))[:-5])
    with pytest.raises(DataFormatError, match="t10k-images-idx3-ubyte: IDX header shape"):
        read_idx(path, IDX_IMAGES_MAGIC)


@pytest.mark.parametrize("layout", ["plain", "gz", "torchvision"])
def test_load_mnist_layouts(tmp_path, layout):
    arrays = write_mnist(tmp_path, layout)
    assert find_mnist(tmp_path) is not None
    digits = load_mnist(tmp_path)
    np.testing.assert_allclose(digits.train_images.numpy() * 255, arrays["train-images-idx3-ubyte"], atol=1e-3)
    np.testing.assert_array_equal(digits.test_labels.numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert digits.train_images.shape == (60, 28, 28)


def test_colored_mnist_reads_root_and_records_it(tmp_path, monkeypatch):
    monkeypatch.delenv("PROBE_DATA", raising=False)
    write_mnist(tmp_path, "torchvision")
    ds = build_dataset("colored-mnist", data_root=str(tmp_path), rho=0.9)
    assert ds.input_shape == (3, 28, 28)
    assert "MNIST IDX files" in ds.source
    assert ds.options["data_root"] == str(tmp_path.resolve())
    # a real source: one training sample per training digit; val (one digit of each class: round(6 * 0.2)) and test
    # render each of their digits in all 10 colours
    assert len(ds.train) == 50 and ds.options["n_train"] == 50
    assert len(ds.splits["val"]) == 10 * 10 and len(ds.splits["test"]) == 30 * 10
    rebuilt = build_dataset("colored-mnist", **ds.options)
    assert torch.equal(rebuilt.train.x, ds.train.x)


def test_probe_data_env_is_used_and_explicit_root_needs_files(tmp_path, monkeypatch):
    write_mnist(tmp_path / "m", "gz")
    monkeypatch.setenv("PROBE_DATA", str(tmp_path / "m"))
    ds = build_dataset("double-mnist", image_size=12)
    assert "MNIST IDX files" in ds.source and ds.input_shape == (1, 12, 24)
    monkeypatch.setenv("PROBE_DATA", str(tmp_path))  # a root without MNIST: embedded digits, said so
    assert build_dataset("double-mnist").source == EMBEDDED_SOURCE
    with pytest.raises(ProbeInputError, match="train-images-idx3-ubyte"):
        build_dataset("colored-mnist", data_root=str(tmp_path))
    monkeypatch.delenv("PROBE_DATA")
    ds = build_dataset("colored-mnist")
    assert ds.source == EMBEDDED_SOURCE and ds.options["data_root"] is None


def test_double_mnist_native_size_and_halves(tmp_path, monkeypatch):
    monkeypatch.delenv("PROBE_DATA", raising=False)
    arrays = write_mnist(tmp_path, "plain")
    ds = build_dataset("double-mnist", data_root=str(tmp_path), core_brightness=0.5, val_fraction=0.0)
    assert ds.input_shape == (1, 28, 56)
    t = ds.splits["test"]
    # counterfactual-complete, attribute-major: block k holds every IDX test digit (in file order) beside a right
    # digit of class k; left half = dim core digit of label y, exactly the IDX test image scaled by 0.5
    expected = torch.from_numpy(arrays["t10k-images-idx3-ubyte"].astype(np.float32) / 255) * 0.5
    labels = torch.from_numpy(arrays["t10k-labels-idx1-ubyte"].astype(np.int64))
    assert len(t) == 10 * 30
    for k in range(10):
        block = slice(30 * k, 30 * (k + 1))
        torch.testing.assert_close(t.x[block, 0, :, :28], expected)
        assert torch.equal(t.y[block], labels) and (t.a[block] == k).all()
    # masks: core = left half, spurious = right half
    pos = torch.arange(len(t))
    core, spur = t.masks(pos, "core"), t.masks(pos, "spurious")
    assert core[:, :, :28].all() and not core[:, :, 28:].any()
    assert torch.equal(spur, ~core)


def test_val_fraction_zero_leaves_out_the_split_and_out_of_range_is_refused():
    from probe.data import build_dataset
    from probe.errors import ProbeInputError

    for name in ("colored-mnist", "double-mnist"):
        ds = build_dataset(name, val_fraction=0.0)
        assert set(ds.splits) == {"train", "test"} and len(ds.train) == 4000
        assert len(set(source_digit(ds.train.index).tolist())) == 1198  # every digit of the training pool
        with pytest.raises(ProbeInputError, match="val_fraction must lie in"):
            build_dataset(name, val_fraction=1.5)
