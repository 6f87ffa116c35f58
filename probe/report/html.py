"""One self-contained HTML page: a list of sections, each a title, some HTML and PNG figures.

:func:`render_page` embeds every figure as a base64 ``data:image/png`` URI and the style sheet inline; the page
loads nothing from the network and runs no script. :func:`analysis_sections` builds the sections of a
``probe analyze`` report (the verdicts first, then setup, sweep overview, failed runs, dynamics, proposition, runs,
errors, glossary);
:func:`probe.report.write.write_report` assembles them with the figures and panels into ``report.html``.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from probe.report.chain import chain_section_html
from probe.report.glossary import glossary_html, metric_link, metric_of
from probe.report.proposition import PROPOSITION_CAPTION, proposition_section_html
from probe.report.samples import samples_section_html
from probe.report.tables import badge as _badge
from probe.report.tables import fmt as _fmt
from probe.report.tables import table_html

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from probe.analyses.engine.result import AnalysisResult

__all__ = ["Section", "analysis_sections", "figure_data_uri", "glossary_section", "render_page", "table_html"]

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0 auto; max-width: 1300px;
       padding: 1.5em 2em 4em; color: #212121; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #e0e0e0; padding-bottom: 0.2em;
     margin-top: 2em; } h3 { margin-bottom: 0.3em; }
nav { background: #f5f5f5; padding: 0.5em 1em; border-radius: 6px; font-size: 0.92em; }
nav a { margin-right: 1.1em; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eeeeee; }
figcaption { font-size: 0.88em; color: #555; }
table { border-collapse: collapse; font-size: 0.86em; margin: 0.6em 0 1em; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: right; vertical-align: top; }
th { background: #fafafa; } td.text, th.text { text-align: left; }
.verdict { font-weight: 600; padding: 1px 6px; border-radius: 4px; white-space: nowrap; }
.v-agrees, .v-yes { background: #e8f5e9; color: #1b5e20; } .v-disagrees, .v-no { background: #ffebee; color: #b71c1c; }
.v-cannot-tell { background: #f5f5f5; color: #424242; } .v-not-measurable, .v-n-a { color: #9e9e9e; }
.v-no-effect, .v-vanishes { background: #e3f2fd; color: #0d47a1; } .v-reverses { background: #ffebee; color: #b71c1c; }
td.reason { min-width: 14em; max-width: 22em; font-size: 0.92em; color: #424242; }
table.claims { font-size: 0.8em; }
ul.headline li { margin: 0.25em 0; }
.s-diverged { color: #b71c1c; font-weight: 600; } .s-collapsed { color: #e65100; font-weight: 600; }
.s-incomplete, .s-empty { color: #6d4c41; font-weight: 600; }
.alert { background: #ffebee; border-left: 5px solid #c62828; padding: 0.6em 1em; }
.note { background: #f1f8e9; border-left: 5px solid #7cb342; padding: 0.6em 1em; }
a.metric { text-decoration: none; border-bottom: 1px dotted #1565c0; } code { font-size: 0.95em; }
dl.glossary dt { margin-top: 0.6em; font-weight: 600; } dl.glossary dd { margin-left: 1.5em; }
.wide { overflow-x: auto; max-width: 100%; }
.doc { color: #616161; font-size: 0.9em; } pre { background: #fafafa; padding: 0.5em; overflow-x: auto;
     font-size: 0.8em; }
"""


@dataclass
class Section:
    """One section of the page.

    Attributes:
        title: heading (also the navigation entry).
        html: body HTML, inserted as is (escape user text with :func:`html.escape`).
        figures: ``(figure, caption)`` pairs: a :class:`matplotlib.figure.Figure`, PNG bytes, or a PNG file path.
        anchor: id of the section (default: from the title).
    """

    title: str
    html: str = ""
    figures: list[tuple[Any, str]] = field(default_factory=list)
    anchor: str = ""

    def __post_init__(self) -> None:
        if not self.anchor:
            self.anchor = "".join(c if c.isalnum() else "-" for c in self.title.lower()).strip("-")


