"""The report's sample-size section: how many samples each number of the claims rests on.

:func:`samples_section_html` reads the count metrics the analyses emit (``n``, ``n_ba``, ``n_bc``, ``n_group/<g>``,
``wga_groups_used``, ``wga_groups_excluded``, ``wga_min_group_n`` of the ``groups`` analysis; ``n_probe_eval``,
``dfr_min_group_n``, ``dfr_groups_excluded``, ``n_features``, ``n_sparsity``, ``n_pruning`` of the model analyses)
at each run's final epoch, for the runs the claims use (status ``ok``), and lays them out per budget and split. Counts
that are the same in every run are shown once; where they differ, every run gets its row and the page says so.
"""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from probe.analyses.groups import DEFAULT_MIN_GROUP_SIZE
from probe.report.tables import starts_with, table_html

if TYPE_CHECKING:
    from probe.analyses.engine.result import AnalysisResult

__all__ = ["COUNT_COLUMNS", "samples_section_html", "final_counts"]

#: the count metrics of the table, in display order (absent ones are left out).
COUNT_COLUMNS = ("n", "n_ba", "n_bc", "wga_groups_used", "wga_groups_excluded", "wga_min_group_n", "n_probe_eval",
                 "dfr_min_group_n", "dfr_groups_excluded", "n_features", "n_sparsity", "n_pruning")
#: fewer samples than this behind a number (BC samples, a group) earn a note.
FEW = 20
_GROUP_PREFIX = "n_group/"
#: a count that is NaN when no group qualifies, and the count that says the analysis ran.
_COMPANIONS = {"wga_min_group_n": "wga_groups_used", "dfr_min_group_n": "dfr_groups_excluded"}
_BUDGET_LABELS = {"fixed": "fixed steps", "matched": "matched budget (rate x steps held fixed)"}


def final_counts(result: AnalysisResult) -> pd.DataFrame:
    """Count metrics at each ok run's final epoch, one row per (run, split): ``run, budget, lr, seed, split`` and one
    column per count metric present (:data:`COUNT_COLUMNS` and ``n_group/<g>``); NaN where a run lacks one."""
    epochs, runs = result.epochs, result.runs
    keys = ["run", "budget", "lr", "seed", "split"]
    if epochs.empty or runs.empty or "final_epoch" not in runs:
        return pd.DataFrame(columns=keys)
    ok = runs[runs["status"] == "ok"] if "status" in runs else runs
    finals = ok[["run", "final_epoch"]].dropna().rename(columns={"final_epoch": "epoch"})
    if finals.empty:
        return pd.DataFrame(columns=keys)
    finals = finals.assign(epoch=finals["epoch"].astype(int))
    metric = epochs["metric"].astype(str)
    wanted = epochs[metric.isin(COUNT_COLUMNS).to_numpy(dtype=bool) | starts_with(metric, _GROUP_PREFIX)]
    rows = wanted.merge(finals, on=["run", "epoch"])
    if rows.empty:
        return pd.DataFrame(columns=keys)
    rows = rows.drop_duplicates(["run", "split", "metric"], keep="first")
    wide = rows.pivot(index=["run", "split"], columns="metric", values="value").reset_index()
    info = ok[["run", "budget", "lr", "seed"]].drop_duplicates("run")
    wide = wide.merge(info, on="run", how="left")
    counts = [c for c in COUNT_COLUMNS if c in wide.columns]
    groups = sorted((c for c in wide.columns if str(c).startswith(_GROUP_PREFIX)),
                    key=lambda c: int(c[len(_GROUP_PREFIX):]) if c[len(_GROUP_PREFIX):].isdigit() else 0)
    return wide[keys + counts + groups].sort_values(["budget", "split", "lr", "seed", "run"]).reset_index(drop=True)


def _same(frame: pd.DataFrame, columns: list[str]) -> bool:
    """Whether every row holds the same values in ``columns`` (NaN equal to NaN)."""
    if len(frame) <= 1 or not columns:
        return True
    values = frame[columns].to_numpy(dtype=float)
    first = values[0]
    return bool(np.all((values == first) | (np.isnan(values) & np.isnan(first))))


def _min_group_size(result: AnalysisResult) -> tuple[int, bool]:
    """``(min_group_size, recorded)``: the value analyze used, or the default when the result does not say."""
    value = (result.config.get("options") or {}).get("min_group_size")
    if value is None:
        return DEFAULT_MIN_GROUP_SIZE, False
    return int(value), True


def _count(value: Any) -> str:
    """A count as an integer; "–" for a missing one."""
    if value is None or not math.isfinite(float(value)):
        return "–"
    return f"{float(value):.0f}"


def _split_table(part: pd.DataFrame, counts: list[str]) -> tuple[str, bool]:
    """The table of one budget and split; True when the counts differ across runs."""
    present = {c for c in counts if part[c].notna().any()}
    present |= {c for c, companion in _COMPANIONS.items() if companion in present}  # NaN there is a finding
    counts = [c for c in counts if c in present]
    differ = not _same(part, counts)
    if differ:
        frame = part[["run", "lr", "seed", *counts]]
    else:
        first = part.iloc[0]
        frame = pd.DataFrame([{"runs": f"all {len(part)} run(s)", **{c: first[c] for c in counts}}])
    text = ("run", "runs")
    return table_html(frame, text_columns=text), differ


