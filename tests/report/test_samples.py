"""The report's sample-size section on constructed analysis results whose counts are known."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd

from probe.analyses.engine.result import AnalysisResult
from probe.report.samples import final_counts, samples_section_html


class _Checker(HTMLParser):
    """Collects table cell texts and checks that every opened tag is closed in order."""

    VOID = {"br", "img", "meta"}

    def __init__(self):
        super().__init__()
        self.stack, self.cells, self.rows, self._cell = [], [], [], None

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)
        if tag == "tr":
            self.rows.append([])
        if tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        self.stack.pop()
        if tag in ("td", "th"):
            self.rows[-1].append(self._cell.strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def _parse(text: str) -> _Checker:
    checker = _Checker()
    checker.feed(text)
    checker.close()
    assert checker.stack == []
    return checker


def _rows(run, budget, lr, seed, epoch, split, metrics):
    return [{"run": run, "sweep": "s", "lr": lr, "seed": seed, "budget": budget, "epoch": epoch, "step": epoch * 10,
             "analysis": "groups", "split": split, "metric": k, "value": float(v)} for k, v in metrics.items()]


def _group_metrics(sizes, n_bc, min_size=20):
    sizes = np.asarray(sizes)
    used = sizes >= min_size
    return {"n": sizes.sum(), "n_ba": sizes.sum() - n_bc, "n_bc": n_bc, "wga_groups_used": used.sum(),
            "wga_groups_excluded": ((sizes > 0) & ~used).sum(),
            "wga_min_group_n": sizes[used].min() if used.any() else np.nan,
            **{f"n_group/{g}": s for g, s in enumerate(sizes)}}


#: the demo's unbiased test split: 100 groups of 2..12 samples (identical in every run).
TEST_SIZES = np.random.default_rng(0).integers(2, 13, 100)
#: a biased training split of 4 groups whose BC groups differ by run.
TRAIN_SIZES = {"r1": [120, 4, 5, 110], "r2": [118, 6, 5, 110], "r<3>": [121, 4, 4, 110]}


def _result(tmp_path: Path, options=None) -> AnalysisResult:
    rows = []
    runs = []
    for run, lr in (("r1", 0.01), ("r2", 0.1), ("r<3>", 1.0)):
        rows += _rows(run, "fixed", lr, 0, 3, "test", _group_metrics(TEST_SIZES, 40))
        rows += _rows(run, "fixed", lr, 0, 3, "train", _group_metrics(TRAIN_SIZES[run], sum(TRAIN_SIZES[run][1:3])))
        rows += _rows(run, "fixed", lr, 0, 0, "test", _group_metrics(TEST_SIZES + 50, 40))  # not the final epoch
        rows += [{**r, "analysis": "pruning"} for r in _rows(run, "fixed", lr, 0, 3, "test", {"n_pruning": 700})]
        runs.append({"run": run, "lr": lr, "seed": 0, "budget": "fixed", "status": "ok", "final_epoch": 3})
    # a diverged run with other counts is left out
    rows += _rows("bad", "fixed", 10.0, 0, 1, "test", _group_metrics(TEST_SIZES * 3, 7))
    runs.append({"run": "bad", "lr": 10.0, "seed": 0, "budget": "fixed", "status": "diverged", "final_epoch": 1})
    # matched budget: one run, a test split whose groups are large enough
    rows += _rows("m<1>", "matched", 0.1, 0, 2, "test", _group_metrics([30, 25, 19, 0], 44))
    runs.append({"run": "m<1>", "lr": 0.1, "seed": 0, "budget": "matched", "status": "ok", "final_epoch": 2})
    empty = pd.DataFrame()
    config = {"options": {"min_group_size": 20} if options is None else options}
    return AnalysisResult(out=tmp_path, epochs=pd.DataFrame(rows), runs=pd.DataFrame(runs), claims=empty,
                          failures=empty, ratio_curves=empty, config=config)


def test_final_counts_take_the_final_epoch_of_ok_runs(tmp_path):
    counts = final_counts(_result(tmp_path))
    assert set(counts["run"]) == {"r1", "r2", "r<3>", "m<1>"}
    test = counts[(counts["split"] == "test") & (counts["budget"] == "fixed")]
    assert (test["n"] == TEST_SIZES.sum()).all() and (test["n_pruning"] == 700).all()
    assert (test["n_group/7"] == TEST_SIZES[7]).all()
    train = counts[counts["split"] == "train"].set_index("run")
    for run, sizes in TRAIN_SIZES.items():
        assert train.loc[run, "n_bc"] == sizes[1] + sizes[2]


def test_section_shows_identical_counts_once_and_differing_ones_per_run(tmp_path):
    text = samples_section_html(_result(tmp_path))
    page = _parse(text)
    tables = page.rows
    # fixed budget, test split: identical in the three ok runs -> one row
    header = next(r for r in tables if r[:1] == ["runs"] and "n_pruning" in r)
    row = tables[tables.index(header) + 1]
    values = dict(zip(header, row))
    assert values["runs"] == "all 3 run(s)"
    assert values["n"] == str(TEST_SIZES.sum()) and values["n_bc"] == "40" and values["n_pruning"] == "700"
    assert values["wga_groups_used"] == "0" and values["wga_groups_excluded"] == "100"
    assert values["wga_min_group_n"] == "–"
    # fixed budget, train split: BC groups differ by run -> one row per run, and the page says so
    header = next(r for r in tables if r[:1] == ["run"])
    per_run = {r[0]: dict(zip(header, r)) for r in tables[tables.index(header) + 1: tables.index(header) + 4]}
    assert set(per_run) == {"r1", "r2", "r<3>"}
    for run, sizes in TRAIN_SIZES.items():
        assert per_run[run]["n_bc"] == str(sizes[1] + sizes[2])
        assert per_run[run]["wga_min_group_n"] == str(min(s for s in sizes if s >= 20))
    assert "differ across runs" in text and "differ across the 3 runs" in text
    # the diverged run and the non-final epoch never show
    assert str((TEST_SIZES * 3).sum()) not in text and str((TEST_SIZES + 50).sum()) not in text
    assert "bad" not in text


def test_groups_left_out_are_listed_with_their_sizes(tmp_path):
    text = samples_section_html(_result(tmp_path))
    fixed = text.split("matched budget")[0]
    test_part = fixed.split("split <code>test</code>")[1].split("split <code>")[0]
    listed = re.search(r"left out of <code>wga</code> \(fewer than 20\): (.*?)</li>", test_part).group(1)
    expected = ", ".join(f"{g} ({s})" for g, s in enumerate(TEST_SIZES))
    assert listed == expected
    assert "is NaN in 3 of 3 run(s): no group has 20 samples (the largest has 12)" in test_part
    # train split of the fixed budget: ranges over runs, and the few BC samples are pointed out
    train_part = fixed.split("split <code>train</code>")[1]
    assert "0 (118-121)" in train_part and "1 (4-6)" in train_part and "2 (4-5)" in train_part
    assert "as few as 8 BC samples" in train_part and "steps of 1/8" in train_part
    # matched budget: group 2 (19 samples) left out, group 3 empty; run names are escaped
    matched = text.split("matched budget")[1]
    assert re.search(r"used by <code>wga</code> \(at least 20 samples\): 0 \(30\), 1 \(25\)</li>", matched)
    assert "(fewer than 20): 2 (19)</li>" in matched and "empty: 3 (0)" in matched
    assert "r<3>" not in text and "r&lt;3&gt;" in text  # escaped


def test_min_group_size_comes_from_the_analysis_options(tmp_path):
    text = samples_section_html(_result(tmp_path, options={"min_group_size": 5}))
    assert "<code>min_group_size</code> = 5 samples" in text
    assert "(fewer than 5)" in text
    unrecorded = samples_section_html(_result(tmp_path, options={}))
    assert "= 20 (not recorded in this analysis; the default) samples" in unrecorded


def test_section_without_counts(tmp_path):
    empty = pd.DataFrame()
    result = AnalysisResult(out=tmp_path, epochs=pd.DataFrame(columns=["run", "epoch", "split", "metric", "value"]),
                            runs=pd.DataFrame(), claims=empty, failures=empty, ratio_curves=empty)
    assert "No sample counts were recorded" in samples_section_html(result)
