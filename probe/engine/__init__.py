"""The analysis engine: which runs and epochs to read (:mod:`~probe.engine.plan`), the metric cache
(:mod:`~probe.engine.cache`), :func:`analyze` (:mod:`~probe.engine.engine`), the result and its files
(:mod:`~probe.engine.result`) and the attribution grids of the report (:mod:`~probe.engine.grids`).

It sits between the analyses (``probe.analyses``, which it runs) and the report (``probe.report``, which draws its
results) and imports neither the report nor the command line. The names below load their module on first access,
so that reading an analysis back (:func:`load_analysis`) imports neither torch nor h5py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from probe.lazy import lazy_attributes

#: public name -> module that defines it.
_LAZY = {
    "analyze": "probe.engine.engine",
    "AttributionGrid": "probe.engine.grids", "AttributionGrids": "probe.engine.grids",
    "attribution_grids": "probe.engine.grids",
    "AnalysisResult": "probe.engine.result", "load_analysis": "probe.engine.result",
    "summary_text": "probe.engine.result", "write_tables": "probe.engine.result",
}

__all__ = ["AnalysisResult", "AttributionGrid", "AttributionGrids", "analyze", "attribution_grids", "load_analysis",
           "summary_text", "write_tables"]

if TYPE_CHECKING:
    from probe.engine.engine import analyze
    from probe.engine.grids import AttributionGrid, AttributionGrids, attribution_grids
    from probe.engine.result import AnalysisResult, load_analysis, summary_text, write_tables

__getattr__ = lazy_attributes(__name__, _LAZY)