def _groups_html(part: pd.DataFrame, min_size: int) -> str:
    """Group sizes of one budget and split: shown once when every run has the same, else their range and a note."""
    columns = [c for c in part.columns if str(c).startswith(_GROUP_PREFIX) and part[c].notna().any()]
    if not columns:
        return ""
    ids = [c[len(_GROUP_PREFIX):] for c in columns]
    values = part[columns].to_numpy(dtype=float)
    low, high = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
    same = _same(part, columns)

    def size(i: int) -> str:
        return _count(low[i]) if low[i] == high[i] else f"{_count(low[i])}-{_count(high[i])}"

    used = [i for i in range(len(ids)) if low[i] >= min_size]
    left_out = [i for i in range(len(ids)) if high[i] > 0 and low[i] < min_size]
    empty = [i for i in range(len(ids)) if high[i] == 0]

    def listed(idx: list[int]) -> str:
        return ", ".join(f"{html.escape(ids[i])} ({size(i)})" for i in idx) or "none"

    head = ("Group sizes <code>n_group/&lt;g&gt;</code> (g = y * A + a), the same in every run"
            if same else f"Group sizes <code>n_group/&lt;g&gt;</code> <b>differ across the {len(part)} runs</b> "
            "(shown as the range over runs)")
    items = [f"<li>used by <code>wga</code> (at least {min_size} samples{'' if same else ' in every run'}): "
             f"{listed(used)}</li>",
             f"<li>left out of <code>wga</code> (fewer than {min_size}{'' if same else ' in some run'}): "
             f"{listed(left_out)}</li>"]
    if empty:
        items.append(f"<li>empty: {listed(empty)}</li>")
    summary = (f"{head}: {len(used)} group(s) used by <code>wga</code>, {len(left_out)} left out (fewer than "
               f"{min_size} samples), {len(empty)} empty")
    return f"<details><summary>{summary}</summary><ul>{''.join(items)}</ul></details>"


def _notes(split: str, part: pd.DataFrame, min_size: int) -> list[str]:
    """Warnings about numbers that rest on few samples in one budget and split."""
    notes = []
    name = html.escape(str(split))
    if "wga_groups_used" in part and (part["wga_groups_used"] == 0).any():
        largest = part[[c for c in part.columns if str(c).startswith(_GROUP_PREFIX)]].max(axis=1)
        biggest = _count(largest.max()) if len(largest) and largest.notna().any() else "?"
        notes.append(f"<code>wga</code> on <code>{name}</code> is NaN in {int((part['wga_groups_used'] == 0).sum())} "
                     f"of {len(part)} run(s): no group has {min_size} samples (the largest has {biggest}).")
    if "n_bc" in part and part["n_bc"].notna().any():
        fewest = float(part["n_bc"].min())
        if 0 < fewest < FEW:
            notes.append(f"<code>{name}</code> holds as few as {_count(fewest)} BC samples: <code>acc_bc</code> and "
                         f"<code>cmr@tau</code> there move in steps of 1/{_count(fewest)}.")
    if {"dfr_min_group_n", "dfr_groups_excluded"} <= set(part.columns):
        ran = part["dfr_groups_excluded"].notna()
        none_used = ran & part["dfr_min_group_n"].isna()
        if none_used.any():
            notes.append(f"<code>dfr_wga</code> on <code>{name}</code> is NaN in {int(none_used.sum())} of "
                         f"{int(ran.sum())} run(s): no group has {min_size} samples.")
    return notes


def samples_section_html(result: AnalysisResult) -> str:
    """HTML of the report's sample-size section: per budget and split, the sample counts at each run's final epoch.

    For the runs with status ``ok`` (the runs the claims use), per budget and recorded split: one table of ``n``,
    ``n_ba``, ``n_bc``, the groups ``wga`` uses and leaves out (``wga_groups_used``, ``wga_groups_excluded``, with
    the analysis option ``min_group_size``), the smallest group used (``wga_min_group_n``) and the model analyses'
    counts (``n_probe_eval``, ``dfr_min_group_n``, ``dfr_groups_excluded``, ``n_features``, ``n_sparsity``,
    ``n_pruning``) where they ran; one row when every run has the same counts, else one row per run. Then the group
    sizes ``n_group/<g>``, listed once when identical across runs (else as ranges, with a note), split into the
    groups used by ``wga``, those left out and the empty ones; and notes where a number rests on few samples.

    Args:
        result: an :class:`~probe.analyses.engine.result.AnalysisResult` (``analyze`` or ``load_analysis``).

    Returns:
        Plain HTML (every name escaped), tables made by :func:`probe.report.html.table_html`.
    """
    min_size, recorded = _min_group_size(result)
    counts = final_counts(result)
    if counts.empty:
        return ("<p>No sample counts were recorded: the <code>groups</code> analysis did not run on the final epoch "
                "of any run with status ok.</p>")
    said = "" if recorded else " (not recorded in this analysis; the default)"
    parts = [f"<p>How many samples the claims rest on, at each run's final epoch, over the runs with status "
             f"<code>ok</code>. <code>wga</code> is the minimum accuracy over the groups with at least "
             f"<code>min_group_size</code> = {min_size}{html.escape(said)} samples; smaller groups are left out and "
             "listed, and <code>wga</code> is NaN (shown –) when no group qualifies.</p>"]
    columns = [c for c in COUNT_COLUMNS if c in counts.columns]
    for budget, by_budget in counts.groupby("budget", sort=True, dropna=False):
        label = _BUDGET_LABELS.get(str(budget), str(budget))
        parts.append(f"<h3>{html.escape(label)}</h3>")
        for split, part in by_budget.groupby("split", sort=True):
            table, differ = _split_table(part, columns)
            parts.append(f"<h4>split <code>{html.escape(str(split))}</code></h4>")
            if differ:
                parts.append("<p class=\"note\">These counts differ across runs: one row per run.</p>")
            parts.append(table)
            parts.append(_groups_html(part, min_size))
            notes = _notes(split, part, min_size)
            if notes:
                parts.append("<p class=\"alert\">" + "<br>".join(notes) + "</p>")
    return "".join(parts)
