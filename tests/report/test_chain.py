"""The mechanism chain in the report: the section's table and sentences, and the figure's curves, on constructed
tables whose answer is known."""

from __future__ import annotations

import io
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from probe.analyses.chain import CHAIN_COLUMNS, LINKS, mechanism_chain
from probe.report.chain import chain_section_html, link_sentence
from probe.report.figures import chain_figure

CURVES = {("train", "logit_norm"): lambda d: 1 + d, ("train", "cmr@0.9"): lambda d: 1 / (1 + np.exp(-(d - 5))),
          ("sgd", "bc_loss_share"): lambda d: np.exp(-((d - 9) / 3) ** 2),
          ("train", "acc_bc"): lambda d: 1 / (1 + np.exp(-(d - 13)))}


def sweep_tables(rates=(0.1, 0.3), seeds=(0, 1), statuses=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Runs recorded every 10 steps up to distance 20; each curve a function of the distance lr x step (plus the
    seed, for the logit norm); ``statuses[(lr, seed)]`` overrides ``ok``."""
    rows, runs = [], []
    statuses = statuses or {}
    for lr in rates:
        for seed in seeds:
            name = f"lr{lr}_s{seed}"
            n = int(round(20 / (lr * 10)))
            for epoch in range(n + 1):
                step = 10 * epoch
                for (split, metric), f in CURVES.items():
                    if split == "sgd" and epoch == 0:
                        continue
                    d = lr * (step - 5 if split == "sgd" else step)
                    value = f(d) + (0.1 * seed * d if metric == "logit_norm" else 0.0)
                    rows.append({"run": name, "sweep": "s", "lr": lr, "seed": seed, "budget": "matched",
                                 "epoch": epoch, "step": step, "analysis": "x", "split": split, "metric": metric,
                                 "value": float(value)})
            runs.append({"run": name, "sweep": "s", "lr": lr, "seed": seed, "budget": "matched",
                         "status": statuses.get((lr, seed), "ok")})
    return pd.DataFrame(rows), pd.DataFrame(runs)


def result_of(epochs: pd.DataFrame, runs: pd.DataFrame) -> SimpleNamespace:
    chain, chain_runs = mechanism_chain(epochs, runs)
    return SimpleNamespace(chain=chain, chain_runs=chain_runs, epochs=epochs, runs=runs)


def test_section_table_has_a_row_per_link_with_its_verdict_and_counts():
    result = result_of(*sweep_tables())
    page = chain_section_html(result)
    body = page.split("<tbody>")[1].split("</tbody>")[0]
    rows = re.findall(r"<tr>(.*?)</tr>", body)
    assert len(rows) == len(LINKS)
    for row, (_, expected) in zip(rows, result.chain.iterrows()):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
        assert cells[1] == str(expected["link"])
        assert f">{expected['verdict']}<" in cells[2]
        assert cells[6] == str(int(expected["n_runs"]))
    for link in LINKS:
        assert link.description in page
    assert page.count("<li>Link ") == len(LINKS)


def test_sentences_state_the_verdict_and_the_statistic():
    result = result_of(*sweep_tables())
    row = {link: r for link, (_, r) in zip(result.chain["link"], result.chain.iterrows())}
    lag = row[4]
    assert (lag["n_hold"], lag["verdict"]) == (4, "cannot tell")  # 4 of 4 hold: sign test p = 1/16
    text = link_sentence(lag)
    assert text.startswith("Link 4 (matched budget): cannot tell.")
    assert "4 ok run(s) hold, 0 fail" in text and "p = 0.062" in text and "At least 5 decisive runs" in text
    rho = link_sentence(row[1])
    assert np.isfinite(row[1]["value"])
    assert f"{row[1]['value']:.2g}" in rho and f"p = {row[1]['p_value']:.2g}" in rho


def test_section_without_a_chain_says_so():
    empty = SimpleNamespace(chain=pd.DataFrame(columns=CHAIN_COLUMNS))
    assert "not computed" in chain_section_html(empty)


def test_section_escapes_text():
    result = result_of(*sweep_tables())
    result.chain.loc[0, "description"] = "<script>x</script>"
    page = chain_section_html(result)
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_figure_draws_the_four_rescaled_curves_per_rate_averaged_over_ok_seeds():
    epochs, runs = sweep_tables(statuses={(0.3, 1): "diverged"})
    fig = chain_figure(epochs, runs)
    axes = [ax for ax in fig.axes if ax.lines]
    assert len(axes) == 2  # one panel per rate
    for ax, lr in zip(axes, (0.1, 0.3)):
        assert ax.get_xscale() == "log" and f"lr {lr:g}" in ax.get_title()
        assert [line.get_label() for line in ax.lines] == [f"{s}/{m}" for s, m in CURVES]
        norm = ax.lines[0]  # logit_norm: rescaled per run, then the mean over the rate's ok runs
        x, y = norm.get_data()
        d = np.arange(1, len(x) + 1) * lr * 10
        assert np.allclose(x, d)
        seeds = (0,) if lr == 0.3 else (0, 1)
        per_run = [((1 + d + 0.1 * s * d) - 1) / (d[-1] + 0.1 * s * d[-1]) for s in seeds]
        assert np.allclose(y, np.mean(per_run, axis=0))
        assert np.nanmin(y) >= 0 and np.nanmax(y) <= 1
        assert "mean of 1 run" in ax.get_title() if lr == 0.3 else "mean of 2 run" in ax.get_title()
    assert "[0, 1]" in axes[0].get_ylabel()
    assert "train" in fig._suptitle.get_text() and "SGD" in fig._suptitle.get_text()
    png = io.BytesIO()
    fig.savefig(png, format="png")
    assert Image.open(io.BytesIO(png.getvalue())).size[0] > 500


def test_figure_without_data_says_so():
    epochs, runs = sweep_tables()
    fig = chain_figure(epochs.iloc[:0], runs)
    assert any("no ok run" in t.get_text() for ax in fig.axes for t in ax.texts)


@pytest.mark.parametrize("status", ["diverged", "collapsed"])
def test_failed_runs_leave_the_figure(status):
    epochs, runs = sweep_tables(rates=(0.1,), seeds=(0,), statuses={(0.1, 0): status})
    fig = chain_figure(epochs, runs)
    assert not any(ax.lines for ax in fig.axes)
