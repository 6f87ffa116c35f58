"""The report's proposition section and figure, on constructed tables whose window and shares are known."""

from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from probe.analyses.engine.result import EPOCH_COLUMNS, RATIO_COLUMNS, RUN_COLUMNS, STEPS_COLUMNS, AnalysisResult
from probe.report.figures import proposition_panels
from probe.report.html import analysis_sections
from probe.report.proposition import PROPOSITION_CAPTION, proposition_section_html

#: per run: lr, seed, and per epoch (applicable, n_ba_not_correct, n_bc_mispredicted).
RUNS = {
    "win": (0.5, 0, [(0, 4, 3), (1, 0, 3), (1, 0, 2), (1, 0, 2), (0, 0, 0)]),  # window: epochs 1-3
    "ba_errors": (0.5, 1, [(0, 9, 3), (0, 5, 2), (0, 1, 2), (0, 1, 1), (0, 2, 1)]),
    "no_bc_errors": (0.05, 0, [(0, 3, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0)]),
}
#: scale_share of the window steps of run "win" (1 -> 2 and 2 -> 3), with their totals.
SHARES, TOTALS = (0.25, 0.75), (2.0, 4.0)
FITTED = 0.987654  # a fitted_rate the report must never show


def _result(tmp_path: Path) -> AnalysisResult:
    epochs, steps, curves, runs = [], [], [], []
    for run, (lr, seed, per_epoch) in RUNS.items():
        ident = (run, "s", lr, seed, "fixed")
        for epoch, (app, ba_wrong, bc_wrong) in enumerate(per_epoch):
            values = {"applicable": app, "n_ba_not_correct": ba_wrong, "n_bc_mispredicted": bc_wrong,
                      "fitted_rate": FITTED if app else np.nan, "min_ba_margin": 0.3 if not ba_wrong else -0.2,
                      "convex": 1.0, "bound_correct_ok": 1.0, "bound_mispredicted_ok": 1.0}
            epochs += [(*ident, epoch, 100 * epoch, "proposition", "train", m, float(v)) for m, v in values.items()]
            for alpha in (0.1, 1.0, 10.0):
                phase = "final" if epoch == 4 else ("early" if epoch == 1 else "window")
                if app or phase != "window":
                    curves.append((*ident, phase, epoch, alpha, np.exp(alpha * (epoch + 1)), alpha * (epoch + 1)))
        for epoch in range(4):
            inside = run == "win" and epoch in (1, 2)
            total = TOTALS[epoch - 1] if inside else 1.0
            share = SHARES[epoch - 1] if inside else 0.9
            steps.append((*ident, epoch, epoch + 1, 100 * epoch, 100 * (epoch + 1), 0.0, total, share * total,
                          total, share * total, total - share * total, share, inside))
        runs.append({**dict.fromkeys(RUN_COLUMNS), "run": run, "sweep": "s", "lr": lr, "seed": seed,
                     "budget": "fixed", "status": "ok", "final_epoch": 4, "early_epoch": 1})
    return AnalysisResult(out=tmp_path, epochs=pd.DataFrame(epochs, columns=EPOCH_COLUMNS),
                          runs=pd.DataFrame(runs, columns=RUN_COLUMNS), claims=pd.DataFrame(),
                          failures=pd.DataFrame(), ratio_curves=pd.DataFrame(curves, columns=RATIO_COLUMNS),
                          proposition_steps=pd.DataFrame(steps, columns=STEPS_COLUMNS))


