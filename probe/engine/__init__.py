"""The analysis engine: which runs and epochs to read (:mod:`~probe.engine.plan`), the metric cache
(:mod:`~probe.engine.cache`), :func:`analyze` (:mod:`~probe.engine.engine`), the result and its files
(:mod:`~probe.engine.result`) and the attribution grids of the report (:mod:`~probe.engine.grids`).

It sits between the analyses (``probe.analyses``, which it runs) and the report (``probe.report``, which draws its
results) and imports neither the report nor the command line.
"""

from probe.engine.engine import analyze
from probe.engine.grids import AttributionGrid, AttributionGrids, attribution_grids
from probe.engine.result import AnalysisResult, load_analysis, summary_text, write_tables

__all__ = ["AnalysisResult", "AttributionGrid", "AttributionGrids", "analyze", "attribution_grids", "load_analysis",
           "summary_text", "write_tables"]
