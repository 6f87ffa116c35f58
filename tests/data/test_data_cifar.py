"""CIFAR binary and python releases, the restricted unpickler, and the CIFAR-based datasets."""

import pickle

import numpy as np
import pytest
import torch
from probe_data_fixtures import (
    CIFAR10_NAMES,
    write_cifar10_binary,
    write_cifar10_python,
    write_cifar100,
    write_malicious_cifar10_python,
)

from probe.data import build_dataset
from probe.data.cifar import load_cifar, load_pickled_batch
from probe.data.corruptions import CORRUPTIONS, corrupt
from probe.errors import DataFormatError, ProbeInputError


def _expected(written, names):
    data = np.concatenate([written[n][0] for n in names]).reshape(-1, 3, 32, 32)
    labels = np.concatenate([written[n][1] for n in names])
    return data, labels


@pytest.mark.parametrize("form", ["binary", "python"])
def test_cifar10_release_read_exactly(tmp_path, form):
    if form == "binary":
        written = write_cifar10_binary(tmp_path)
        train_names, test_name = [f"data_batch_{i}.bin" for i in range(1, 6)], "test_batch.bin"
    else:
        written = write_cifar10_python(tmp_path)
        train_names, test_name = [f"data_batch_{i}" for i in range(1, 6)], "test_batch"
    arrays = load_cifar(tmp_path, 10)
    x, y = _expected(written, train_names)
    np.testing.assert_array_equal(arrays.train_images, x)
    np.testing.assert_array_equal(arrays.train_labels, y)
    np.testing.assert_array_equal(arrays.test_images, written[test_name][0].reshape(-1, 3, 32, 32))
    assert arrays.class_names == CIFAR10_NAMES
    assert form in arrays.source


@pytest.mark.parametrize("form", ["binary", "python"])
def test_cifar100_fine_labels(tmp_path, form):
    written = write_cifar100(tmp_path, form)
    ds = build_dataset("cifar100", data_root=str(tmp_path))
    train_key = "train.bin" if form == "binary" else "train"
    assert ds.num_classes == 100 and ds.num_attrs == 1
    assert torch.equal(ds.train.y, torch.from_numpy(written[train_key][1]))
    x0 = written[train_key][0][0].reshape(3, 32, 32).astype(np.float32) / 255
    torch.testing.assert_close(ds.train.x[0], torch.from_numpy(x0))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "marker.txt"
    path = write_malicious_cifar10_python(tmp_path, marker)
    with pytest.raises(DataFormatError, match=r"data_batch_1: refused to unpickle global (__builtin__|builtins).exec"):
        load_pickled_batch(path)
    with pytest.raises(DataFormatError, match="data_batch_1"):
        build_dataset("cifar10", data_root=str(tmp_path))
    assert not marker.exists()
    # the same bytes do run code under a plain unpickler: the test's payload is real
    pickle.loads(path.read_bytes())
    assert marker.exists()


def test_missing_field_and_bad_record_size(tmp_path):
    write_cifar10_python(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}, protocol=2))
    with pytest.raises(DataFormatError, match=r"test_batch: missing field 'labels'"):
        load_cifar(tmp_path, 10)
    write_cifar10_binary(tmp_path / "b")
    bad = tmp_path / "b" / "cifar-10-batches-bin" / "data_batch_3.bin"
    bad.write_bytes(bad.read_bytes()[:-1])
    with pytest.raises(DataFormatError, match="data_batch_3.bin: .* not a whole number"):
        load_cifar(tmp_path / "b", 10)


def test_no_root_says_which_files_where(monkeypatch):
    monkeypatch.delenv("PROBE_DATA", raising=False)
    for name in ("cifar10", "mnist-cifar", "corrupted-cifar10"):
        with pytest.raises(ProbeInputError, match=r"cifar-10-batches-py/.*cifar-10-batches-bin/"):
            build_dataset(name)
    with pytest.raises(ProbeInputError, match="cifar-100-python/"):
        build_dataset("cifar100")


def test_cifar10_standard_dataset(tmp_path):
    write_cifar10_binary(tmp_path)
    ds = build_dataset("cifar10", data_root=str(tmp_path), image_size=16, val_fraction=0.2)
    assert ds.input_shape == (3, 16, 16)
    assert (len(ds.train), len(ds.splits["val"]), len(ds.splits["test"])) == (40, 10, 10)
    for s in ds.splits.values():
        assert not s.is_bc.any() and (s.a == 0).all()
    assert set(ds.train.index.tolist()).isdisjoint(ds.splits["val"].index.tolist())


def test_mnist_cifar_blocks_and_masks(tmp_path):
    write_cifar10_binary(tmp_path, per_batch=40)
    ds = build_dataset("mnist-cifar", data_root=str(tmp_path), image_size=16, rho=0.9, val_fraction=0.0)
    assert ds.input_shape == (3, 32, 16)
    arrays = load_cifar(tmp_path, 10)
    s = ds.train
    assert set(s.y.tolist()) == {0, 1} and set(s.a.tolist()) <= {0, 1}
    # core label: automobile (CIFAR class 1) -> 0, truck (9) -> 1, in the release's order
    src = arrays.train_labels[np.isin(arrays.train_labels, (1, 9))]
    assert torch.equal(s.y, torch.from_numpy((src == 9).astype(np.int64)))
    pos = torch.arange(len(s))
    top = s.masks(pos, "spurious")
    assert top[:, :16].all() and not top[:, 16:].any()
    assert torch.equal(s.masks(pos, "core"), ~top)
    # the top block is the grey digit (equal channels); the bottom block is the resized CIFAR image
    assert torch.equal(s.x[:, 0, :16], s.x[:, 1, :16])
    cf = ds.render_spurious("train", pos[:6], 1 - s.a[:6])
    assert torch.equal(cf[:, :, 16:], s.x[:6, :, 16:])  # core block untouched
    assert "embedded default" in ds.source


def test_corruptions_are_distinct_and_in_range():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 16, 16, generator=g) * 0.6 + 0.2
    outs = [corrupt(x, k, 3, torch.Generator().manual_seed(1)) for k in CORRUPTIONS]
    for o in outs:
        assert o.shape == x.shape and o.min() >= 0 and o.max() <= 1
        assert not torch.equal(o, x)
    for i in range(len(outs)):
        for j in range(i + 1, len(outs)):
            assert not torch.allclose(outs[i], outs[j])
    # severity grows the change for a deterministic corruption
    diffs = [(corrupt(x, "contrast", s) - x).abs().mean() for s in (1, 3, 5)]
    assert diffs[0] < diffs[1] < diffs[2]


def test_corrupted_cifar10_counterfactual(tmp_path):
    write_cifar10_binary(tmp_path, per_batch=20)
    ds = build_dataset("corrupted-cifar10", data_root=str(tmp_path), rho=0.9, severity=2, val_fraction=0.0)
    s = ds.train
    assert ds.num_attrs == 10 and torch.equal(s.is_bc, s.a != s.y)
    # a deterministic corruption re-rendered with the same attribute reproduces the sample exactly
    contrast = CORRUPTIONS.index("contrast")
    pos = torch.nonzero(s.a == contrast).flatten()
    assert len(pos) > 0
    torch.testing.assert_close(ds.render_spurious("train", pos, s.a[pos]), s.x[pos])
    other = ds.render_spurious("train", pos, torch.full_like(pos, CORRUPTIONS.index("brightness")))
    assert not torch.allclose(other, s.x[pos])
    with pytest.raises(ProbeInputError, match="severity"):
        build_dataset("corrupted-cifar10", data_root=str(tmp_path), severity=6)
