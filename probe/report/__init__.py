"""Figures and the self-contained HTML report of ``probe analyze`` (and attribution heatmap grids)."""

from probe.report.html import Section, analysis_sections, render_page, table_html, write_report

__all__ = ["Section", "analysis_sections", "render_page", "table_html", "write_report"]
