"""Figures of ``probe analyze``: the sweep overview, per-run dynamics, the proposition and the claims.

Every function takes the tidy tables of :class:`probe.analyses.engine.result.AnalysisResult` and returns a
:class:`matplotlib.figure.Figure` built without pyplot state (Agg when saved), so the same figures appear in the
report, in scripts and in notebooks. Learning rates are coloured on a log scale (viridis); the fixed-steps sweep is
drawn with solid lines and circles, the matched-budget sweep with dashed lines and squares.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from probe.analyses.engine.result import claims_wide
from probe.errors import ProbeInputError

if TYPE_CHECKING:
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

__all__ = ["DYNAMICS_PANELS", "chain_figure", "claim_columns", "claims_forest", "claims_wide", "dynamics", "lr_colours",
           "metric_over_training", "proposition_panels", "rate_summary", "save_figure", "sweep_overview"]

BUDGET_STYLE = {"fixed": {"linestyle": "-", "marker": "o"}, "matched": {"linestyle": "--", "marker": "s"}}
BUDGET_LABEL = {"fixed": "fixed steps", "matched": "matched budget (rate x steps fixed)"}
FAILURE_STYLE = {"diverged": ("x", "#c62828"), "collapsed": ("v", "#ef6c00"), "incomplete": ("d", "#6d4c41"),
                 "empty": ("d", "#6d4c41")}
VERDICT_COLOURS = {"agrees": "#2e7d32", "disagrees": "#c62828", "no effect": "#1565c0", "cannot tell": "#757575",
                   "not measurable": "#bdbdbd"}

#: panels of :func:`dynamics`: (title, split, metric ids drawn in it, line styles).
DYNAMICS_PANELS: tuple[tuple[str, str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("test acc_ba (dashed) and acc_bc (solid)", "test", ("acc_ba", "acc_bc"), ("--", "-")),
    ("test unbiased_acc", "test", ("unbiased_acc",), ("-",)),
    ("test wga (worst group)", "test", ("wga",), ("-",)),
    ("train logit_norm_ba (dashed) and logit_norm_bc (solid)", "train", ("logit_norm_ba", "logit_norm_bc"),
     ("--", "-")),
    ("train cmr@0.9", "train", ("cmr@0.9",), ("-",)),
    ("bc_loss_share: train split (solid), SGD minibatches (dotted)", "train|sgd", ("bc_loss_share",), ("-", ":")),
    ("model param_norm", "model", ("param_norm",), ("-",)),
)


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` as PNG (Agg) to ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    return path


def lr_colours(lrs: Sequence[float]):
    """A function ``lr -> RGBA`` on a log-scaled viridis over ``lrs``, and its normalisation."""
    from matplotlib import colormaps
    from matplotlib.colors import LogNorm, Normalize

    values = np.asarray([v for v in lrs if np.isfinite(v) and v > 0], dtype=np.float64)
    if values.size == 0:
        norm: Normalize = Normalize(0, 1)
    elif values.min() == values.max():
        norm = LogNorm(values.min() / 2, values.max() * 2)
    else:
        norm = LogNorm(values.min(), values.max())
    cmap = colormaps["viridis"]
    return (lambda lr: cmap(0.9 * norm(lr))), norm


def _lr_colourbar(fig: Figure, axes, lrs: Sequence[float]) -> None:
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import ListedColormap

    _, norm = lr_colours(lrs)
    cmap = ListedColormap(colormaps["viridis"](np.linspace(0, 0.9, 256)))
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes, fraction=0.025, pad=0.02)
    bar.set_label("learning rate")


# --- sweep overview ------------------------------------------------------------------------------------------------


def claim_columns(runs: pd.DataFrame) -> list[str]:
    """The claims' run-table columns that hold at least one finite value, in claim order."""
    from probe.analyses.claims import CLAIMS

    out = []
    for claim in CLAIMS:
        if claim.column in runs.columns and np.isfinite(pd.to_numeric(runs[claim.column], errors="coerce")).any():
            out.append(claim.column)
    return out


