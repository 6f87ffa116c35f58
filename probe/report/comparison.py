"""The report's comparison of the learning rate with the other swept knobs: the verdict of every property along
every axis side by side, the statistics behind them, large lr + penalty against either alone, and a Pareto-style
figure of robustness against compressibility with one curve per axis.

It draws :attr:`AnalysisResult.comparison <probe.analyses.engine.result.AnalysisResult>` and ``dominance`` (computed
by :mod:`probe.analyses.comparison`) and the seed-averaged points of
:func:`probe.analyses.comparison.comparison_points`; it computes no statistic.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from probe.analyses.comparison import COMPRESSIBILITY, ROBUSTNESS, comparison_points, orientation, verdict_matrix
from probe.report.figcache import FigureCache, write_if_changed
from probe.report.html import Section, table_html
from probe.report.tables import badge, fmt

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["comparison_section", "pareto_figure"]

#: one colour per curve (tab10 without its grey), then repeated with another marker.
CURVE_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")
CURVE_MARKERS = ("o", "s", "^", "D")


def _curve_label(axis: str, at: str, sweep: str, levels: list[float]) -> str:
    where = f" at {at}" if at else ""
    ends = f"{levels[0]:g} → {levels[-1]:g}" if len(levels) > 1 else f"{levels[0]:g}"
    return f"{axis}{where} ({ends})" if sweep == axis else f"{axis}{where} ({ends}; sweep {sweep})"


def pareto_figure(points: pd.DataFrame, x: str = COMPRESSIBILITY, y: str = ROBUSTNESS) -> Figure:
    """Robustness (``y``, seed mean with standard-error bars) against compressibility (``x``), one curve per
    (sweep, axis, at) through its levels in the direction of more regularisation (arrows; the last level a larger
    marker), the Pareto front of all points ringed in black and joined by a dotted line.

    Args:
        points: :func:`probe.analyses.comparison.comparison_points`.
        x, y: the run-table columns the points were taken from (axis labels).
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.6, 5.6), layout="constrained")  # not pyplot: no figure left open
    ax = fig.subplots()
    curves = list(points.groupby(["sweep", "axis", "at"], sort=False))
    for i, ((sweep, axis, at), part) in enumerate(curves):
        part = part.sort_values("step")
        colour, marker = CURVE_COLOURS[i % len(CURVE_COLOURS)], CURVE_MARKERS[(i // len(CURVE_COLOURS)) % 4]
        xs, ys = part["x_mean"].to_numpy(float), part["y_mean"].to_numpy(float)
        ax.errorbar(xs, ys, xerr=part["x_sem"].fillna(0), yerr=part["y_sem"].fillna(0), color=colour,
                    marker=marker, ms=5, lw=0, elinewidth=0.8, capsize=2, alpha=0.9,
                    label=_curve_label(axis, at, sweep, part["level"].tolist()))
        for (x0, y0), (x1, y1) in zip(zip(xs[:-1], ys[:-1]), zip(xs[1:], ys[1:])):
            ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                        arrowprops={"arrowstyle": "-|>", "color": colour, "lw": 1.4, "alpha": 0.85,
                                    "shrinkA": 4, "shrinkB": 4})
        ax.plot(xs[-1:], ys[-1:], marker=marker, ms=10, color=colour, mec="white", mew=1.2, lw=0)
        ax.annotate(f"{part['level'].iloc[-1]:g}", (xs[-1], ys[-1]), textcoords="offset points", xytext=(6, 5),
                    fontsize=7, color=colour)
    front = points[points["pareto"]].sort_values("x_mean")
    if len(front):
        ax.plot(front["x_mean"], front["y_mean"], ls=":", color="black", lw=1, zorder=0)
        ax.scatter(front["x_mean"], front["y_mean"], s=190, facecolors="none", edgecolors="black", lw=1.2,
                   label="Pareto front (no point better in both)", zorder=3)
    ax.set_xlabel(f"compressibility: {x.split(':', 1)[1]} (higher: keeps more accuracy when pruned)")
    ax.set_ylabel(f"robustness: {y.split(':', 1)[1]}")
    ax.set_title("Each knob turned towards more regularisation (arrows; large marker = last level)\n"
                 "final epoch, mean ± standard error over seeds of the runs with status ok", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return fig


def _orientation_html(comparison: pd.DataFrame) -> str:
    rows = [{"axis": a, "more regularisation": orientation(a).orientation} for a in dict.fromkeys(comparison["axis"])]
    return table_html(pd.DataFrame(rows), link_header=False, text_columns=["axis", "more regularisation"])


def _statistics_html(comparison: pd.DataFrame) -> str:
    shown = comparison.assign(
        interval=[f"[{fmt(lo)}, {fmt(hi)}]" for lo, hi in zip(comparison["effect_low"], comparison["effect_high"])])
    cols = ["sweep", "axis", "at", "property", "metric", "direction", "effect", "interval", "effect_level",
            "spearman", "p_adjusted", "floor", "equivalence_p", "n_levels", "n_runs", "min_seeds", "verdict", "reason"]
    return table_html(shown[cols], formatters={"verdict": badge, "interval": lambda v: v},
                      link_header=False, text_columns=["sweep", "axis", "at", "property", "metric", "reason"])


def _dominance_html(dominance: pd.DataFrame) -> str:
    if dominance.empty:
        return ("<p>No sweep grids <code>lr</code> with a penalty (<code>l1</code>, <code>l2</code>, "
                "<code>weight_decay</code>), so whether large lr + penalty dominates either alone is not asked.</p>")
    cols = ["sweep", "penalty", "penalty_value", "large_lr", "small_lr", "baseline", "metric", "mean_combination",
            "mean_baseline", "difference", "low", "high", "outcome", "verdict", "overall", "reason"]
    summary = dominance.drop_duplicates(["sweep", "penalty", "penalty_value"])
    lines = "".join(f"<li>{html.escape(r.sweep)}: lr {r.large_lr:g} + {html.escape(r.penalty)} {r.penalty_value:g} "
                    f"against lr {r.large_lr:g} alone and against {html.escape(r.penalty)} {r.penalty_value:g} at lr "
                    f"{r.small_lr:g}: {badge(r.overall)}</li>" for r in summary.itertuples())
    return (f"<ul class=\"headline\">{lines}</ul>"
            + table_html(dominance[cols], formatters={"outcome": badge, "verdict": badge, "overall": badge},
                         link_header=False, text_columns=["sweep", "penalty", "baseline", "metric", "reason"]))


def comparison_section(result: Any, fig_dir: Path, cache: FigureCache | None = None) -> list[Section]:
    """The comparison section (none when ``result.comparison`` is empty); the Pareto figure is also written to
    ``fig_dir/comparison_pareto.png``."""
    comparison = getattr(result, "comparison", None)
    if comparison is None or comparison.empty:
        return []
    dominance = getattr(result, "dominance", pd.DataFrame())
    figures = []
    points = comparison_points(result.runs, result.sources)
    if len(points) and np.isfinite(points["x_mean"]).any():
        png = (cache or FigureCache(None)).png("comparison_pareto", pareto_figure, points)
        result.files["figures/comparison_pareto.png"] = write_if_changed(fig_dir / "comparison_pareto.png", png)
        figures.append((png, f"Robustness ({ROBUSTNESS.split(':', 1)[1]}) against compressibility "
                             f"({COMPRESSIBILITY.split(':', 1)[1]}) along each swept axis; points are levels of the "
                             "axis, seed means with standard-error bars; black rings mark the Pareto front."))
    matrix = verdict_matrix(comparison)
    metrics = [c for c in matrix.columns if c not in ("sweep", "axis", "at", "orientation")]
    text = ("<p>Each swept axis read in the direction of more regularisation (the direction in which the study "
            "states its claims about large learning rates). For every property metric, at the final epoch, the "
            "claims table's statistics along the axis: Spearman's rho with the level, one-sided permutation p "
            "Holm-adjusted over the metrics of one axis, the effect (best level's mean minus the least regularised "
            "level's) against the floor, and the equivalence test; verdicts <em>agrees</em> (the metric rises "
            "towards more regularisation, as with a larger rate), <em>disagrees</em>, <em>no effect</em>, "
            "<em>cannot tell</em>, <em>not measurable</em>. A grid is compared along each axis at each level of "
            "the other (<code>at</code>). See docs/compare.md.</p>"
            + _orientation_html(comparison)
            + "<h3>Verdict per axis and property</h3>"
            + table_html(matrix, formatters={m: badge for m in metrics},
                         text_columns=["sweep", "axis", "at", "orientation"])
            + "<h3>Large learning rate + penalty against either alone</h3>" + _dominance_html(dominance)
            + "<h3>The statistics behind each verdict</h3>" + _statistics_html(comparison))
    return [Section("Comparison with other knobs", text, figures, anchor="comparison")]