def figure_data_uri(figure: Figure | bytes | str | Path, dpi: int = 110) -> str:
    """``data:image/png;base64,...`` of a figure, PNG bytes or a PNG file."""
    if hasattr(figure, "savefig"):  # a matplotlib Figure (matplotlib is imported only when one is drawn)
        buf = io.BytesIO()
        figure.savefig(buf, format="png", dpi=dpi)
        data = buf.getvalue()
    elif isinstance(figure, bytes):
        data = figure
    else:
        data = Path(figure).read_bytes()
    if not data.startswith(b"\x89PNG"):
        raise ValueError("figures must be PNG images")
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def render_page(title: str, sections: Sequence[Section], intro: str = "") -> str:
    """The complete HTML page: title, navigation, ``intro`` HTML, then each section with its figures."""
    nav = " ".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in sections)
    body = []
    for s in sections:
        figs = "".join(
            f'<figure><img src="{figure_data_uri(fig)}" alt="{html.escape(caption or s.title)}">'
            + (f"<figcaption>{caption}</figcaption>" if caption else "") + "</figure>"
            for fig, caption in s.figures
        )
        body.append(f'<section id="{s.anchor}"><h2>{html.escape(s.title)}</h2>{s.html}{figs}</section>')
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{html.escape(title)}</h1>{intro}<nav>{nav}</nav>{''.join(body)}</body></html>\n")


# --- tables --------------------------------------------------------------------------------------------------------


# --- the analyze report --------------------------------------------------------------------------------------------


def _setup_html(result: AnalysisResult) -> str:
    setup = result.config.get("setup", {})
    parts = []
    for src in result.sources:
        label = "fixed steps" if src["budget"] == "fixed" else "matched budget (rate x steps held fixed)"
        parts.append(f"<li><code>{html.escape(src['path'])}</code>: {html.escape(src['kind'])}, {label}, "
                     f"{len(src['runs'])} run(s)</li>")
    runs = result.runs
    lrs = ", ".join(f"{v:g}" for v in sorted(runs["lr"].unique())) if len(runs) else "–"
    seeds = ", ".join(str(int(v)) for v in sorted(runs["seed"].dropna().unique())) if len(runs) else "–"
    rows = [("dataset", f"{setup.get('dataset', '?')} {setup.get('dataset_options', '')}"),
            ("data source", setup.get("dataset_source", "?")),
            ("BA / BC rule", setup.get("bc_rule", "?")),
            ("model", f"{setup.get('model', '?')} {setup.get('model_options', '')}"),
            ("optimiser", f"{setup.get('optimizer', '?')}, batch size {setup.get('batch_size', '?')}, "
                          f"momentum {setup.get('momentum', '?')}, weight decay {setup.get('weight_decay', '?')}"),
            ("learning rates", lrs), ("seeds", seeds)]
    table = "".join(f"<tr><th class=\"text\">{html.escape(k)}</th><td class=\"text\">{html.escape(str(v))}</td></tr>"
                    for k, v in rows)
    counts = runs["status"].value_counts().to_dict() if len(runs) else {}
    status = ", ".join(f"{_badge(k, 's')} {v}" for k, v in counts.items())
    return f"<table>{table}</table><ul>{''.join(parts)}</ul><p>Runs by {metric_link('status')}: {status}.</p>"


SCOPE_LABELS = {("fixed", "all"): "fixed steps", ("matched", "all"): "matched budget",
                ("fixed", "matched"): "fixed steps, matched rates only"}


def _interval(low: Any, high: Any) -> str:
    return f" [{_fmt(low, 2)}, {_fmt(high, 2)}]" if np.isfinite(low) and np.isfinite(high) else ""


def _claim_rows(claim_rows: pd.DataFrame, control: str | None) -> str:
    """The table rows of one claim: one per judged scope, the claim's cell spanning them."""
    first = claim_rows.iloc[0]
    span = len(claim_rows)
    head = (f"<td class=\"text\" rowspan=\"{span}\"><b>{html.escape(first['claim'])}</b><br>"
            f"{metric_link(first['column'])}<br><span class=\"doc\">{html.escape(first['description'])}</span></td>")
    if control is not None:
        head += f"<td rowspan=\"{span}\">{_badge(control)}</td>"
    out = []
    for i, (_, r) in enumerate(claim_rows.iterrows()):
        scope = SCOPE_LABELS.get((r["budget"], r.get("rates", "all")), r["budget"])
        effect = "–"
        if np.isfinite(r["effect"]):
            effect = f"{_fmt(r['effect'], 3)}{_interval(r['effect_low'], r['effect_high'])}"
        slope = "–"
        if np.isfinite(r["slope"]):
            slope = f"{_fmt(r['slope'], 3)}{_interval(r['slope_low'], r['slope_high'])}"
        runs = f"{_fmt(r['n_rates'])} / {_fmt(r['n_runs'])} ({_fmt(r['min_seeds'])}; {_fmt(r['n_excluded'])})"
        samples = _fmt(r["min_samples"]) if np.isfinite(r.get("min_samples", np.nan)) else "–"
        cells = (f"<td class=\"text\">{html.escape(scope)}</td><td>{_badge(r['verdict'])}</td><td>{effect}</td>"
                 f"<td>{_fmt(r['effect_rate'])}</td><td>{_fmt(r['floor'], 3)}</td><td>{slope}</td>"
                 f"<td>{_fmt(r['spearman'], 2)}</td><td>{_fmt(r['p_adjusted'], 2)}</td><td>{runs}</td>"
                 f"<td>{samples}</td><td class=\"text reason\">{html.escape(str(r['reason']))}</td>")
        out.append("<tr>" + (head if i == 0 else "") + cells + "</tr>")
    return "".join(out)


