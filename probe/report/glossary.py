"""Definitions of every metric id the report shows, and where each is documented.

The entries come from the analyses' declarations (:func:`probe.analyses.base.register_epoch_analysis`): one per
declared metric id, keyed by that id (``wga``, ``acc_group/<g>``, ``cmr@<tau>`` ...), with its definition, docs
anchor and code; plus the report's own terms (:data:`REPORT_TERMS`: run status, early/final phase, verdicts).
:func:`glossary_key` maps a concrete metric id (``acc_group/3``, ``cmr@0.9``, ``retention@0.9`` ...) or a run-table
column (``final:test/unbiased_acc``) to its entry; the report links each metric name to that entry, which gives the
definition and the docs page and function that document it.
"""

from __future__ import annotations

import html
import re
from functools import cache
from typing import Any, NamedTuple

from probe.analyses.base import load_analyses, metric_declaration


class Entry(NamedTuple):
    """One glossary entry: the analysis (or ``analyze``) it belongs to, the name shown, its definition, the docs
    anchor (``docs/page.md#anchor``) and the code (``module:function``) that document it."""

    family: str
    shown: str
    definition: str
    docs: str
    code: str


#: the report's own terms, which no analysis emits: key -> entry.
REPORT_TERMS: dict[str, Entry] = {
    "status": Entry("analyze", "status: ok, diverged, collapsed, incomplete, empty, damaged",
                    "diverged: the training loss became non-finite; collapsed: finite, but the final training "
                    "accuracy is below 1.5x chance (1.5 / K); incomplete: training is still running, was "
                    "interrupted or failed; empty: no epoch committed; damaged: a file of the run is truncated, "
                    "altered or unreadable (damaged_file, damage_reason). Only 'ok' runs enter the claims.",
                    "docs/analyze.md#status", "probe.analyses.claims:classify_run"),
    "phase": Entry("analyze", "final: / early:",
                   "run-table prefixes: final = the last committed epoch; early = the recorded epoch (after step 0) "
                   "whose distance lr x step is closest to 10% of the sweep's distance budget (the same for every "
                   "rate: max lr x steps in a matched sweep, the smallest rate's lr x steps in a fixed one).",
                   "docs/analyze.md#the-run-table-runscsv", "probe.analyses.engine.plan:early_epoch"),
    "verdict": Entry("analyze", "verdict, survives_control",
                     "Per claim and scope, over the ok runs: agrees / disagrees when, with 3 or more rates, the "
                     "one-sided permutation p-value of the Spearman correlation with the rate is <= 0.05 after Holm's "
                     "adjustment over the report's claims and the effect (best rate's mean minus the lowest rate's) "
                     "reaches the claim's floor in that direction; no effect when two one-sided t-tests put the "
                     "fitted change across the rates inside the floor and the effect is below it; not measurable "
                     "(with the reason) when the metric is missing, constant, or rests on fewer than 20 samples per "
                     "run; cannot tell "
                     "otherwise. survives_control compares the fixed-steps sweep over the matched rates (which must "
                     "agree) with the matched-budget sweep: yes (agrees), vanishes (no effect: the effect follows "
                     "rate x steps), reverses (disagrees), cannot tell; n/a when the fixed sweep does not agree.",
                     "docs/analyze.md#claims-and-the-matched-budget-control", "probe.analyses.claims:evaluate_claims"),
    "effect": Entry("analyze", "effect, slope, floor",
                    "effect: the mean of the rate most extreme in the direction of the correlation minus the lowest "
                    "rate's mean, with a 95% interval (bootstrap over seeds with 3 or more seeds per rate, else t). "
                    "slope: least-squares change per tenfold rate, 95% t-interval from the seed-level residuals; "
                    "change: slope times the decades the rates span. "
                    "floor: the smallest effect that matters, declared with the claim (0.02 for accuracies, shares "
                    "and fractions; 10% of the lowest rate's mean for norms).",
                    "docs/analyze.md#claims-and-the-matched-budget-control", "probe.analyses.claims_stats"),
}


@cache
def entries() -> dict[str, Entry]:
    """Every glossary entry by key: each metric id declared by a registered analysis (the built-in ones are loaded),
    analyses by name (not by registration, which follows import order), each one's metrics in declaration order;
    then :data:`REPORT_TERMS`."""
    out: dict[str, Entry] = {}
    for analysis in sorted(load_analyses().values(), key=lambda a: a.name):
        for metric in analysis.metrics:
            out[metric.id] = Entry(analysis.name, metric.id, metric.definition + ".", "docs/" + metric.docs,
                                   metric.code)
    out.update(REPORT_TERMS)
    return out


def __getattr__(name: str) -> Any:
    if name == "ENTRIES":  # built on first use: it imports every analysis module
        return entries()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def metric_of(name: str) -> str:
    """The metric id inside a run-table column: ``final:test/unbiased_acc`` -> ``unbiased_acc``."""
    if ":" in name:
        name = name.split(":", 1)[1]
        if "/" in name:
            name = name.split("/", 1)[1]
    return name


def glossary_key(name: str) -> str | None:
    """The glossary entry of a metric id or run-table column, or None when the report does not define it."""
    metric = metric_of(name)
    table = entries()
    if metric in table:
        return metric
    found = metric_declaration(metric)
    if found is not None and found[1].id in table:
        return found[1].id
    return None


def anchor(key: str) -> str:
    return "metric-" + re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-")


def metric_link(name: str, text: str | None = None) -> str:
    """``<a href="#metric-...">`` around ``name`` (HTML-escaped) when the glossary defines it, else ``<code>``."""
    shown = html.escape(text if text is not None else name)
    key = glossary_key(name)
    if key is None:
        return f"<code>{shown}</code>"
    return f'<a class="metric" href="#{anchor(key)}"><code>{shown}</code></a>'


def glossary_html(keys: list[str] | None = None) -> str:
    """A definition list of the entries ``keys`` (default all), each with its anchor and where it is documented."""
    table = entries()
    keys = list(table) if keys is None else [k for k in table if k in set(keys)]
    items = []
    for key in keys:
        entry = table[key]
        items.append(f'<dt id="{anchor(key)}"><code>{html.escape(entry.shown)}</code></dt>'
                     f"<dd>{html.escape(entry.definition)} <span class=\"doc\">Documented in "
                     f"<code>{html.escape(entry.docs)}</code> and <code>{html.escape(entry.code)}</code>.</span></dd>")
    return "<dl class=\"glossary\">" + "".join(items) + "</dl>"
