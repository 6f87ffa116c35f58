"""The report's figure cache: a second render of the same result draws nothing, a changed table redraws exactly its
figure, a damaged cached PNG is redrawn, and the page is the same byte for byte as a fresh render."""

from __future__ import annotations

import copy
import functools
import shutil

import numpy as np
import pandas as pd
import pytest

import probe.analyses.engine.grids as engine_grids
import probe.report.write as report_writer
from probe.analyses.engine import analyze
from probe.report import write_report
from probe.report.figcache import FigureCache, data_digest

DRAWERS = ("sweep_overview", "claims_forest", "chain_figure", "dynamics", "proposition_panels")
CACHE = ("cache", report_writer.FIGURE_CACHE_DIR)


@pytest.fixture(scope="module")
def analysed(tiny_colored_sweep, tmp_path_factory):
    root = tmp_path_factory.mktemp("figcache")
    sweep = shutil.copytree(tiny_colored_sweep, root / "colored", ignore=shutil.ignore_patterns(".lock"))
    return analyze(sweep, out=root / "analysis", model_epochs="last", progress=False, options={"dfr_retrains": 0})


@pytest.fixture
def calls(monkeypatch):
    """Counts the calls of the report's drawing functions (wrapped with their own names, so their keys hold)."""
    counts: dict[str, int] = {}
    for name in DRAWERS:
        original = getattr(report_writer, name)

        @functools.wraps(original)
        def counted(*args, _original=original, _name=name, **kwargs):
            counts[_name] = counts.get(_name, 0) + 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(report_writer, name, counted)
    return counts


def _fresh(result, tmp_path):
    """A copy of ``result`` writing into an empty folder of its own (tables copied), so tests share no cache."""
    out = tmp_path / "out"
    shutil.copytree(result.out, out, ignore=shutil.ignore_patterns("cache", "figures", "report.html"))
    result = copy.copy(result)
    result.out, result.files, result.errors = out, dict(result.files), list(result.errors)
    return result


def test_second_render_draws_nothing_and_touches_no_file(analysed, tmp_path, calls):
    result = _fresh(analysed, tmp_path)
    write_report(result)
    assert calls == {"sweep_overview": 1, "claims_forest": 1, "chain_figure": 1, "dynamics": 1,
                     "proposition_panels": 1}  # one budget: one dynamics figure
    first = report_writer.LAST_CACHE.drawn
    assert set(first) >= {"overview", "claims", "chain", "dynamics_fixed", "proposition"}
    pngs = sorted((result.out / "figures").glob("*.png"))
    stamps = {p.name: p.stat().st_mtime_ns for p in [*pngs, result.out / "report.html"]}
    calls.clear()
    write_report(result)
    assert calls == {} and report_writer.LAST_CACHE.drawn == []
    assert sorted(report_writer.LAST_CACHE.reused) == sorted(first)
    assert {p.name: p.stat().st_mtime_ns for p in [*pngs, result.out / "report.html"]} == stamps


def test_a_changed_table_redraws_exactly_its_figure(analysed, tmp_path, calls):
    result = _fresh(analysed, tmp_path)
    write_report(result)
    before = (result.out / "figures" / "claims.png").read_bytes()
    calls.clear()
    claims = result.claims.copy()
    claims["claim"] = claims["claim"].replace({claims["claim"].iloc[0]: "renamed_claim"})  # a tick label changes
    result.claims = claims
    write_report(result)
    assert calls == {"claims_forest": 1} and report_writer.LAST_CACHE.drawn == ["claims"]
    assert (result.out / "figures" / "claims.png").read_bytes() != before