def _claims_html(result: AnalysisResult) -> str:
    claims = result.claims
    if claims.empty:
        return "<p>No claims were evaluated (no run).</p>"
    has_control = "survives_control" in claims.columns
    head = ["<th class=\"text\">claim</th>"]
    if has_control:
        head.append(f"<th>{metric_link('survives_control', 'survives the control')}</th>")
    head += ["<th class=\"text\">judged on</th>", f"<th>{metric_link('verdict', 'verdict')}</th>",
             f"<th>{metric_link('effect', 'effect')} [95%]</th>", "<th>best lr (vs the lowest)</th>",
             "<th>floor</th>", "<th>slope per decade [95%]</th>",
             "<th>Spearman</th>", "<th>Holm-adjusted p</th>", "<th>rates / runs (fewest seeds; excluded)</th>",
             "<th>fewest samples per run</th>", "<th class=\"text\">why</th>"]
    body = []
    for _, part in claims.groupby("claim", sort=False):
        body.append(_claim_rows(part, part["survives_control"].iloc[0] if has_control else None))
    table = (f"<div class=\"wide\"><table class=\"claims\"><thead><tr>{''.join(head)}</tr></thead>"
             f"<tbody>{''.join(body)}</tbody></table></div>")
    n_tests = int(np.isfinite(claims["p_value"]).sum())
    notes = []
    if not has_control:
        notes.append("No matched-budget sweep was analysed, so no claim is checked against the control. Train one "
                     "with <code>probe sweep --budget matched --steps S ...</code> and run <code>probe analyze "
                     "FIXED_SWEEP --control MATCHED_SWEEP</code>.")
    if (claims["min_seeds"] == 1).any():
        notes.append("With one run per rate the effect's interval comes from the residuals of a straight line in "
                     "log rate, and three rates can never reach p <= 0.05 (the smallest one-sided permutation p is "
                     "1/6): add seeds.")
    notes_html = "".join(f"<p class=\"note\">{n}</p>" for n in notes)
    return (f"<p>Each claim of the study says a metric rises with the learning rate. Per budget, over the runs with "
            f"status <code>ok</code> (failed runs are listed under Failed runs and excluded): the Spearman "
            f"correlation with the rate and its one-sided permutation p-value, Holm-adjusted over the {n_tests} "
            f"tests of this report; the {metric_link('effect', 'effect')} in the metric's own units against the "
            "claim's floor (the smallest effect that matters); an equivalence test for <i>no effect</i>. "
            f"{metric_link('verdict', 'How the verdict follows')}.</p>{_control_html(claims)}{notes_html}{table}")


def _control_html(claims: pd.DataFrame) -> str:
    if "survives_control" not in claims.columns:
        return ""
    outcomes = claims.drop_duplicates("claim")["survives_control"].value_counts()
    said = ", ".join(f"{v} {_badge(k)}" for k, v in outcomes.items())
    return (f"<p>The matched-budget control: the fixed-steps sweep is judged again over the matched sweep's rates, "
            f"so both verdicts cover the same range; a claim that agrees there then either survives "
            f"(<i>yes</i>), <i>vanishes</i> (no effect at matched budget: the effect follows rate x steps), "
            f"<i>reverses</i>, or cannot tell. Outcomes: {said}.</p>")