def _text(fragment: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", fragment)))


def _rows(fragment: str) -> dict[str, list[str]]:
    """Table rows keyed by their first cell, cells as text."""
    out = {}
    for row in re.findall(r"<tr>(.*?)</tr>", fragment):
        cells = [_text(c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
        if cells:
            out.setdefault(cells[0], cells)
    return out


def test_section_states_the_window_the_reasons_and_the_identity(tmp_path):
    page = proposition_section_html(_result(tmp_path))
    text = _text(page)
    rows = _rows(page)
    assert "epochs 1-3 (3 of 5 recorded)" in rows["win"]
    assert rows["ba_errors"][5] == ("it never applies in this run, because some BA training sample is not "
                                    "classified correctly at every recorded epoch (5)")
    assert rows["no_bc_errors"][5].endswith("because no BC training sample is mispredicted at any recorded epoch (5)")
    assert "identity of the definition" in text and "not present them as a finding" in text
    assert "applies at some recorded epoch in 1 of 3 run(s), with 3 window epoch(s) and 2 step(s)" in text
    assert f"{FITTED:.3f}"[:5] not in text  # no fitted rate anywhere


def test_section_decomposition_numbers(tmp_path):
    rows = _rows(proposition_section_html(_result(tmp_path)))
    win = rows["win"]  # run, lr, seed, budget, status, window, n_window_steps, median, pooled, log_r_change
    assert win[6] == "2"
    assert float(win[7]) == pytest.approx(np.median(SHARES))
    pooled = sum(s * t for s, t in zip(SHARES, TOTALS)) / sum(TOTALS)
    assert float(win[8]) == pytest.approx(pooled, abs=5e-4)
    assert float(win[9]) == pytest.approx(sum(TOTALS))
    assert rows["ba_errors"][6] == "0" and rows["ba_errors"][7] == "–"
    # across rates: "fixed" rows of the rate table (budget, lr, seeds, with window, steps, median, mean change)
    rate_rows = [r for r in re.findall(r"<tr>(.*?)</tr>", proposition_section_html(_result(tmp_path)))
                 if _text(r).split()[:1] == ["fixed"]]
    by_lr = {float(_text(r).split()[1]): _text(r).split() for r in rate_rows}
    assert by_lr[0.5][2:5] == ["2", "1", "2"] and float(by_lr[0.5][5]) == pytest.approx(np.median(SHARES))
    assert by_lr[0.05][2:6] == ["1", "0", "0", "–"]


def test_section_alerts_a_failed_implementation_check_and_handles_no_proposition(tmp_path):
    result = _result(tmp_path)
    flag = (result.epochs["metric"] == "convex") & (result.epochs["run"] == "win") & (result.epochs["epoch"] == 2)
    result.epochs.loc[flag, "value"] = 0.0
    text = _text(proposition_section_html(result))
    assert "implementation check of the premises failed at 1 (run, epoch) pair(s) (win epoch 2)" in text
    empty = AnalysisResult(out=tmp_path, epochs=pd.DataFrame(columns=EPOCH_COLUMNS),
                           runs=pd.DataFrame(columns=RUN_COLUMNS), claims=pd.DataFrame(), failures=pd.DataFrame(),
                           ratio_curves=pd.DataFrame(columns=RATIO_COLUMNS))
    assert "was not checked" in proposition_section_html(empty)


def test_html_uses_the_section_and_its_caption(tmp_path):
    result = _result(tmp_path)
    png = tmp_path / "p.png"
    png.write_bytes(b"\x89PNG")
    section = next(s for s in analysis_sections(result, {"proposition": png}) if s.title == "Proposition")
    assert section.html == proposition_section_html(result)
    assert section.figures == [(png, PROPOSITION_CAPTION)]
    assert "fitted" not in PROPOSITION_CAPTION


def test_panels_draw_the_window_and_the_shares(tmp_path):
    result = _result(tmp_path)
    fig = proposition_panels(result.ratio_curves, result.proposition, result.ratio_vs_norm, result.proposition_steps)
    ax_r, ax_share, ax_norm = fig.axes[:3]
    curves = [line for line in ax_r.lines if len(line.get_xdata()) == 3]
    assert len(curves) == 3  # run "win", epochs 1-3: only the window's epochs
    np.testing.assert_allclose(sorted(np.asarray(c.get_ydata(), float)[1] for c in curves), [2.0, 3.0, 4.0])
    drawn = [line for line in ax_share.lines if line.get_marker() == "o"]
    assert len(drawn) == 1
    np.testing.assert_allclose(np.asarray(drawn[0].get_xdata(), float), [0.5 * 200, 0.5 * 300])  # lr x step_to
    np.testing.assert_allclose(np.asarray(drawn[0].get_ydata(), float), SHARES)
    assert ax_share.get_xscale() == "log" and "rate x steps" in ax_share.get_xlabel()
    assert all("train split" in ax.get_title() for ax in (ax_r, ax_share, ax_norm))
    assert "scale_share" in ax_share.get_ylabel()

    no_steps = proposition_panels(result.ratio_curves, result.proposition, result.ratio_vs_norm)
    assert "proposition_steps not given" in no_steps.axes[1].texts[0].get_text()
    never = result.proposition.assign(applicable=0.0)
    fig = proposition_panels(result.ratio_curves, never, result.ratio_vs_norm, result.proposition_steps.iloc[:0])
    assert "applies at no recorded epoch" in fig.axes[0].get_title()
    assert all(line.get_linestyle() == ":" for line in fig.axes[0].lines if len(line.get_xdata()) == 3)
    assert "no step between two epochs of a window" in fig.axes[1].texts[0].get_text()
