"""Figures of an :class:`~probe.analyses.engine.result.AnalysisResult` for notebooks and scripts: the report's
figures, one call each, returning a :class:`matplotlib.figure.Figure`.

Example:
    >>> import probe
    >>> from probe.report import plot_overview, plot_metric
    >>> result = probe.load_analysis("analyses/demo")           # doctest: +SKIP
    >>> plot_overview(result); plot_metric(result, "wga")       # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from probe.report.figures import (
    chain_figure,
    claims_forest,
    dynamics,
    metric_over_training,
    proposition_panels,
    sweep_overview,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from probe.analyses.engine.result import AnalysisResult

__all__ = ["plot_chain", "plot_claims", "plot_dynamics", "plot_metric", "plot_overview", "plot_proposition"]


def plot_overview(result: AnalysisResult, columns: Sequence[str] | None = None) -> Figure:
    """Each claim's metric against the learning rate (log x, mean over seeds with error bars, failures marked)."""
    return sweep_overview(result.runs, columns=columns)


def plot_metric(result: AnalysisResult, metric: str, split: str = "test", ax=None, x: str = "step"):
    """One metric over training, one line per run coloured by learning rate (a new figure, or drawn into ``ax`` and
    returning it)."""
    drawn = metric_over_training(result.epochs, metric, split, ax=ax, x=x)
    return drawn.figure if ax is None else drawn


def plot_dynamics(result: AnalysisResult, budget: str | None = None) -> Figure:
    """The per-run dynamics panels of the report (accuracy by group, logit norms, cmr@0.9, loss share, parameter
    norm)."""
    return dynamics(result.epochs, budget=budget)


def plot_proposition(result: AnalysisResult) -> Figure:
    """R(alpha) at the epochs where the proposition applies, the share of each step's growth of log R due to the
    logits' scale (against rate x steps), and the measured ratio against the logit norm."""
    return proposition_panels(result.ratio_curves, result.proposition, result.ratio_vs_norm, result.proposition_steps)


def plot_claims(result: AnalysisResult) -> Figure:
    """Each claim's effect in units of its floor, with its 95% interval, per budget, coloured by verdict."""
    return claims_forest(result.claims)


def plot_chain(result: AnalysisResult) -> Figure:
    """The mechanism chain's four curves on the distance axis lr x step, one panel per budget and rate."""
    return chain_figure(result.epochs, result.runs)
