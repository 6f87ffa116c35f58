"""Attribution grids: cached beside the analysis, equal to a fresh computation, recomputed when the key changes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from probe.analyses.engine import analyze, attribution_grids
from probe.store.reader import Run


def test_grid_attributions_are_cached_and_read_back_without_the_model(tiny_parity_run, tmp_path, monkeypatch):
    result = analyze(tiny_parity_run, out=tmp_path / "analysis", analyses=["groups"], progress=False)
    first = attribution_grids(result, methods=("ig", "saliency"), n=4, strict=True)
    entries = sorted((tmp_path / "analysis" / "cache").rglob("grids/*/*.npy"))
    assert [p.name for p in entries] == ["epoch_00003_ig_bc4.npy", "epoch_00003_saliency_bc4.npy"]

    def no_model(self, epoch=None):
        raise AssertionError("the model was loaded although the cache holds the attributions")

    monkeypatch.setattr(Run, "model", no_model)
    second = attribution_grids(result, methods=("ig", "saliency"), n=4, strict=True)
    assert [g.method for g in second.grids] == [g.method for g in first.grids] == ["ig", "saliency"]
    for old, new in zip(first.grids, second.grids):
        for a, b in zip(old.rows, new.rows):
            for field in ("values", "inputs", "index", "positions", "y", "a", "is_bc"):
                np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
            assert (a.run_name, a.epoch, a.method) == (b.run_name, b.epoch, b.method)
    # an entry computed from another epoch file is not used
    sidecar = entries[0].with_suffix(".json")
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "epoch_sha256": "0" * 64}))
    with pytest.raises(AssertionError, match="model was loaded"):
        attribution_grids(result, methods=("ig",), n=4, strict=True)


def test_a_cached_grid_builds_no_dataset_and_equals_the_computed_one(tiny_parity_run, tmp_path, monkeypatch):
    result = analyze(tiny_parity_run, out=tmp_path / "analysis", analyses=["groups"], progress=False)
    first = attribution_grids(result, methods=("ig",), n=4, strict=True)
    assert sorted(p.name for p in (tmp_path / "analysis" / "cache").rglob("grid_samples/bc4/*.npy")) == [
        "a.npy", "core_mask.npy", "index.npy", "inputs.npy", "is_bc.npy", "positions.npy", "spurious_mask.npy", "y.npy"]

    def no_dataset(self):
        raise AssertionError("the dataset was built although the cache holds the grid's samples")

    monkeypatch.setattr(Run, "dataset", no_dataset)
    second = attribution_grids(result, methods=("ig",), n=4, strict=True)
    for a, b in zip(first.grids[0].rows, second.grids[0].rows, strict=True):
        for name, value in vars(a).items():
            other = getattr(b, name)
            if isinstance(value, np.ndarray):
                assert value.dtype == other.dtype
                np.testing.assert_array_equal(value, other)
            else:
                assert value == other, name
    # samples cached for another dataset option are not used
    fields = next((tmp_path / "analysis" / "cache").rglob("grid_samples/bc4/fields.json"))
    listing = json.loads(fields.read_text())
    listing["key"]["dataset_options"] = {"n_train": 1}
    fields.write_text(json.dumps(listing))
    with pytest.raises(AssertionError, match="dataset was built"):
        attribution_grids(result, methods=("ig",), n=4, strict=True)
