"""Report panels beyond the logit-level pages: representations and compressibility, and attribution heatmaps (drawn
from grids the engine computed: :func:`probe.analyses.engine.grids.attribution_grids`).

Each function returns :class:`~probe.report.html.Section` objects for :func:`probe.report.write.write_report`'s
``extra_sections``; a panel whose data is absent (an analysis not run) returns nothing rather than an empty page.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from probe.report.figcache import FigureCache, write_if_changed
from probe.report.figures import lr_colours
from probe.report.html import Section, table_html
from probe.report.tables import starts_with

#: metrics of the representation table, in display order (test split unless noted in the column name).
REPRESENTATION_COLUMNS = (
    "final:val/probe_core",
    "final:val/probe_spurious",
    "final:test/dfr_wga",
    "final:test/class_separation",
    "final:test/attr_separation",
    "final:test/class_selectivity",
    "final:test/activation_sparsity",
    "final:test/retention@0.9",
    "final:test/max_sparsity@0.95",
    "final:model/norm_compressibility@0.1",
    "final:test/shape_reliance",
    "final:test/texture_reliance",
    "final:test/border_reliance",
    "final:test/background_reliance",
)


def _final_rows(result: Any, prefix: str, split: str) -> pd.DataFrame:
    """Rows of the epochs table at each run's final epoch whose metric starts with ``prefix``."""
    ep = result.epochs
    if ep.empty:
        return ep
    rows = ep[(ep["split"] == split).to_numpy(dtype=bool) & starts_with(ep["metric"], prefix)]
    finals = result.runs[["run", "final_epoch", "status"]]
    rows = rows.merge(finals, on="run")
    return rows[rows["epoch"] == rows["final_epoch"]]


def prune_rows(result: Any) -> pd.DataFrame:
    """The rows :func:`prune_curves` draws: ``prune_acc@<s>`` on the test split at each run's final epoch, with
    ``sparsity`` (s), ``budget``, ``lr``, ``status`` and ``value``, in a fixed order."""
    rows = _final_rows(result, "prune_acc@", "test")
    if rows.empty:
        return rows
    rows = rows.assign(sparsity=rows["metric"].str.removeprefix("prune_acc@").astype(float))
    rows = rows[["run", "budget", "lr", "status", "sparsity", "value"]]
    return rows.sort_values(["budget", "lr", "run", "sparsity"], kind="stable").reset_index(drop=True)


def prune_curve_figure(result: Any):
    """Accuracy after global magnitude pruning against sparsity, one line per learning rate (mean over seeds),
    one panel per budget; dashed lines are runs left out of the claims (None without pruning metrics)."""
    rows = prune_rows(result)
    return None if rows.empty else prune_curves(rows)


