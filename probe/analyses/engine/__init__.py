"""The analysis engine: which runs and epochs to read (:mod:`~probe.analyses.engine.plan`), the metric cache
(:mod:`~probe.analyses.engine.cache`), :func:`analyze` (:mod:`~probe.analyses.engine.engine`), the result and its files
(:mod:`~probe.analyses.engine.result`) and the attribution grids of the report (:mod:`~probe.analyses.engine.grids`).

It sits between the analyses (``probe.analyses``, which it runs) and the report (``probe.report``, which draws its
results) and imports neither the report nor the command line. The names below load their module on first access,
so that reading an analysis back (:func:`load_analysis`) imports neither torch nor h5py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from probe.lazy import lazy_attributes

#: public name -> module that defines it.
_LAZY = {
    "analyze": "probe.analyses.engine.engine",
    "AttributionGrid": "probe.analyses.engine.grids", "AttributionGrids": "probe.analyses.engine.grids",
    "attribution_grids": "probe.analyses.engine.grids",
    "AnalysisResult": "probe.analyses.engine.result", "load_analysis": "probe.analyses.engine.result",
    "summary_text": "probe.analyses.engine.result", "write_tables": "probe.analyses.engine.result",
}

__all__ = ["AnalysisResult", "AttributionGrid", "AttributionGrids", "analyze", "attribution_grids", "load_analysis",
           "summary_text", "write_tables"]

if TYPE_CHECKING:
    from probe.analyses.engine.engine import analyze
    from probe.analyses.engine.grids import AttributionGrid, AttributionGrids, attribution_grids
    from probe.analyses.engine.result import AnalysisResult, load_analysis, summary_text, write_tables

__getattr__ = lazy_attributes(__name__, _LAZY)
