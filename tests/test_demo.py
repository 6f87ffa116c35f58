"""``probe demo --quick``: trains both sweeps, analyses them, and the report states every claim's verdict."""

from __future__ import annotations

import re
import time

import pytest

from probe.analyses.claims import CLAIMS, CONTROL_OUTCOMES, VERDICTS
from probe.analyses.engine import load_analysis
from probe.demo import QUICK, demo_paths, run_demo
from tests.browser import inspect_page, needs_chromium, overflowing_tables


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    """The quick demo, run once for the module: its result, what it printed and its output folder."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("demo")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        result = run_demo(out=out, quick=True, progress=False)
    return result, printed.getvalue(), out


@pytest.mark.slow
def test_quick_demo_reports_every_claim_with_and_without_control(quick_demo):
    result, printed, tmp_path = quick_demo
    ckpt, report_dir = demo_paths(tmp_path, QUICK)
    assert (ckpt / "fixed" / "sweep.json").is_file() and (ckpt / "matched" / "sweep.json").is_file()
    assert result.report == report_dir / "report.html" and result.report.is_file()
    assert f"report at {result.report}" in printed
    assert result.errors == []
    assert set(result.runs["budget"]) == {"fixed", "matched"}
    assert len(result.runs) == len(QUICK.rates) * len(QUICK.seeds) + len(QUICK.matched_rates) * len(QUICK.seeds)
    wide = result.verdicts()
    assert {"verdict_fixed", "verdict_matched", "survives_control"} <= set(wide.columns)
    text = result.report.read_text()
    for claim in CLAIMS:
        line = next(ln for ln in printed.splitlines() if ln.strip().startswith(claim.name))
        verdict = "|".join(VERDICTS)
        assert re.search(r"fixed steps: (%s); matched budget: (%s); fixed steps over the matched rates: (%s); "
                         r"survives the control: (%s)$" % (verdict, verdict, verdict, "|".join(CONTROL_OUTCOMES)),
                         line), line
        assert f"<b>{claim.name}</b>" in text  # the report's plain-language verdict list
    assert "Failed runs" in text
    # the representation and attribution panels (issues' acceptance: the demo report shows them)
    assert "Representations and compressibility" in text and "prune_curves.png" in str(result.files)
    assert "Attributions" in text
    assert any(k.startswith("figures/attribution_ig_") for k in result.files)
    for claim in ("retention_up", "class_separation_up", "probe_core_up", "activation_sparsity_up",
                  "core_attr_share_up"):
        assert claim in set(result.claims["claim"])
    # the analysis folder reads back into the same result type, instantly
    started = time.perf_counter()
    loaded = load_analysis(report_dir)
    assert time.perf_counter() - started < 1.0
    assert loaded.runs["run"].tolist() == result.runs["run"].tolist()
    assert loaded.verdicts()["verdict_fixed"].tolist() == wide["verdict_fixed"].tolist()
    assert loaded.report == result.report


@pytest.mark.slow
@pytest.mark.browser
@needs_chromium
def test_quick_demo_report_opens_with_the_verdicts_and_no_table_overflows(quick_demo):
    result = quick_demo[0]
    text = result.report.read_text()
    first = text.index("<section")
    assert text.index('<section id="verdicts">') == first  # the headline: the verdicts, then the chain
    assert first < text.index('<section id="chain">') < text.index('<section id="setup">')
    for width in (1280, 800):
        layout = inspect_page(result.report, width=width)["layout"]
        assert layout["page"] <= layout["viewport"] and overflowing_tables(layout) == [], (width, layout)
