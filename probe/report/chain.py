"""The report's section on the mechanism chain: the per-link sweep table and one sentence per link
(:mod:`probe.analyses.chain` defines the statistics)."""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING, Any

import pandas as pd

from probe.report.tables import table_html

if TYPE_CHECKING:
    from probe.analyses.engine.result import AnalysisResult

__all__ = ["chain_section_html", "link_sentence"]

#: CSS class of each verdict badge (the report's verdict colours: holds like agrees, fails like disagrees).
_BADGE = {"holds": "v-agrees", "fails": "v-disagrees", "cannot tell": "v-cannot-tell", "not measurable": "v-n-a"}
_BUDGET = {"fixed": "fixed steps", "matched": "matched budget"}


def _badge(verdict: str) -> str:
    return f'<span class="verdict {_BADGE.get(verdict, "v-n-a")}">{html.escape(str(verdict))}</span>'


def _num(value: Any, digits: int = 3) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "–"
    return f"{v:.{digits}g}" if math.isfinite(v) else "–"


def _count(value: Any) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "–"
    return str(int(v)) if math.isfinite(v) else "–"


def link_sentence(row: Any) -> str:
    """One plain sentence (no HTML) on a row of the ``chain`` table: whether the link holds, with its statistic."""
    head = f"Link {int(row['link'])} ({_BUDGET.get(row['budget'], row['budget'])}): {row['verdict']}."
    if int(row["link"]) == 1:
        if row["verdict"] == "not measurable":
            return (f"{head} Fewer than two rates have an early logit-norm growth measured at equal distance "
                    f"({_count(row['n_not_measurable'])} of {_count(row['n_runs'])} ok runs not measurable).")
        return (f"{head} Spearman correlation of the early logit-norm growth per unit distance with the rate "
                f"{_num(row['value'], 2)}, one-sided permutation p = {_num(row['p_value'], 2)}, over "
                f"{int(row['n_runs']) - int(row['n_not_measurable'])} ok run(s).")
    decisive = int(row["n_hold"]) + int(row["n_fail"])
    text = (f"{head} {_count(row['n_hold'])} ok run(s) hold, {_count(row['n_fail'])} fail, "
            f"{_count(row['n_cannot_tell'])} cannot tell and {_count(row['n_not_measurable'])} are not measurable")
    if decisive:
        text += f"; sign test over the {decisive} decisive run(s): one-sided p = {_num(row['p_value'], 2)}."
    else:
        text += "; no run is decisive."
    if row["verdict"] != "holds" and 0 < decisive < 5:
        text += " (At least 5 decisive runs, all holding, are needed for p <= 0.05.)"
    return text


def chain_section_html(result: AnalysisResult) -> str:
    """The body of the report's section on the mechanism chain: what each link says, the per-link sweep table
    (``result.chain``) and a sentence per link; the per-run verdicts are in ``chain_runs.csv``."""
    chain = getattr(result, "chain", None)
    if chain is None or len(chain) == 0:
        return "<p>The mechanism chain was not computed (no run, or no training split recorded).</p>"
    links = chain.drop_duplicates("link").sort_values("link")
    items = "".join(f"<li><b>{int(r['link'])}.</b> {html.escape(str(r['description']))}</li>"
                    for _, r in links.iterrows())
    frame = pd.DataFrame({
        "budget": [_BUDGET.get(b, b) for b in chain["budget"]],
        "link": chain["link"].astype(int),
        "verdict": chain["verdict"],
        "statistic": chain["statistic"],
        "value": chain["value"],
        "p": chain["p_value"],
        "ok runs": chain["n_runs"],
        "hold": chain["n_hold"], "fail": chain["n_fail"], "cannot tell": chain["n_cannot_tell"],
        "not measurable": chain["n_not_measurable"], "excluded": chain["n_excluded"],
    })
    counts = {c: _count for c in ("ok runs", "hold", "fail", "cannot tell", "not measurable", "excluded")}
    table = table_html(frame, formatters={"verdict": _badge, "value": _num, "p": _num, **counts},
                       link_header=False, text_columns=("budget", "statistic"))
    sentences = "".join(f"<li>{html.escape(link_sentence(r))}</li>" for _, r in chain.iterrows())
    return ("<p>The study's mechanism as four links, each a statistic with a verdict, on the distance axis "
            "lr x step (the rate times the step, so that rates are compared at equal distance). Only runs with "
            "status <code>ok</code> count; per run, every link's statistic and verdict is in "
            "<code>chain_runs.csv</code>. Links 3 and 4 are lags between recorded curves: a lag smaller than the "
            "spacing of the recorded points there is <i>cannot tell</i>. Across runs, links 2-4 use a one-sided "
            "sign test over the runs with a decisive result.</p>"
            f"<ul>{items}</ul>{table}<h3>In words</h3><ul>{sentences}</ul>")
