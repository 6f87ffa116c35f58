"""HTML tables and the small formatting helpers every report section shares."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from probe.report.glossary import glossary_key, metric_link

__all__ = ["badge", "fmt", "table_html"]


def starts_with(values: pd.Series, prefix: str) -> np.ndarray:
    """``values.astype(str).str.startswith(prefix)`` as a bool array, testing each distinct value once (the epochs
    table repeats a few hundred metric names over its rows)."""
    distinct = pd.unique(values.to_numpy())
    hits = [v for v in distinct if str(v).startswith(prefix)]
    return values.isin(hits).to_numpy(dtype=bool)


def fmt(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` decimals (``–`` for None / NaN, 2 significant digits when very large or small) or
    escaped text."""
    if value is None:
        return "–"
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            return "–"
        if value != 0 and (abs(value) >= 1e4 or abs(value) < 10.0 ** -(digits - 1)):
            return f"{value:.2g}"
        return f"{value:.{digits}f}".rstrip("0").rstrip(".") if "." in f"{value:.{digits}f}" else f"{value}"
    if isinstance(value, (np.integer,)):
        return str(int(value))
    return html.escape(str(value))


def badge(value: str, kind: str = "v") -> str:
    """A verdict or status word in a coloured span (class ``<kind>-<value>``)."""
    cls = "".join(c if c.isalnum() else "-" for c in str(value).lower())
    return f'<span class="verdict {kind}-{cls}">{html.escape(str(value))}</span>'


def table_html(frame: pd.DataFrame, *, formatters: dict[str, Any] | None = None, link_header: bool = True,
               text_columns: Sequence[str] = ()) -> str:
    """An HTML table of ``frame``; column names that are metric ids link to the glossary; cells pass through
    ``formatters[column](value) -> html`` when given, else are formatted as numbers / escaped text."""
    formatters = formatters or {}
    head = []
    for col in frame.columns:
        name = str(col)
        label = metric_link(name) if link_header and glossary_key(name) else html.escape(name)
        cls = ' class="text"' if col in text_columns else ""
        head.append(f"<th{cls}>{label}</th>")
    rows = []
    for _, row in frame.iterrows():
        cells = []
        for col in frame.columns:
            value = row[col]
            text = formatters[col](value) if col in formatters else fmt(value)
            cls = ' class="text"' if col in text_columns else ""
            cells.append(f"<td{cls}>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="wide"><table><thead><tr>{"".join(head)}</tr></thead><tbody>{"".join(rows)}</tbody>'
            "</table></div>")