def test_a_damaged_cached_png_is_redrawn_never_shown(analysed, tmp_path, calls):
    result = _fresh(analysed, tmp_path)
    write_report(result, use_cache=False)
    good = (result.out / "figures" / "overview.png").read_bytes()
    cached = result.out.joinpath(*CACHE, "overview.png")
    assert cached.read_bytes() == good
    damaged = bytearray(good)
    damaged[len(damaged) // 2] ^= 0xFF  # same size, other bytes: only the sha256 tells
    cached.write_bytes(bytes(damaged))
    result.out.joinpath(*CACHE, "chain.png").write_bytes(good[:100])  # truncated
    calls.clear()
    write_report(result)
    assert sorted(report_writer.LAST_CACHE.drawn) == ["chain", "overview"]
    assert calls == {"sweep_overview": 1, "chain_figure": 1}
    assert cached.read_bytes() == good == (result.out / "figures" / "overview.png").read_bytes()


def test_cached_page_equals_a_fresh_render_byte_for_byte(analysed, tmp_path):
    result = _fresh(analysed, tmp_path)
    grids = engine_grids.attribution_grids(result)
    fresh = write_report(result, grids, use_cache=False).read_bytes()
    assert report_writer.LAST_CACHE.reused == []
    cached = write_report(result, engine_grids.attribution_grids(result)).read_bytes()
    assert report_writer.LAST_CACHE.drawn == [] and len(report_writer.LAST_CACHE.reused) >= 6
    assert cached == fresh
    shutil.rmtree(result.out.joinpath(*CACHE))  # and the same page drawn into an empty cache
    assert write_report(result, grids).read_bytes() == fresh


def test_data_digest_is_exact():
    frame = pd.DataFrame({"lr": [0.1, 0.3], "run": ["a", "b"], "n": [1, 2]})
    same = pd.DataFrame({"lr": [0.1, 0.3], "run": ["a", "b"], "n": [1, 2]})
    assert data_digest(frame) == data_digest(same)
    changed = [frame.assign(lr=[0.1, 0.30000000000000004]), frame.assign(run=["a", "c"]),
               frame.assign(n=[1.0, 2.0]), frame.rename(columns={"n": "m"}), frame[["run", "lr", "n"]],
               frame.iloc[::-1], frame.assign(lr=[0.1, np.nan])]
    digests = {data_digest(f) for f in changed}
    assert data_digest(frame) not in digests and len(digests) == len(changed)
    assert data_digest(np.zeros(4, np.float32)) != data_digest(np.zeros(4, np.float64))
    assert data_digest(np.zeros((2, 2))) != data_digest(np.zeros(4))
    assert data_digest("1") != data_digest(1) != data_digest(1.0) != data_digest(True)
    with pytest.raises(TypeError):
        data_digest(object())


def test_key_follows_function_version_and_data(monkeypatch):
    def sweep_overview(x):
        return x

    frame = pd.DataFrame({"a": [1.0]})
    key = FigureCache.key(sweep_overview, (frame,), {})
    assert key == FigureCache.key(sweep_overview, (frame.copy(),), {})
    assert key != FigureCache.key(sweep_overview, (frame.assign(a=2.0),), {})
    monkeypatch.setitem(report_writer.FigureCache.key.__globals__["FIGURE_VERSIONS"], "sweep_overview", 99)
    assert key != FigureCache.key(sweep_overview, (frame,), {})


def test_a_tables_key_is_the_encoding_of_its_columns_one_by_one():
    """The digest of a table equals feeding each column as a Series (what the figure keys always were)."""
    import hashlib

    from probe.report import figcache

    frame = pd.DataFrame({"a": [1.0, np.nan, -0.0], "b": pd.array(["x", None, "z"], dtype="string"), "c": [1, 2, 3],
                          "a2": [4.0, 5.0, 6.0], "d": [True, False, True], "e": np.array([1, 2, 3], dtype=np.int32),
                          "f": pd.array([1, None, 3], dtype="Int64"), "o": ["p", 1, None],
                          "t": pd.to_datetime(["2020-01-01", "2021-01-01", "2022-01-01"])}).iloc[[2, 0, 1]]
    by_series = hashlib.sha256()
    by_series.update(b"frame")
    for part in ([str(c) for c in frame.columns], [str(t) for t in frame.dtypes], frame.index):
        figcache._update(by_series, part)
    for column in range(frame.shape[1]):
        figcache._update(by_series, frame.iloc[:, column])
    assert figcache.data_digest(frame) == by_series.hexdigest()
    assert figcache.data_digest(frame.assign(a2=[4.0, 5.0, 6.5])) != figcache.data_digest(frame)


def test_starts_with_equals_pandas_str_startswith():
    from probe.report.tables import starts_with

    metric = pd.Series(["n_group/0", "acc", "n_group/12", "n_groupx", "acc"] * 3, dtype="string")
    np.testing.assert_array_equal(starts_with(metric, "n_group/"),
                                  metric.astype(str).str.startswith("n_group/").to_numpy(dtype=bool))
