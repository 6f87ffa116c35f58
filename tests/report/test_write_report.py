"""The report is a pure consumer: it draws an analysis result (even one read back from its folder, with the runs
gone) and attribution grids the engine computed; a figure that fails is recorded, not fatal; the notebook helpers."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from matplotlib.figure import Figure

from probe.analyses.engine import analyze, attribution_grids, load_analysis
from probe.analyses.engine.grids import AttributionGrid, AttributionGrids
from probe.report import plot_claims, plot_dynamics, plot_metric, plot_overview, plot_proposition, write_report
from tests.conftest import REPO


@pytest.fixture(scope="module")
def analysed(tiny_colored_sweep, tmp_path_factory):
    """An analysis of a copy of the tiny sweep (tests may delete the copy)."""
    root = tmp_path_factory.mktemp("consumer")
    sweep = shutil.copytree(tiny_colored_sweep, root / "colored", ignore=shutil.ignore_patterns(".lock"))
    return analyze(sweep, out=root / "analysis", model_epochs="last", progress=False,
                   options={"dfr_retrains": 0})  # DFR: tests/analyses/test_probes.py


def test_grids_are_computed_by_the_engine_and_drawn_by_the_report(analysed):
    grids = attribution_grids(analysed, methods=("ig", "saliency", "gradcam"), n=4)
    assert [g.method for g in grids.grids] == ["ig", "saliency"]  # an MLP: gradcam does not apply
    assert any("gradcam does not apply" in note for note in grids.notes)
    lrs = [[r.lr for r in g.rows] for g in grids.grids]
    assert lrs == [[0.01, 0.3], [0.01, 0.3]]  # one seed, rows ordered by rate
    assert all(r.values.shape == r.inputs.shape and len(r.index) == 4 for g in grids.grids for r in g.rows)
    path = write_report(analysed, grids)
    text = path.read_text()
    assert "Attributions" in text and "gradcam does not apply" in text
    assert {"figures/attribution_ig_colored.png", "figures/attribution_saliency_colored.png"} <= set(analysed.files)
    assert "Representations and compressibility" in text


def test_report_of_a_loaded_analysis_opens_no_run(analysed, tmp_path):
    folder = shutil.copytree(analysed.out, tmp_path / "copy", ignore=shutil.ignore_patterns("cache", "figures",
                                                                                           "report.html"))
    shutil.rmtree(analysed.config["path"])  # the runs are gone: drawing must not need them
    loaded = load_analysis(folder)
    path = write_report(loaded, AttributionGrids())
    assert path == folder / "report.html" and "Sweep overview" in path.read_text()
    assert loaded.errors == []
    assert (folder / "figures" / "overview.png").is_file()


def test_a_failing_figure_is_recorded_not_fatal(analysed, tmp_path, monkeypatch, capsys):
    loaded = load_analysis(analysed.out)
    import probe.report.write as report_writer

    def broken(*args, **kwargs):
        raise RuntimeError("no ink")

    monkeypatch.setattr(report_writer, "claims_forest", broken)
    bad_grid = AttributionGrid("colored", "fixed", "ig", "bc", 0, rows=["not attributions"])  # type: ignore[list-item]
    path = write_report(loaded, AttributionGrids([bad_grid]))
    failed = {e["analysis"] for e in loaded.errors}
    assert failed == {"figure claims", "panel attribution grids"}
    assert "no ink" in path.read_text() and "ERROR in figure claims" in capsys.readouterr().err
    with pytest.raises(RuntimeError, match="no ink"):
        write_report(load_analysis(analysed.out), strict=True)


def test_notebook_helpers_draw_a_result(analysed):
    for figure in (plot_overview(analysed), plot_metric(analysed, "unbiased_acc", "test"), plot_dynamics(analysed),
                   plot_proposition(analysed), plot_claims(analysed)):
        assert isinstance(figure, Figure) and figure.axes


def test_analyses_and_engine_import_no_report_or_cli():
    code = ("import sys, probe.analyses, probe.analyses.engine; from probe.analyses.base import load_analyses; "
            "load_analyses(); print(sorted(m for m in sys.modules if m.startswith(('probe.report', 'probe.cli'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert out.strip() == "[]"