def headline_html(result: AnalysisResult) -> str:
    """One line per claim: its verdict per budget and the control's outcome, with the effect that carried it."""
    claims = result.claims
    if claims.empty:
        return "<p>No claims were evaluated (no run).</p>"
    setup = result.config.get("setup", {})
    runs = result.runs
    ok = runs[runs["status"] == "ok"] if len(runs) else runs
    per_budget = "; ".join(f"{b}: {part['lr'].nunique()} rates x {part.groupby('lr').size().min()} seeds"
                           for b, part in ok.groupby("budget")) if len(ok) else "no ok run"
    lines = []
    for name, part in claims.groupby("claim", sort=False):
        verdicts = list(part["verdict"])
        if len(set(verdicts)) == 1 and verdicts[0] in ("not measurable", "cannot tell") and len(verdicts) > 1:
            said = f"{_badge(verdicts[0])} everywhere"
            if verdicts[0] == "not measurable":
                said += f": {html.escape(str(part['reason'].iloc[0]))}"
            bits = [said]
        else:
            bits = []
            for _, r in part.iterrows():
                scope = SCOPE_LABELS.get((r["budget"], r.get("rates", "all")), r["budget"])
                detail = ""
                if r["verdict"] in ("agrees", "disagrees", "no effect") and np.isfinite(r["effect"]):
                    detail = f" (effect {_fmt(r['effect'], 3)}, floor {_fmt(r['floor'], 3)})"
                elif r["verdict"] == "not measurable":
                    detail = f" ({html.escape(str(r['reason']))})"
                bits.append(f"{html.escape(scope)}: {_badge(r['verdict'])}{detail}")
        if "survives_control" in part.columns:
            bits.append(f"survives the control: {_badge(part['survives_control'].iloc[0])}")
        lines.append(f"<li><b>{html.escape(name)}</b> ({metric_link(part['column'].iloc[0])}): "
                     + "; ".join(bits) + "</li>")
    return (f"<p><b>{html.escape(str(setup.get('dataset', '?')))}</b>, {html.escape(str(setup.get('model', '?')))}"
            f"; {html.escape(per_budget)}. Each line: the verdict per budget and whether the claim survives the "
            f"matched-budget control; the statistics are in the table below.</p><ul class=\"headline\">"
            + "".join(lines) + "</ul>")


def _failures_html(result: AnalysisResult) -> str:
    failures = result.failures
    if failures.empty:
        return ("<p>None: no run diverged, collapsed or is incomplete (every run ended with training accuracy of "
                "at least 1.5x chance and a finite loss).</p>")
    runs = result.runs.set_index("run")
    frame = failures.copy()
    frame["final_train_acc"] = [runs.loc[r, "final_train_acc"] if r in runs.index else np.nan for r in frame["run"]]
    frame["last_epoch"] = [runs.loc[r, "final_epoch"] if r in runs.index else np.nan for r in frame["run"]]
    rate_rows = []
    for (budget, lr), part in result.runs.groupby(["budget", "lr"]):
        bad = part[part["status"] != "ok"]
        if len(bad):
            rate_rows.append(f"<li>lr {lr:g} ({html.escape(budget)}): "
                             + ", ".join(f"{v} {_badge(k, 's')}" for k, v in bad["status"].value_counts().items())
                             + f" of {len(part)} run(s)</li>")
    return (f"<p>Left out of the claims, never dropped: {metric_link('status', 'diverged')} runs (non-finite "
            "training loss; the epoch and step where it happened) and collapsed runs (finite, but final training "
            "accuracy below 1.5x chance).</p>"
            f"<ul>{''.join(rate_rows)}</ul>"
            + table_html(frame, formatters={"status": lambda v: _badge(v, "s")}, text_columns=("run", "budget")))


def _runs_html(result: AnalysisResult) -> str:
    runs = result.runs
    keep = ["run", "lr", "seed", "budget", "steps", "status", "final_train_acc", "early_epoch", "early_step",
            "final_epoch"]
    from probe.report.figures import claim_columns

    keep += claim_columns(runs)
    frame = runs[[c for c in keep if c in runs.columns]]
    return ("<p>One row per run; all summary columns are in <code>runs.csv</code>. "
            f"{metric_link('phase', 'final / early')}.</p>"
            + table_html(frame, formatters={"status": lambda v: _badge(v, "s")}, text_columns=("run", "budget")))