def rate_summary(runs: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per budget and rate, over the ``ok`` runs: ``mean``, ``std`` (0 with one seed), ``min``, ``max``, ``n``
    of ``column`` (finite values only)."""
    ok = runs[runs["status"] == "ok"]
    values = pd.to_numeric(ok[column], errors="coerce") if column in ok.columns else pd.Series(dtype=float)
    frame = pd.DataFrame({"budget": ok["budget"], "lr": ok["lr"].astype(float), "value": values})
    frame = frame[np.isfinite(frame["value"])]
    if frame.empty:
        return pd.DataFrame(columns=["budget", "lr", "mean", "std", "min", "max", "n"])
    g = frame.groupby(["budget", "lr"])["value"]
    out = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1).fillna(0.0), "min": g.min(), "max": g.max(),
                        "n": g.size()}).reset_index()
    return out.sort_values(["budget", "lr"]).reset_index(drop=True)


def _mark_failures(ax, runs: pd.DataFrame, budgets: Sequence[str]) -> None:
    """Failed runs as markers along the bottom of ``ax`` at their rate, labelled ``<status> k/n``."""
    bad = runs[runs["status"] != "ok"]
    if bad.empty:
        return
    trans = ax.get_xaxis_transform()
    for (budget, lr, status), part in bad.groupby(["budget", "lr", "status"]):
        if budget not in budgets:
            continue
        marker, colour = FAILURE_STYLE.get(status, ("d", "black"))
        n_all = int(((runs["budget"] == budget) & (runs["lr"] == lr)).sum())
        y = 0.05 if budget == "fixed" else 0.13
        dot = ax.scatter([lr], [y], transform=trans, marker=marker, color=colour, s=40, zorder=5)
        edge = "right" if lr >= runs["lr"].max() else ("left" if lr <= runs["lr"].min() else "center")
        text = ax.annotate(f"{status} {len(part)}/{n_all}", (lr, y), xycoords=trans, xytext=(0, 6),
                           textcoords="offset points", fontsize=7, color=colour, ha=edge)
        dot.set_in_layout(False)
        text.set_in_layout(False)


def sweep_overview(runs: pd.DataFrame, columns: Sequence[str] | None = None, ncols: int = 3) -> Figure:
    """Each claim metric against the learning rate: mean over seeds with error bars (standard deviation over
    seeds), log x, one line per budget; diverged / collapsed runs are marked along the bottom of every panel.

    Args:
        runs: the run table (``run, lr, seed, budget, status`` and summary columns).
        columns: summary columns to draw (default :func:`claim_columns`).
        ncols: panels per row.
    """
    from matplotlib.figure import Figure

    if runs.empty:
        raise ProbeInputError("the run table is empty: nothing to plot")
    columns = list(claim_columns(runs) if columns is None else columns)
    if not columns:
        columns = []
    n = max(len(columns), 1)
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig = Figure(figsize=(4.3 * ncols, 3.2 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    budgets = [b for b in ("fixed", "matched") if (runs["budget"] == b).any()]
    for ax, column in zip(axes, columns):
        summary = rate_summary(runs, column)
        for budget in budgets:
            part = summary[summary["budget"] == budget]
            if part.empty:
                continue
            style = BUDGET_STYLE.get(budget, BUDGET_STYLE["fixed"])
            ax.errorbar(part["lr"], part["mean"], yerr=part["std"], capsize=3, label=BUDGET_LABEL.get(budget, budget),
                        color="#1565c0" if budget == "fixed" else "#6a1b9a", **style)
        _mark_failures(ax, runs, budgets)
        ax.set_xscale("log")
        rates = runs["lr"].astype(float)
        ax.set_xlim(rates.min() / 1.6, rates.max() * 1.6)  # every rate, failed ones included
        ax.set_xlabel("learning rate")
        ax.set_title(column, fontsize=10)
        ax.grid(True, alpha=0.3)
    for ax in axes[len(columns):]:
        ax.axis("off")
    if not columns:
        axes[0].text(0.5, 0.5, "no claim metric was measured", ha="center", va="center", transform=axes[0].transAxes)
    if len(budgets) > 1 and columns:
        axes[0].legend(fontsize=7, loc="best")
    seeds = runs.groupby(["budget", "lr"]).size()
    n_seeds = f"{seeds.min()}" if seeds.min() == seeds.max() else f"{seeds.min()}-{seeds.max()}"
    fig.suptitle(f"claim metrics vs learning rate ({n_seeds} run(s) per rate: mean over seeds, error bars one "
                 "standard deviation over seeds)", fontsize=10)
    return fig


# --- dynamics ------------------------------------------------------------------------------------------------------


def _symlog_steps(ax, steps: np.ndarray) -> None:
    positive = steps[steps > 0]
    if positive.size:
        ax.set_xscale("symlog", linthresh=float(positive.min()), linscale=0.3)


def metric_over_training(epochs: pd.DataFrame, metric: str, split: str = "test", ax=None, x: str = "step",
                         budget: str | None = None, linestyle: str = "-") -> Any:
    """One metric over training: one line per run, coloured by learning rate; ``x`` is ``step`` or ``epoch``.

    Returns the axes (a new figure's when ``ax`` is None).
    """
    from matplotlib.figure import Figure

    if x not in ("step", "epoch"):
        raise ProbeInputError(f"x must be 'step' or 'epoch', got {x!r}")
    if ax is None:
        fig = Figure(figsize=(5.5, 3.5), layout="constrained")
        ax = fig.subplots()
    rows = epochs[(epochs["metric"] == metric) & (epochs["split"] == split)]
    if budget is not None:
        rows = rows[rows["budget"] == budget]
    undefined = len(rows) > 0 and not np.isfinite(rows["value"].to_numpy(dtype=np.float64)).any()
    rows = rows[np.isfinite(rows["value"].to_numpy(dtype=np.float64))]
    colour, _ = lr_colours(epochs["lr"].unique())
    for _run, part in rows.groupby("run", sort=False):
        part = part.drop_duplicates(["epoch"]).sort_values(x)
        lr = float(part["lr"].iloc[0])
        ax.plot(part[x], part["value"], linestyle=linestyle, color=colour(lr), lw=1.4,
                marker="." if len(part) < 40 else None, label=f"lr {lr:g} seed {int(part['seed'].iloc[0])}")
    if len(rows):
        _symlog_steps(ax, rows[x].to_numpy())
    ax.set_xlabel(f"{x} (symlog)" if len(rows) else x)
    ax.set_ylabel(metric)
    ax.grid(True, alpha=0.3)
    if rows.empty:
        said = "undefined (NaN) in every run" if undefined else "not measured"
        ax.text(0.5, 0.5, f"{split}/{metric} {said}", ha="center", va="center", transform=ax.transAxes,
                color="grey")
    return ax


def dynamics(epochs: pd.DataFrame, budget: str | None = None, x: str = "step") -> Figure:
    """The report's per-run dynamics: :data:`DYNAMICS_PANELS` over training steps, one line per run coloured by
    learning rate (runs of ``budget`` only, when given)."""
    from matplotlib.figure import Figure

    rows = epochs if budget is None else epochs[epochs["budget"] == budget]
    ncols = 4
    nrows = int(np.ceil(len(DYNAMICS_PANELS) / ncols))
    fig = Figure(figsize=(4.2 * ncols + 1, 3.1 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (title, split, metrics, styles) in zip(axes, DYNAMICS_PANELS):
        splits = split.split("|")
        for i, metric in enumerate(metrics):
            for j, s in enumerate(splits):
                style = styles[i] if len(splits) == 1 else styles[j]
                metric_over_training(rows, metric, s, ax=ax, x=x, linestyle=style)
        ax.set_ylabel(metrics[0] if len(metrics) == 1 else metrics[0].rsplit("_", 1)[0])
        ax.set_title(title, fontsize=9)
        # drop the "not measured" text when another line of the panel has data
        if ax.lines:
            for t in list(ax.texts):
                t.remove()
    for ax in axes[len(DYNAMICS_PANELS):]:
        ax.axis("off")
    if len(rows):
        _lr_colourbar(fig, axes.tolist(), rows["lr"].unique())
    label = {"fixed": "fixed-steps runs", "matched": "matched-budget runs"}.get(budget or "", "all runs")
    fig.suptitle(f"dynamics over training ({label}); colour: learning rate", fontsize=10)
    return fig


# --- proposition ---------------------------------------------------------------------------------------------------


def proposition_panels(ratio_curves: pd.DataFrame, proposition: pd.DataFrame, ratio_vs_norm: pd.DataFrame,
                       proposition_steps: pd.DataFrame | None = None) -> Figure:
    """Three panels of the training split, coloured by learning rate.

    Left: ``log R(alpha)`` at every recorded epoch where the proposition applies (the window: ``applicable`` in
    ``proposition``, else ``phase == "window"`` in ``ratio_curves``), one line per (run, epoch); when no epoch of any
    run applies, the early and final epochs dotted. Middle: ``scale_share`` of each step between consecutive window
    epochs (``proposition_steps`` rows with ``both_applicable``) against rate x steps (``lr * step_to``, log axis),
    one line per run. Right: the measured BC/BA loss ratio against the mean logit norm across epochs of each run.
    ``fitted_rate`` is not drawn: it equals the smallest BA margin by definition.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(16, 4.4), layout="constrained")
    ax_r, ax_share, ax_norm = fig.subplots(1, 3)
    steps = proposition_steps if proposition_steps is not None else pd.DataFrame()
    lrs = pd.concat([f["lr"] for f in (ratio_curves, proposition, ratio_vs_norm, steps) if "lr" in f.columns])
    lrs = pd.to_numeric(lrs, errors="coerce")
    colour, _ = lr_colours(lrs.unique() if len(lrs) else [])

    curves = ratio_curves
    if {"applicable", "run", "epoch"} <= set(proposition.columns) and len(curves):
        window = proposition.loc[proposition["applicable"] > 0.5, ["run", "epoch"]].drop_duplicates()
        curves = curves.merge(window, on=["run", "epoch"])
    elif "phase" in curves.columns:
        curves = curves[curves["phase"] == "window"]
    if len(curves):
        for (_run, _epoch), part in curves.groupby(["run", "epoch"], sort=False):
            ax_r.plot(part["alpha"], part["log_ratio"], color=colour(float(part["lr"].iloc[0])), lw=1.0, alpha=0.8)
        title = f"log R(alpha) at the window's epochs ({curves[['run', 'epoch']].drop_duplicates().shape[0]} curves)"
    else:
        for (_run, _phase), part in ratio_curves.groupby(["run", "phase"], sort=False):
            ax_r.plot(part["alpha"], part["log_ratio"], color=colour(float(part["lr"].iloc[0])), lw=1.0,
                      linestyle=":")
        title = "the proposition applies at no recorded epoch\n(dotted: each run's early and final epoch)"
    ax_r.axvline(1.0, color="grey", lw=0.8, linestyle="--")
    ax_r.axhline(0.0, color="black", lw=0.6)
    ax_r.set_xscale("log")
    ax_r.set_yscale("symlog", linthresh=1.0)
    ax_r.set_xlabel("alpha (logits scaled by alpha; 1 = as trained)")
    ax_r.set_ylabel("log R(alpha) = log(mean BC CE / mean BA CE), symlog")
    ax_r.set_title(f"train split: {title}", fontsize=9)
    ax_r.grid(True, alpha=0.3)

    inside = steps[steps["both_applicable"].astype(bool)] if {"both_applicable", "scale_share"} <= set(steps) \
        else pd.DataFrame()
    shown = 0
    for _run, part in (inside.groupby("run", sort=False) if len(inside) else []):
        part = part.sort_values("step_to")
        lr = float(part["lr"].iloc[0])
        ax_share.plot(lr * part["step_to"].astype(float), part["scale_share"], color=colour(lr), marker="o", ms=3,
                      lw=1.0)
        shown += int(np.isfinite(part["scale_share"].to_numpy(dtype=float)).sum())
    for level in (0.0, 1.0):
        ax_share.axhline(level, color="black" if level == 0 else "grey", lw=0.7, linestyle="-" if level == 0 else "--")
    if shown:
        ax_share.set_xscale("log")
        share_title = f"scale share per step inside the window ({shown} steps)"
    else:
        ax_share.text(0.5, 0.5, "no step between two epochs of a window" if proposition_steps is not None
                      else "proposition_steps not given", ha="center", va="center", transform=ax_share.transAxes,
                      color="grey")
        share_title = "scale share per step inside the window"
    ax_share.set_yscale("symlog", linthresh=1.0)
    finite = inside["scale_share"].to_numpy(dtype=float) if len(inside) else np.empty(0)
    finite = finite[np.isfinite(finite)]
    low = min(-0.25, float(finite.min()) * 1.1) if finite.size else -0.25
    high = max(1.25, float(finite.max()) * 1.1) if finite.size else 1.25
    ax_share.set_ylim(low, high)
    ticks = [t for t in (-1e3, -1e2, -10, -1, -0.5, 0, 0.5, 1, 10, 1e2, 1e3) if low <= t <= high]
    ax_share.set_yticks(ticks, [f"{t:g}" for t in ticks])
    ax_share.set_xlabel("rate x steps (lr x global step at the step's end)" + (", log" if shown else ""))
    ax_share.set_ylabel("scale_share = scale / total (symlog)")
    ax_share.set_title(f"train split: {share_title}\nchange of log R(1) due to the logits' scale alone "
                       "(1) or their direction (0)", fontsize=9)
    ax_share.grid(True, alpha=0.3)

    if {"logit_norm", "bc_ba_loss_ratio"} <= set(ratio_vs_norm.columns):
        for _run, part in ratio_vs_norm.groupby("run", sort=False):
            part = part.sort_values("epoch")
            ax_norm.plot(part["logit_norm"], part["bc_ba_loss_ratio"], color=colour(float(part["lr"].iloc[0])),
                         marker=".", lw=1.0)
        ax_norm.set_yscale("log")
    ax_norm.set_xlabel("train logit_norm (mean over samples of ||z||)")
    ax_norm.set_ylabel("train bc_ba_loss_ratio (mean BC CE / mean BA CE)")
    ax_norm.set_title("train split: measured ratio vs logit norm across epochs (one line per run)", fontsize=9)
    ax_norm.grid(True, alpha=0.3)
    if len(lrs):
        _lr_colourbar(fig, [ax_r, ax_share, ax_norm], lrs.unique())
    return fig


# --- claims --------------------------------------------------------------------------------------------------------


def claims_forest(claims: pd.DataFrame) -> Figure:
    """Each claim's effect (best rate's mean minus the lowest rate's, in units of the claim's floor) with its 95%
    interval, per judged scope, coloured by verdict; the band between -1 and 1 is smaller than the floor. Claims
    that are not measurable are listed without a point."""
    from matplotlib.figure import Figure

    names = list(dict.fromkeys(claims["claim"])) if len(claims) else []
    fig = Figure(figsize=(7.5, 0.42 * max(len(names), 1) + 1.8), layout="constrained")
    ax = fig.subplots()
    rates = claims["rates"] if "rates" in claims.columns else pd.Series("all", index=claims.index)
    scopes = {("fixed", "all"): (-0.22, "o", "fixed steps, all rates"),
              ("fixed", "matched"): (0.0, "D", "fixed steps, matched rates"),
              ("matched", "all"): (0.22, "s", "matched budget")}
    ax.axvspan(-1, 1, color="#eeeeee", zorder=0)
    for (_, row), scope in zip(claims.iterrows(), rates):
        offset, marker, _ = scopes.get((row["budget"], scope), (0.0, "o", ""))
        y = names.index(row["claim"]) + offset
        colour = VERDICT_COLOURS.get(row["verdict"], "black")
        floor = row.get("floor", np.nan)
        if not (np.isfinite(row.get("effect", np.nan)) and np.isfinite(floor) and floor > 0):
            continue
        lo, hi = row["effect_low"] / floor, row["effect_high"] / floor
        if np.isfinite(lo) and np.isfinite(hi):
            ax.plot([lo, hi], [y, y], color=colour, lw=2)
        ax.plot([row["effect"] / floor], [y], marker, color=colour)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("symlog", linthresh=2)
    ax.set_xlabel("effect / floor: (best rate's mean - lowest rate's mean) / smallest effect that matters "
                  "(grey band: inside the floor)", fontsize=8)
    ax.grid(True, axis="x", alpha=0.3)
    handles = [ax.plot([], [], "o", color=c, label=v)[0] for v, c in VERDICT_COLOURS.items()]
    handles += [ax.plot([], [], m, color="black", label=label)[0] for _, m, label in scopes.values()]
    ax.legend(handles=handles, fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=4, frameon=False)
    fig.suptitle("claims: effect in units of the floor per judged scope, coloured by verdict", fontsize=10)
    return fig


# --- the mechanism chain -------------------------------------------------------------------------------------------


def chain_figure(epochs_table: pd.DataFrame, runs_table: pd.DataFrame) -> Figure:
    """The mechanism chain's four curves (train ``logit_norm``, train ``cmr@0.9``, sgd ``bc_loss_share``, train
    ``acc_bc``) on the distance axis ``lr x step`` (log, shared by the panels), one panel per budget kind and rate:
    each curve rescaled to [0, 1] per run, then averaged over the rate's ok runs
    (:func:`probe.analyses.chain.chain_curves`). Step 0 has no place on a log axis and is not drawn (it still enters
    the rescaling)."""
    from matplotlib.figure import Figure

    from probe.analyses.chain import CURVES, chain_curves

    curves = chain_curves(epochs_table, runs_table)
    panels = list(curves.groupby(["budget", "lr"], sort=True).groups) if len(curves) else []
    ncols = max(1, min(len(panels), 4))
    nrows = max(1, int(np.ceil(len(panels) / ncols)))
    fig = Figure(figsize=(4.4 * ncols + 0.6, 3.4 * nrows + 0.9), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True).ravel()
    styles = {"logit_norm": ("#1565c0", "-"), "cmr": ("#c62828", "-"), "bc_loss_share": ("#ef6c00", "--"),
              "acc_bc": ("#2e7d32", "-")}
    for ax, (budget, lr) in zip(axes, panels):
        part = curves[(curves["budget"] == budget) & (curves["lr"] == lr)]
        for key, split, metric in CURVES:
            line = part[(part["curve"] == key) & (part["distance"] > 0)].sort_values("distance")
            colour, style = styles[key]
            ax.plot(line["distance"], line["value"], color=colour, linestyle=style, lw=1.5,
                    marker="." if len(line) < 40 else None, label=f"{split}/{metric}")
        n_runs = int(part["n_runs"].max()) if len(part) else 0
        ax.set_xscale("log")
        ax.set_title(f"lr {lr:g} ({BUDGET_LABEL.get(budget, budget)}; mean of {n_runs} run(s))", fontsize=9)
        ax.set_xlabel("distance lr x step (log; step 0 not shown)")
        ax.grid(True, alpha=0.3)
    for ax in axes[::ncols]:
        ax.set_ylabel("rescaled to [0, 1] per run")
    for ax in axes[len(panels):]:
        ax.axis("off")
    if panels:
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=len(CURVES), fontsize=8,
                   frameon=False)
    else:
        axes[0].text(0.5, 0.5, "no ok run with the chain's curves", ha="center", va="center", color="grey",
                     transform=axes[0].transAxes)
    fig.suptitle("mechanism chain: train split (logit_norm, cmr@0.9, acc_bc) and the minibatches SGD saw "
                 "(bc_loss_share), aligned on lr x step", fontsize=10)
    return fig
