"""The result type: the files ``analyze`` writes, reading an analysis folder back (:func:`load_analysis`), the
text summary."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import pandas as pd
import pytest

from probe.analyses.claims import CLAIMS
from probe.analyses.engine import AnalysisResult, analyze, load_analysis, summary_text
from probe.analyses.engine.result import TABLE_FILES, claims_wide
from probe.errors import RunDirectoryError
from tests.analyses.engine.helpers import strict_json
from tests.conftest import REPO


@pytest.fixture(scope="module")
def written(tiny_colored_sweep, tmp_path_factory) -> AnalysisResult:
    out = tmp_path_factory.mktemp("result") / "colored"
    return analyze(tiny_colored_sweep, out=out, model_epochs="none", progress=False)


def test_load_analysis_reads_back_the_same_tables(written, tmp_path):
    # a copy of the folder, without the runs it analysed: nothing is recomputed and no run is opened
    folder = shutil.copytree(written.out, tmp_path / "copy", ignore=shutil.ignore_patterns("cache"))
    started = time.perf_counter()
    loaded = load_analysis(folder)
    assert time.perf_counter() - started < 1.0
    assert isinstance(loaded, AnalysisResult) and loaded.out == folder
    for attribute in TABLE_FILES.values():
        ours, theirs = getattr(loaded, attribute), getattr(written, attribute)
        assert list(ours.columns) == list(theirs.columns), attribute
        assert len(ours) == len(theirs), attribute
    pd.testing.assert_series_equal(loaded.epochs["value"], written.epochs["value"])
    pd.testing.assert_frame_equal(loaded.runs[["run", "lr", "seed", "status"]], written.runs[["run", "lr", "seed",
                                                                                               "status"]])
    assert loaded.config == strict_json(written.out / "metrics.json")["config"]
    assert loaded.sources == written.sources and loaded.errors == written.errors == []
    assert set(loaded.files) == set(TABLE_FILES) | {"metrics.json"}
    pd.testing.assert_frame_equal(loaded.verdicts()[["claim", "verdict_fixed"]],
                                  written.verdicts()[["claim", "verdict_fixed"]])
    assert summary_text(loaded) == summary_text(written)


def test_load_analysis_imports_neither_torch_nor_h5py(written):
    """Reading an analysis back is a table read: a fresh process that does only that never loads torch or h5py
    (which take most of a second to import)."""
    script = (f"import sys, probe; result = probe.load_analysis({str(written.out)!r}); "
              "print(len(result.runs), 'torch' in sys.modules, 'h5py' in sys.modules)")
    shown = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert shown.stdout.split() == [str(len(written.runs)), "False", "False"]


def test_load_analysis_refuses_a_folder_without_metrics_json(tmp_path):
    with pytest.raises(RunDirectoryError, match="no metrics.json"):
        load_analysis(tmp_path)


def test_summary_names_every_claim_and_the_failed_runs(written):
    text = written.summary()
    assert text.startswith("claims (does the sweep agree with the study?")
    for claim in CLAIMS:
        assert f"  {claim.name}" in text
    failed = written.failures
    if len(failed):
        assert all(f"failed run {r}" in text for r in failed["run"])
    else:
        assert "no run diverged or collapsed" in text


def test_claims_wide_puts_budgets_side_by_side():
    claims = pd.DataFrame({"claim": ["a", "a"], "column": ["c", "c"], "description": ["d", "d"],
                           "budget": ["fixed", "matched"], "verdict": ["agrees", "disagrees"],
                           "spearman": [0.9, -0.5], "ci_low": [0.1, -0.9], "ci_high": [1.0, 0.1],
                           "p_value": [0.01, 0.3], "n_rates": [3, 2], "n_runs": [6, 4], "n_excluded": [0, 1]})
    wide = claims_wide(claims)
    assert wide.loc[0, "verdict_fixed"] == "agrees" and wide.loc[0, "verdict_matched"] == "disagrees"
    assert wide.loc[0, "n_excluded_matched"] == 1


def test_words_such_as_n_a_survive_the_csv_round_trip(written, tmp_path):
    """pandas reads "n/a" as a missing value by default; the control's outcome "n/a" must come back as a word, and
    the empty cells of numeric columns as NaN."""
    folder = shutil.copytree(written.out, tmp_path / "copy", ignore=shutil.ignore_patterns("cache"))
    written.claims.assign(survives_control="n/a").to_csv(folder / "claims.csv", index=False)
    loaded = load_analysis(folder)
    assert (loaded.claims["survives_control"] == "n/a").all()
    assert loaded.claims["p_value"].dtype.kind == "f" and loaded.claims["p_value"].isna().any()
