"""One self-contained HTML page: a list of sections, each a title, some HTML and PNG figures.

:func:`render_page` embeds every figure as a base64 ``data:image/png`` URI and the style sheet inline; the page
loads nothing from the network and runs no script. :func:`analysis_sections` builds the sections of a
``probe analyze`` report (sweep overview, claims, failed runs, dynamics, proposition, runs, errors, glossary);
:func:`probe.report.write.write_report` assembles them with the figures and panels into ``report.html``.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from probe.report.glossary import glossary_html, glossary_key, metric_link, metric_of
from probe.report.proposition import PROPOSITION_CAPTION, proposition_section_html

if TYPE_CHECKING:
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
.v-cannot-tell { background: #f5f5f5; color: #424242; } .v-not-measured, .v-n-a { color: #9e9e9e; }
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
    if isinstance(figure, Figure):
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


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            return "–"
        if value != 0 and (abs(value) >= 1e4 or abs(value) < 10.0 ** -(digits - 1)):
            return f"{value:.2g}"
        return f"{value:.{digits}f}".rstrip("0").rstrip(".") if "." in f"{value:.{digits}f}" else f"{value}"
    if isinstance(value, (np.integer,)):
        return str(int(value))
    return html.escape(str(value))


def _badge(value: str, kind: str = "v") -> str:
    cls = "".join(c if c.isalnum() else "-" for c in str(value).lower())
    return f'<span class="verdict {kind}-{cls}">{html.escape(str(value))}</span>'


def table_html(frame: pd.DataFrame, *, formatters: dict[str, Any] | None = None, link_header: bool = True,
               text_columns: Sequence[str] = ()) -> str:
    """An HTML table of ``frame``; column names that are metric ids link to the glossary; cells pass through
    ``formatters[column](value) -> html`` when given, else are formatted as numbers / escaped text."""
    formatters = formatters or {}
    head = []
    for col in frame.columns:
        name = str(col)
        label = metric_link(name) if link_header and glossary_key(name) else html.escape(name)
        cls = ' class="text"' if col in text_columns else ""
        head.append(f"<th{cls}>{label}</th>")
    rows = []
    for _, row in frame.iterrows():
        cells = []
        for col in frame.columns:
            value = row[col]
            text = formatters[col](value) if col in formatters else _fmt(value)
            cls = ' class="text"' if col in text_columns else ""
            cells.append(f"<td{cls}>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="wide"><table><thead><tr>{"".join(head)}</tr></thead><tbody>{"".join(rows)}</tbody>'
            "</table></div>")


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
    text = f"<table>{table}</table><ul>{''.join(parts)}</ul><p>Runs by {metric_link('status')}: {status}.</p>"
    if result.errors:
        text = (f'<p class="alert"><b>{len(result.errors)} analysis error(s).</b> The affected numbers are missing '
                'from the tables and figures; see <a href="#errors">Errors</a>.</p>') + text
    return text


def _claims_html(result: AnalysisResult) -> str:
    from probe.report.figures import claims_wide

    wide = claims_wide(result.claims)
    if wide.empty:
        return "<p>No claims were evaluated (no run).</p>"
    budgets = [b for b in ("fixed", "matched") if f"verdict_{b}" in wide.columns]
    head = ["<th class=\"text\">claim</th><th class=\"text\">metric</th>"]
    for b in budgets:
        label = "fixed steps" if b == "fixed" else "matched budget (control)"
        head.append(f"<th>{label}: {metric_link('verdict', 'verdict')}</th><th>Spearman [95% seed interval]</th>"
                    "<th>p</th><th>rates / runs (excluded)</th>")
    if "survives_control" in wide.columns:
        head.append(f"<th>{metric_link('survives_control', 'survives the control')}</th>")
    rows = []
    for _, r in wide.iterrows():
        cells = [f"<td class=\"text\">{html.escape(r['description'])}</td>",
                 f"<td class=\"text\">{metric_link(r['column'])}</td>"]
        for b in budgets:
            rho, lo, hi = r[f"spearman_{b}"], r[f"ci_low_{b}"], r[f"ci_high_{b}"]
            ci = f" [{_fmt(lo, 2)}, {_fmt(hi, 2)}]" if np.isfinite(lo) else ""
            cells.append(f"<td>{_badge(r[f'verdict_{b}'])}</td><td>{_fmt(rho, 2)}{ci}</td>"
                         f"<td>{_fmt(r[f'p_value_{b}'], 2)}</td>"
                         f"<td>{_fmt(r[f'n_rates_{b}'])} / {_fmt(r[f'n_runs_{b}'])} "
                         f"({_fmt(r[f'n_excluded_{b}'])})</td>")
        if "survives_control" in wide.columns:
            cells.append(f"<td>{_badge(r['survives_control'])}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    table = (f"<div class=\"wide\"><table><thead><tr>{''.join(head)}</tr></thead><tbody>{''.join(rows)}</tbody>"
             "</table></div>")
    lines = []
    for _, r in wide.iterrows():
        said = "; ".join(f"{'fixed steps' if b == 'fixed' else 'matched budget'}: {r[f'verdict_{b}']}"
                         for b in budgets)
        if "survives_control" in wide.columns:
            said += f"; survives the matched-budget control: {r['survives_control']}"
        lines.append(f"<li><b>{html.escape(r['claim'])}</b> ({metric_link(r['column'])}) — {html.escape(said)}</li>")
    control = ("" if "survives_control" in wide.columns else
               "<p class=\"note\">No matched-budget sweep was analysed, so no claim is checked against the control. "
               "Train one with <code>probe sweep --budget matched --steps S ...</code> and run "
               "<code>probe analyze FIXED_SWEEP --control MATCHED_SWEEP</code>.</p>")
    few = [b for b in budgets
           if (wide[f"n_runs_{b}"] == 3).any() and (wide[f"n_runs_{b}"] == wide[f"n_rates_{b}"]).all()]
    if few:
        control += ("<p class=\"note\">With one run per rate, three rates can never reach p <= 0.05 (the smallest "
                    "one-sided permutation p-value is 1/6), so such claims read <i>cannot tell</i>: add seeds "
                    f"({html.escape(', '.join(few))}).</p>")
    return (f"<p>Each claim of the study says a metric rises with the learning rate. Per budget, over the runs with "
            f"status <code>ok</code> only (failed runs are listed below and excluded), the Spearman correlation of "
            f"the metric with the rate, its 95% interval when seeds are resampled within each rate, and a one-sided "
            f"permutation p-value give the {metric_link('verdict', 'verdict')}. The {metric_link('phase', 'early')}"
            f" columns use each run's epoch nearest 10% of its steps.</p>{control}{table}"
            f"<h3>In words</h3><ul>{''.join(lines)}</ul>")


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
    sections = [Section("Setup", _setup_html(result))]
    overview = [(figures["overview"], "Each claim metric against the learning rate (log scale): mean over seeds of "
                 "the ok runs, error bars one standard deviation over seeds; failed runs marked along the bottom "
                 "(x diverged, v collapsed) with their count.")] if "overview" in figures else []
    sections.append(Section("Sweep overview", "<p>Metrics named as in the run table: "
                            + ", ".join(metric_link(c) for c in _overview_columns(result)) + ".</p>", overview))
    claims_figs = [(figures["claims"], "Spearman correlation with the rate and 95% seed interval, coloured by "
                    "verdict.")] if "claims" in figures else []
    sections.append(Section("Claims", _claims_html(result), claims_figs))
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
