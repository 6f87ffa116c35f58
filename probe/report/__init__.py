"""Figures and the self-contained HTML report of an analysis: a pure consumer of
:class:`~probe.analyses.engine.result.AnalysisResult` (and of attribution grids the engine computed).

``write_report(result, grids)`` writes ``report.html``; ``plot_overview(result)``, ``plot_metric(result, metric)``,
``plot_dynamics(result)``, ``plot_proposition(result)``, ``plot_chain(result)`` and ``plot_claims(result)`` draw its
figures in a notebook.
"""

from probe.report.html import Section, analysis_sections, render_page, table_html
from probe.report.plots import plot_chain, plot_claims, plot_dynamics, plot_metric, plot_overview, plot_proposition
from probe.report.write import write_report

__all__ = ["Section", "analysis_sections", "plot_chain", "plot_claims", "plot_dynamics", "plot_metric", "plot_overview",
           "plot_proposition", "render_page", "table_html", "write_report"]