def _errors_html(result: AnalysisResult) -> str:
    items = []
    for e in result.errors:
        items.append(f"<li><b>{html.escape(e['analysis'])}</b> on {html.escape(str(e['run']))} epoch {e['epoch']}: "
                     f"<code>{html.escape(e['error'])}</code><pre>{html.escape(e.get('traceback', ''))}</pre></li>")
    return ('<p class="alert">These analyses raised an error; everything else was computed. The same list is in '
            f"<code>metrics.json</code> under <code>errors</code>.</p><ul>{''.join(items)}</ul>")


def analysis_sections(result: AnalysisResult, figures: dict[str, Path]) -> list[Section]:
    """The sections of a ``probe analyze`` report, in order, using the PNG files in ``figures``."""
    claims_figs = [(figures["claims"], "Each claim's effect (best rate's mean minus the lowest rate's) in units of "
                    "its floor, with its 95% interval, per budget, coloured by verdict; the grey band is smaller "
                    "than the floor.")] if "claims" in figures else []
    alert = ""
    if result.errors:
        alert = (f'<p class="alert"><b>{len(result.errors)} analysis error(s).</b> The affected numbers are missing '
                 'from the tables and figures; see <a href="#errors">Errors</a>.</p>')
    sections = [Section("Verdicts", alert + headline_html(result) + "<h3>The statistics behind each verdict</h3>"
                        + _claims_html(result), claims_figs, anchor="verdicts")]
    chain_figs = [(figures["chain"], "The mechanism chain's four curves on the distance axis lr x step (log): train "
                   "logit_norm, train cmr@0.9, sgd bc_loss_share and train acc_bc, each rescaled to [0, 1] per run, "
                   "then averaged over the seeds of a rate (ok runs only); one panel per budget and rate.")] \
        if "chain" in figures else []
    sections.append(Section("Mechanism chain", chain_section_html(result), chain_figs, anchor="chain"))
    sections.append(Section("Setup", _setup_html(result)))
    sections.append(Section("Sample sizes", samples_section_html(result), anchor="sample-sizes"))
    overview = [(figures["overview"], "Each claim metric against the learning rate (log scale): mean over seeds of "
                 "the ok runs, error bars one standard deviation over seeds; failed runs marked along the bottom "
                 "(x diverged, v collapsed) with their count.")] if "overview" in figures else []
    sections.append(Section("Sweep overview", "<p>Metrics named as in the run table: "
                            + ", ".join(metric_link(c) for c in _overview_columns(result)) + ".</p>", overview))
    sections.append(Section("Failed runs", _failures_html(result)))
    dyn = [(figures[k], f"Per-run dynamics ({k.split('_', 1)[1]} runs): "
            + ", ".join(metric_link(m) for m in ("acc_ba", "acc_bc", "unbiased_acc", "wga", "logit_norm_ba",
                                                  "cmr@0.9", "bc_loss_share", "param_norm")) + ".")
           for k in sorted(figures) if k.startswith("dynamics_")]
    sections.append(Section("Dynamics", "<p>Per run, over training steps (symlog axis; step 0 is the "
                            "initialisation), coloured by learning rate.</p>", dyn))
    prop_figs = [(figures["proposition"], PROPOSITION_CAPTION)] if "proposition" in figures else []
    sections.append(Section("Proposition", proposition_section_html(result), prop_figs))
    sections.append(Section("Runs", _runs_html(result)))
    if result.errors:
        sections.append(Section("Errors", _errors_html(result), anchor="errors"))
    return sections


def _overview_columns(result: AnalysisResult) -> list[str]:
    from probe.report.figures import claim_columns

    return claim_columns(result.runs) if len(result.runs) else []


def glossary_section(sections: Sequence[Section]) -> Section:
    import re

    used = set()
    for s in sections:
        used.update(re.findall(r'href="#(metric-[a-z0-9-]+)"', s.html))
        used.update(re.findall(r'href="#(metric-[a-z0-9-]+)"', "".join(c for _, c in s.figures)))
    from probe.report.glossary import ENTRIES, anchor

    keys = [k for k in ENTRIES if anchor(k) in used]
    return Section("Metric glossary", "<p>Every metric named in this report, defined as computed.</p>"
                   + glossary_html(keys), anchor="glossary")


def metric_names(frame: pd.DataFrame) -> list[str]:
    """The distinct metric ids of a run-table's summary columns (for callers building their own sections)."""
    return sorted({metric_of(c) for c in frame.columns if ":" in str(c)})
