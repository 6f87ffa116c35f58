"""The report's proposition section: what is checked, the window per run, the scale / direction decomposition.

:func:`proposition_section_html` draws, from an :class:`~probe.analyses.engine.result.AnalysisResult` and computing
nothing from runs, what SPEC section 4 says ``probe`` reports about the logit-scaling proposition:

- the window of each run: the recorded epochs where the proposition applies (every BA training sample correct, some
  BC sample mispredicted), or why it never does (:func:`probe.analyses.proposition.window_table`);
- per run and across rates, how much of the change of ``log R(1)`` between consecutive window epochs the logits'
  scale alone explains (:func:`~probe.analyses.proposition.window_summary`,
  :func:`~probe.analyses.proposition.scale_share_by_rate` over ``result.proposition_steps``);
- in plain words, that ``fitted_rate == min_ba_margin`` is an identity of the definition, checked by the unit tests
  and never shown as evidence.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from probe.analyses.proposition import scale_share_by_rate, window_summary
from probe.report.glossary import metric_link
from probe.report.tables import table_html

if TYPE_CHECKING:
    from probe.analyses.engine.result import AnalysisResult

__all__ = ["PROPOSITION_CAPTION", "proposition_section_html"]

#: the caption of the report's proposition figure (:func:`probe.report.figures.proposition_panels`).
PROPOSITION_CAPTION = (
    "Training split. Left: log R(alpha) = log(mean BC CE / mean BA CE) of the logits scaled by alpha, at every "
    "recorded epoch where the proposition applies (one line per run and epoch). Middle: scale_share of each step "
    "between consecutive window epochs against rate x steps (lr x global step at the step's end), one line per run; "
    "1 = the change of log R(1) is the logits' scale alone, 0 = their direction alone. Right: measured BC/BA loss "
    "ratio against the mean logit norm, across epochs."
)

#: the implementation checks of the proposition's premises (i)-(iii): 1 wherever the code is right.
_CHECK_FLAGS = ("convex", "bound_correct_ok", "bound_mispredicted_ok")


def _what_is_checked() -> str:
    return (
        "<p>For the logits z of a fixed model, scaling them by alpha gives per-sample losses "
        "l(alpha) = CE(softmax(alpha z), y) and R(alpha) = mean BC loss / mean BA loss on the training split. "
        "Where every BA training sample is classified correctly and some BC sample is mispredicted (the "
        f"proposition's premises, {metric_link('applicable')}), R(alpha) grows exponentially in alpha. This section "
        "shows (1) the <b>window</b> of each run: the recorded epochs where the premises hold; (2) log R(alpha) at "
        "those epochs (figure, left); (3) the empirical question: between consecutive recorded epochs t and t+1 "
        "<i>both</i> in the window, how much of the change of log R at alpha = 1 the growth of the logits' scale "
        "alone explains:</p>"
        "<pre>total       = log R(z_{t+1}) - log R(z_t)\n"
        "scale       = log R(z_t * s) - log R(z_t),   s = |z_{t+1}| / |z_t|\n"
        "direction   = total - scale\n"
        "scale_share = scale / total</pre>"
        f"<p>with |z| the {metric_link('logit_norm')} (mean over training samples of ||z_i||_2). scale_share = 1: "
        "the scale alone made the change; 0: the logits' direction alone; outside [0, 1]: the two pulled in "
        "opposite directions; undefined (blank) where log R did not change. Every pair of consecutive recorded "
        "epochs is in <code>proposition_steps.csv</code> (<code>both_applicable</code> marks the window's).</p>"
    )


def _identity_note(prop: pd.DataFrame) -> str:
    note = (
        f'<p class="note">Not evidence: that (1/alpha) log R(alpha) tends to the smallest BA margin '
        f"({metric_link('fitted_rate')} = {metric_link('min_ba_margin')}) is an identity of the definition: R is "
        "computed by rescaling the very logits whose margin it is compared with. The unit tests "
        "(<code>tests/analyses/test_proposition.py</code>) check it, as they check the convexity of l(alpha) and "
        "its two bounds; <code>metrics.json</code> keeps these numbers (fitted_rate is blank where the proposition "
        "does not apply), and this report does not present them as a finding.</p>"
    )
    flags = [c for c in _CHECK_FLAGS if c in prop.columns]
    if flags and len(prop):
        failed = prop[(prop[flags].to_numpy(dtype=float) < 0.5).any(axis=1)]
        if len(failed):
            which = ", ".join(f"{html.escape(str(r['run']))} epoch {int(r['epoch'])}"
                              for _, r in failed.head(5).iterrows())
            note += (f'<p class="alert">An implementation check of the premises failed at {len(failed)} (run, epoch) '
                     f"pair(s) ({which}{', ...' if len(failed) > 5 else ''}): that is a problem of the code or of "
                     "the stored logits (floating point), not a property of training.</p>")
    return note


def _window_column(row: pd.Series) -> str:
    if row["n_window"] > 0:
        word = "epoch" if row["n_window"] == 1 else "epochs"
        return html.escape(f"{word} {row['window_epochs']} ({row['n_window']} of {row['n_epochs']} recorded)")
    return html.escape(f"it never applies in this run, because {row['reason']}")


def proposition_section_html(result: AnalysisResult) -> str:
    """The proposition section of the report (HTML): what is checked, the window per run with the decomposition
    summaries, the table across rates, and the statement that ``fitted_rate == min_ba_margin`` is an identity.

    Example:
        >>> import probe
        >>> from probe.report.proposition import proposition_section_html
        >>> page_part = proposition_section_html(probe.load_analysis("analyses/demo"))   # doctest: +SKIP
    """
    prop = result.proposition
    if prop.empty or "applicable" not in prop.columns:
        return ("<p>The proposition was not checked (no training split recorded, or the analysis "
                "<code>proposition</code> was not run).</p>")
    steps = result.proposition_steps
    summary = window_summary(prop, steps, result.runs if len(result.runs) else None)
    n_with = int((summary["n_window"] > 0).sum())
    in_window = int(summary["n_window_steps"].sum())
    lead = (f"The proposition applies at some recorded epoch in {n_with} of {len(summary)} run(s), with "
            f"{int(summary['n_window'].sum())} window epoch(s) and {in_window} step(s) between consecutive window "
            "epochs (training split).")
    if not n_with:
        lead += " There is nothing to decompose."

    per_run = summary.assign(window=summary.apply(_window_column, axis=1))
    cols = [c for c in ["run", "lr", "seed", "budget", "status", "window", "n_window_steps", "median_scale_share",
                        "pooled_scale_share", "log_r_change"] if c in per_run.columns]
    runs_html = ("<h3>The window of each run, and the decomposition over it</h3>"
                 "<p><code>median_scale_share</code>: median of scale_share over the run's window steps; "
                 "<code>pooled_scale_share</code> = sum of scale / sum of total over them; <code>log_r_change</code> "
                 "= sum of total over them (the change of log R(1) within the window).</p>"
                 + table_html(per_run[cols], text_columns=("run", "budget", "status", "window"),
                              formatters={"window": str}))

    rates = scale_share_by_rate(summary)
    rates_html = ("<h3>Across rates</h3><p>Per learning rate, over the runs with status ok: <code>seeds</code> "
                  "(runs), <code>seeds_with_window</code> (runs with at least one window step), "
                  "<code>window_steps</code>, <code>median_scale_share</code> (median over those runs of each run's "
                  "median) and <code>mean_log_r_change</code> (mean over those runs).</p>")
    finite = rates["median_scale_share"].to_numpy(dtype=float)
    if len(rates) and np.isfinite(finite).any():
        rates_html += table_html(rates, text_columns=("budget",))
    else:
        rates_html += "<p>No run with status ok has a step inside its window: no scale share to compare.</p>"
    return (_what_is_checked() + _identity_note(prop) + f"<p>{html.escape(lead)}</p>" + runs_html + rates_html)
