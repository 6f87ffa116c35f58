"""The one cache: the file primitive (atomic entries, keyed arrays), the metric cache's key (epoch sha256, analysis
version and options, engine format) and the features cache built on the same primitive."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from probe.analyses.base import EPOCH_ANALYSES, options_key
from probe.analyses.cache import FileCache
from probe.analyses.engine import analyze
from probe.analyses.engine.cache import CACHE_FORMAT, EntryKey
from probe.errors import UnsafePathError
from probe.store import open_run
from probe.store.atomic import TEMP_PREFIX
from tests.analyses.engine.helpers import copy_sweep, flip_bit_in_place


def test_file_cache_entries_and_keys(tmp_path):
    cache = FileCache(tmp_path / "c")
    assert cache.load_json("a/b.json") is None
    cache.store_json("a/b.json", {"x": [1, 2]})
    assert cache.load_json("a/b.json") == {"x": [1, 2]}
    (tmp_path / "c" / "a" / "b.json").write_text('{"x": [1,')  # a torn file reads as a miss, never raises
    assert cache.load_json("a/b.json") is None

    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    cache.store_array("f/e.npy", array, {"sha": "1"})
    np.testing.assert_array_equal(cache.load_array("f/e.npy", {"sha": "1"}), array)
    assert cache.load_array("f/e.npy", {"sha": "2"}) is None  # another key: a miss
    assert json.loads((tmp_path / "c" / "f" / "e.json").read_text()) == {"sha": "1"}
    assert not list((tmp_path / "c").rglob(f"{TEMP_PREFIX}*"))  # written through probe.store.atomic
    assert FileCache(None).load_json("a/b.json") is None  # a cache without a folder stores nothing
    FileCache(None).store_array("x.npy", array, {})


def test_file_cache_entries_stay_inside_its_folder(tmp_path):
    cache = FileCache(tmp_path / "cache")
    for name in ("../outside.json", "runs/../../outside.json", str(tmp_path / "outside.json")):
        with pytest.raises(UnsafePathError, match="outside"):
            cache.store_json(name, {"x": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written, not even the cache folder


def test_rerun_reuses_cache_keyed_by_epoch_sha(tiny_parity_run, tmp_path, counting):
    out = tmp_path / "a"
    first = analyze(tiny_parity_run, out=out, analyses=["count", "groups"], progress=False)
    epochs = open_run(tiny_parity_run).epochs
    assert sorted(counting) == [("parity_lr0.1", e) for e in epochs]
    assert not first.timings["cached"].any()
    second = analyze(tiny_parity_run, out=out, analyses=["count", "groups"], progress=False)
    assert len(counting) == len(epochs)  # nothing recomputed
    assert second.timings["cached"].all()
    pd.testing.assert_frame_equal(first.epochs, second.epochs)
    # an entry whose sha256 no longer matches the epoch file is recomputed
    entry = out / "cache" / "parity_lr0.1" / "metrics" / "parity_lr0.1" / "epoch_00001.json"
    data = json.loads(entry.read_text())
    assert data["count"]["format"] == CACHE_FORMAT
    assert data["count"]["options"] == options_key("count", {})
    data["count"]["epoch_sha256"] = "0" * 64
    entry.write_text(json.dumps(data))
    analyze(tiny_parity_run, out=out, analyses=["count", "groups"], progress=False)
    assert counting[len(epochs):] == [("parity_lr0.1", 1)]
    # another value of an option the analysis declares: recomputed
    analyze(tiny_parity_run, out=out, analyses=["count"], progress=False, options={"count_offset": 1})
    assert len(counting) == 2 * len(epochs) + 1
    # an entry of another cache format: recomputed
    data = json.loads(entry.read_text())
    data["count"]["format"] = CACHE_FORMAT - 1
    entry.write_text(json.dumps(data))
    analyze(tiny_parity_run, out=out, analyses=["count"], progress=False, options={"count_offset": 1})
    assert counting[2 * len(epochs) + 1:] == [("parity_lr0.1", 1)]


def test_bumping_one_analysis_version_recomputes_that_analysis_only(tiny_parity_run, tmp_path, counting,
                                                                     monkeypatch):
    out, names = tmp_path / "v", ["count", "groups", "losses"]
    first = analyze(tiny_parity_run, out=out, analyses=names, progress=False)
    assert not first.timings["cached"].any()
    bumped = dataclasses.replace(EPOCH_ANALYSES["groups"], version=EPOCH_ANALYSES["groups"].version + 1)
    monkeypatch.setitem(EPOCH_ANALYSES, "groups", bumped)
    second = analyze(tiny_parity_run, out=out, analyses=names, progress=False)
    recomputed = second.timings[~second.timings["cached"]]
    n_epochs = len(open_run(tiny_parity_run).epochs)
    assert set(recomputed["analysis"]) == {"groups"} and len(recomputed) == n_epochs
    assert second.timings.groupby("analysis")["cached"].all().to_dict() == {"count": True, "groups": False,
                                                                            "losses": True}
    pd.testing.assert_frame_equal(first.epochs, second.epochs)  # same formula here: same numbers
    third = analyze(tiny_parity_run, out=out, analyses=names, progress=False)
    assert third.timings["cached"].all()  # the recomputed entries were stored beside the others


def test_entry_key_matches_all_three_parts():
    key = EntryKey("a" * 64, "0123456789abcdef")
    entry = {"epoch_sha256": "a" * 64, "options": "0123456789abcdef", "format": CACHE_FORMAT, "metrics": []}
    assert key.matches(entry)
    for part, other in (("epoch_sha256", "b" * 64), ("options", "f" * 16), ("format", CACHE_FORMAT + 1)):
        assert not key.matches({**entry, part: other}), part


def test_cache_never_answers_for_a_damaged_epoch(parity_sweep, tmp_path, counting):
    """Bit rot in an analysed epoch, with its size and mtime unchanged: the second analyze into the same --out
    re-hashes the file and lists the run as damaged instead of answering from the cache."""
    sweep = copy_sweep(parity_sweep, tmp_path)
    out = tmp_path / "analysis"
    first = analyze(sweep, out=out, analyses=["count"], progress=False)
    assert first.damaged.empty and len(counting) == 4 * 3
    flip_bit_in_place(sweep / "lr0.1" / "epoch_00002.h5", 3000)
    second = analyze(sweep, out=out, analyses=["count"], progress=False)
    assert len(counting) == 4 * 3  # the three healthy runs come from the cache
    assert second.timings["cached"].all()
    assert second.damaged["run"].tolist() == ["lr0.1"]
    assert second.failures.set_index("run").loc["lr0.1", "damaged_file"] == str(sweep / "lr0.1" / "epoch_00002.h5")
    assert "lr0.1" not in set(second.epochs["run"])
    assert set(second.epochs["run"]) == {"lr0.03", "lr0.3", "lr1"}


def test_proposition_tables_are_cached_bit_for_bit(tiny_parity_run, tmp_path, monkeypatch):
    """The R(alpha) curves and the scale / direction steps of a second analyze come from the cache, equal to the
    first's in every value and dtype; another alpha grid recomputes them."""
    import probe.analyses.proposition as proposition

    out = tmp_path / "analysis"
    first = analyze(tiny_parity_run, out=out, analyses=["proposition"], progress=False)
    assert len(first.ratio_curves) and len(first.proposition_steps)

    def no_tables(*args, **kwargs):
        raise AssertionError("the proposition tables were recomputed although the cache holds them")

    monkeypatch.setattr(proposition, "proposition_tables", no_tables)
    second = analyze(tiny_parity_run, out=out, analyses=["proposition"], progress=False)
    pd.testing.assert_frame_equal(second.ratio_curves, first.ratio_curves, check_exact=True)
    pd.testing.assert_frame_equal(second.proposition_steps, first.proposition_steps, check_exact=True)
    with pytest.raises(AssertionError, match="recomputed"):
        analyze(tiny_parity_run, out=out, analyses=["proposition"], progress=False,
                options={"alphas": [0.1, 0.3, 1, 3, 10, 30, 100]}, strict=True)
    with pytest.raises(AssertionError, match="recomputed"):
        analyze(tiny_parity_run, out=out, analyses=["proposition"], progress=False, use_cache=False, strict=True)
