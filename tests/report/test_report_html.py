"""report.html in a real headless Chromium (tests/browser.py): no console error, every image loaded, nothing fetched
from the network, no table wider than the page; and the page's structure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from probe.analyses.engine import analyze, attribution_grids
from probe.report.figures import save_figure
from probe.report.html import Section, render_page, table_html
from probe.report.write import write_report
from tests.browser import inspect_page, needs_chromium, overflowing_tables


@pytest.fixture(scope="module")
def report(tiny_colored_sweep, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "colored"
    result = analyze(tiny_colored_sweep, out=out, model_epochs="none", progress=False)
    path = write_report(result, attribution_grids(result))
    assert result.errors == []
    return path


@pytest.mark.slow
@pytest.mark.browser
@needs_chromium
def test_report_loads_cleanly_in_chromium(report):
    page = inspect_page(report)
    assert page["errors"] == []
    assert page["title"].startswith("probe analyze")
    assert len(page["images"]) >= 4  # overview, claims, dynamics, proposition
    broken = [i for i in page["images"] if not i["complete"] or i["width"] == 0]
    assert broken == []
    assert all(i["src"].startswith("data:image/png;base64") for i in page["images"])
    assert all(u.startswith(("file:", "data:")) for u in page["requests"]), page["requests"]
    assert page["layout"]["page"] <= page["layout"]["viewport"]  # no horizontal scroll bar on the page
    assert overflowing_tables(page["layout"]) == []
    narrow = inspect_page(report, width=800)["layout"]  # a laptop window split in two
    assert narrow["page"] <= narrow["viewport"] and overflowing_tables(narrow) == []


@pytest.mark.browser
@needs_chromium
def test_overflow_check_catches_a_table_wider_than_the_page(tmp_path):
    wide = pd.DataFrame({f"column_{i}": ["a long cell value " * 3] for i in range(12)})
    cut = render_page("too wide", [Section("a", wide.to_html())])  # a bare table: no scrolling container
    (tmp_path / "cut.html").write_text(cut)
    layout = inspect_page(tmp_path / "cut.html", width=800)["layout"]
    assert overflowing_tables(layout) and layout["page"] > layout["viewport"]
    scrolled = render_page("scrolls", [Section("a", table_html(wide))])
    (tmp_path / "ok.html").write_text(scrolled)
    assert overflowing_tables(inspect_page(tmp_path / "ok.html", width=800)["layout"]) == []


@needs_chromium
def test_checker_catches_console_errors_and_broken_images(tmp_path):
    fig_path = save_figure(_tiny_figure(), tmp_path / "ok.png")
    page = render_page("broken on purpose", [Section("a", '<img src="missing.png" alt="gone">'
                                                          '<script>console.error("bad thing")</script>',
                                                     [(fig_path, "fine")])])
    path = tmp_path / "broken.html"
    path.write_text(page)
    seen = inspect_page(path)
    assert any("bad thing" in e for e in seen["errors"])
    widths = sorted(i["width"] for i in seen["images"])
    assert widths[0] == 0 and widths[1] > 0


def _tiny_figure():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 2))
    fig.subplots().plot([0, 1], [1, 0])
    return fig


def test_page_is_self_contained_and_links_metrics(report):
    text = report.read_text()
    assert "<script" not in text and "http://" not in text and "https://" not in text
    assert 'href="#metric-unbiased-acc"' in text and 'id="metric-unbiased-acc"' in text
    # every in-page link has its target
    import re

    targets = set(re.findall(r'id="([^"]+)"', text))
    assert set(re.findall(r'href="#([^"]+)"', text)) <= targets
    for heading in ("Verdicts", "Sweep overview", "Failed runs", "Dynamics", "Proposition", "Metric glossary"):
        assert f">{heading}</h2>" in text
    # the headline first: the first section is the verdicts, before any figure of the sweep
    assert text.index("<section") == text.index('<section id="verdicts">')
    assert text.index("Verdicts</h2>") < text.index("Sweep overview</h2>") < text.index("Dynamics</h2>") \
        < text.index("Proposition</h2>")


def test_extra_sections_and_tables():
    frame = pd.DataFrame({"run": ["a<b"], "wga": [0.5], "x": [np.nan]})
    html_table = table_html(frame, text_columns=("run",))
    assert "a&lt;b" in html_table and 'href="#metric-wga"' in html_table and "–" in html_table
    page = render_page("t", [Section("Heatmaps", "<p>grid</p>", [(_tiny_figure(), "a grid")])])
    assert page.count("data:image/png;base64,") == 1 and 'id="heatmaps"' in page