def prune_curves(rows: pd.DataFrame):
    """:func:`prune_curve_figure` drawn from :func:`prune_rows`."""
    from matplotlib.figure import Figure

    budgets = [b for b in ("fixed", "matched") if (rows["budget"] == b).any()]
    fig = Figure(figsize=(5.2 * len(budgets), 3.8), layout="constrained")  # not pyplot: no figure left open
    axes = fig.subplots(1, len(budgets), squeeze=False)
    colours, _ = lr_colours(sorted(rows["lr"].unique()))
    for ax, budget in zip(axes[0], budgets):
        part = rows[rows["budget"] == budget]
        for lr, by_lr in part.groupby("lr"):
            mean = by_lr.groupby("sparsity")["value"].agg(["mean", "std"]).reset_index()
            ok = (by_lr["status"] == "ok").all()
            ax.errorbar(mean["sparsity"], mean["mean"], yerr=mean["std"].fillna(0), marker="o", ms=3,
                        color=colours(lr), ls="-" if ok else "--", label=f"lr {lr:g}", capsize=2)
        ax.set_xlabel("fraction of weights removed (global magnitude pruning)")
        ax.set_ylabel("test accuracy (prune_acc@s)")
        ax.set_title(f"{budget} budget: test split, final epoch, mean over seeds", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    return fig


def _retention_note(table: pd.DataFrame) -> str:
    """Where a mean retention exceeds 1, what that means (empty when none does)."""
    above = [(b, lr, v) for c in table.columns if str(c).startswith("test/retention@")
             for b, lr, v in zip(table["budget"], table["lr"], table[c]) if np.isfinite(v) and v > 1]
    if not above:
        return ""
    where = ", ".join(f"lr {lr:g} ({b}): {v:.2f}" for b, lr, v in above[:6])
    return ("<p class=\"note\">Retention above 1 (" + html.escape(where) + ") means the pruned model is more "
            "accurate than the dense one: magnitude pruning removed weights that hurt on the test split, which "
            "happens when the dense model is near chance or leans on the spurious feature. It is a ratio, not an "
            "accuracy.</p>")


def representation_section(result: Any, fig_dir: Path, cache: FigureCache | None = None) -> list[Section]:
    """Linear probes, separation, selectivity, sparsity and pruning against the learning rate (the pruning figure
    from ``cache`` when it holds it for these rows)."""
    runs = result.runs
    columns = [c for c in REPRESENTATION_COLUMNS if c in runs.columns and runs[c].notna().any()]
    if not columns:
        return []
    table = (runs[runs["status"] == "ok"].groupby(["budget", "lr"])[columns].mean().reset_index()
             .rename(columns={c: c.split(":", 1)[1] for c in columns}))
    figures = []
    rows = prune_rows(result)
    if len(rows):
        png = (cache or FigureCache(None)).png("prune_curves", prune_curves, rows)
        result.files["figures/prune_curves.png"] = write_if_changed(fig_dir / "prune_curves.png", png)
        figures.append((png, "Accuracy after global unstructured magnitude pruning (no fine-tuning) of every "
                              "weight matrix and conv kernel, by learning rate; error bars over seeds."))
    text = ("<p>At each run's final epoch, mean over seeds of the runs left in the claims (status ok). "
            "Linear probes are fit on a group-balanced half of the validation split and scored on the other half; "
            "retention@0.9 is pruned / dense accuracy at 90% sparsity.</p>" + _retention_note(table)
            + table_html(table))
    return [Section("Representations and compressibility", text, figures)]


def attribution_figures(result: Any, grids: Any, fig_dir: Path,
                        cache: FigureCache | None = None) -> list[tuple[str, bytes, str]]:
    """``(name, PNG, caption)`` of each precomputed attribution grid
    (:func:`probe.analyses.engine.grids.attribution_grids`: the same bias-conflicting test samples across the
    learning rates of each sweep, one grid per applicable method), drawn unless ``cache`` holds it for these
    attributions; each PNG is also written to ``fig_dir``."""
    from probe.report.heatmaps import plot_attributions

    cache = cache or FigureCache(None)
    figures = []
    for grid in grids.grids:
        rows = grid.rows
        name = f"attribution_{grid.method}_{grid.source}".replace("/", "_")
        title = (f"{grid.method}: {grid.source}, same {grid.samples.upper()} test samples, rows = learning rate "
                 f"(seed {grid.seed}, last epoch)")
        png = cache.png(name, plot_attributions, rows, title=title)
        result.files[f"figures/{name}.png"] = write_if_changed(fig_dir / f"{name}.png", png)
        shares = pd.concat([r.shares().assign(lr=r.lr) for r in rows])
        caption = f"{grid.method} attributions ({grid.budget} budget)."
        if "core_attr_share" in shares and shares["core_attr_share"].notna().any():
            mean = shares.groupby("lr")["core_attr_share"].mean()
            caption += " Mean core_attr_share by rate: " + ", ".join(
                f"{lr:g}: {v:.2f}" for lr, v in mean.items() if np.isfinite(v))
        figures.append((name, png, caption))
    return figures


def attribution_section(figures: list[tuple[str, bytes, str]], notes: list[str]) -> list[Section]:
    """The report's attribution section of :func:`attribution_figures` (none without a figure)."""
    if not figures:
        return []
    text = ("<p>Where each model looks. Heat is |attribution| summed over channels; the core region is outlined "
            "where the dataset has masks. Generate more with <code>probe attribute</code>.</p>")
    if notes:
        text += "<p>" + html.escape("; ".join(sorted(set(notes)))) + ".</p>"
    return [Section("Attributions", text, [(png, caption) for _, png, caption in figures])]


def attribution_sections(result: Any, grids: Any, fig_dir: Path, cache: FigureCache | None = None) -> list[Section]:
    """Draw precomputed attribution grids (:func:`probe.analyses.engine.grids.attribution_grids`: the same
    bias-conflicting test samples across the learning rates of each sweep, one grid per applicable method) into one
    section."""
    return attribution_section(attribution_figures(result, grids, fig_dir, cache), grids.notes)
