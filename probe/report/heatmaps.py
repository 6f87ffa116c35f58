"""Attribution heatmap grids: rows are models (the learning rates of a sweep, or the epochs of a run), columns are
the same samples. Each cell shows ``sum_c |attribution|`` over its image (grayscale or RGB underlay), scaled to
[0, 1] per cell, with the core mask outlined by a contour.

Figures are built with :class:`matplotlib.figure.Figure` directly (no pyplot state), so they render in scripts,
in the CLI and in notebooks alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from probe.errors import ProbeInputError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from probe.analyses.attribution import Attributions

__all__ = ["attribution_map", "heatmap_grid", "plot_attributions", "save_grid", "underlay"]


def _numpy(a) -> np.ndarray:
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)


def _as_images(a: np.ndarray) -> np.ndarray:
    """``(n, C, H, W)`` from ``(n, C, H, W)``, ``(n, H, W)`` or feature vectors ``(n, d)`` (shown as a 1 x d strip)."""
    if a.ndim == 4:
        return a
    if a.ndim == 3:
        return a[:, None]
    if a.ndim == 2:
        return a[:, None, None, :]
    raise ProbeInputError(f"cannot draw arrays of shape {a.shape} as images")


def underlay(images) -> np.ndarray:
    """``(n, H, W, 3)`` RGB in [0, 1]: each image min-max scaled on its own; one channel is shown as gray."""
    x = _as_images(_numpy(images).astype(np.float64))
    lo = x.min(axis=(1, 2, 3), keepdims=True)
    hi = x.max(axis=(1, 2, 3), keepdims=True)
    x = (x - lo) / np.where(hi > lo, hi - lo, 1.0)
    if x.shape[1] == 1:
        x = np.repeat(x, 3, axis=1)
    elif x.shape[1] != 3:
        x = np.repeat(x.mean(axis=1, keepdims=True), 3, axis=1)
    return x.transpose(0, 2, 3, 1)


def attribution_map(attributions) -> np.ndarray:
    """``(n, H, W)``: ``sum_c |A[c]|`` scaled by each sample's maximum to [0, 1] (all-zero maps stay zero)."""
    m = np.abs(_as_images(_numpy(attributions).astype(np.float64))).sum(axis=1)
    top = m.reshape(len(m), -1).max(axis=1)[:, None, None]
    return m / np.where(top > 0, top, 1.0)


def heatmap_grid(
    images,
    attributions_rows: Sequence,
    row_labels: Sequence[str],
    core_masks=None,
    title: str | None = None,
    col_labels: Sequence[str] | None = None,
    show_images: bool = True,
    cmap: str = "inferno",
    alpha: float = 0.6,
    cell_inches: float = 1.4,
) -> Figure:
    """A grid of attribution heatmaps.

    Args:
        images: ``(n, C, H, W)``, ``(n, H, W)`` or ``(n, d)``: the samples (columns).
        attributions_rows: one array per row, each with the shape of ``images``.
        row_labels: one label per row (``"lr=0.1"``, ``"epoch 3"``).
        core_masks: ``(n, H, W)`` / ``(n, d)`` bool, outlined in cyan on every cell; None for no outline.
        title: figure title.
        col_labels: one label per column (for example ``"y=3 a=7"``).
        show_images: add a first row with the plain images.
        cmap, alpha: colour map of the heatmaps and their opacity over the underlay.
        cell_inches: size of one cell.

    Returns:
        The :class:`~matplotlib.figure.Figure`.
    """
    base = underlay(images)
    n = len(base)
    if len(attributions_rows) != len(row_labels):
        raise ProbeInputError(f"{len(attributions_rows)} attribution rows but {len(row_labels)} row labels")
    maps = []
    for label, row in zip(row_labels, attributions_rows):
        m = attribution_map(row)
        if m.shape != base.shape[:3]:
            raise ProbeInputError(f"row {label!r}: attributions of shape {_numpy(row).shape} do not match the images")
        maps.append(m)
    masks = None
    if core_masks is not None:
        masks = _as_images(_numpy(core_masks).astype(np.float64))[:, 0]
        if masks.shape != base.shape[:3]:
            raise ProbeInputError(f"core masks of shape {_numpy(core_masks).shape} do not match the images")
    rows = ([None] if show_images else []) + maps
    labels = (["input"] if show_images else []) + list(row_labels)
    h, w = base.shape[1:3]
    aspect = w / h
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(2.0, cell_inches * aspect * n + 1.2), cell_inches * len(rows) + (0.5 if title else 0.2)))
    axes = fig.subplots(len(rows), n, squeeze=False)
    for r, (heat, label) in enumerate(zip(rows, labels)):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(base[c], interpolation="nearest", aspect="auto")
            if heat is not None:
                ax.imshow(heat[c], cmap=cmap, alpha=alpha, vmin=0.0, vmax=1.0, interpolation="nearest", aspect="auto")
            if masks is not None and masks[c].any() and not masks[c].all() and min(h, w) > 1:
                ax.contour(masks[c], levels=[0.5], colors="cyan", linewidths=0.8)
            elif masks is not None and min(h, w) == 1:
                cols = np.nonzero(masks[c][0] > 0.5)[0]
                ax.scatter(cols, np.zeros_like(cols), marker="s", s=6, c="cyan")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
            if r == 0 and col_labels is not None:
                ax.set_title(col_labels[c], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.08, right=0.99, bottom=0.02, top=0.9 if title else 0.95, wspace=0.05, hspace=0.08)
    return fig


def save_grid(path: str | Path, images, attributions_rows: Sequence, row_labels: Sequence[str], core_masks=None,
              title: str | None = None, dpi: int = 110, **options) -> Path:
    """:func:`heatmap_grid` written to ``path`` (PNG by its suffix; folders are created). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = heatmap_grid(images, attributions_rows, row_labels, core_masks=core_masks, title=title, **options)
    fig.savefig(path, dpi=dpi)
    return path


def _row_label(r: Attributions, by: str) -> str:
    return f"epoch {r.epoch}" if by == "epoch" else f"lr={r.lr:g} s{r.seed}"


def plot_attributions(results: Sequence[Attributions], row_labels: Sequence[str] | None = None,
                      title: str | None = None, **options) -> Figure:
    """Notebook helper: one row per :class:`~probe.analyses.attribution.Attributions` (same samples in each),
    labelled by epoch when all rows come from one run, otherwise by learning rate and seed."""
    if not results:
        raise ProbeInputError("nothing to plot: no attributions given")
    first = results[0]
    for r in results[1:]:
        if not np.array_equal(r.index, first.index):
            raise ProbeInputError("rows of one grid must attribute the same samples")
    if row_labels is None:
        by = "epoch" if len({r.run_name for r in results}) == 1 else "lr"
        row_labels = [_row_label(r, by) for r in results]
    col_labels = [f"y={int(y)} a={int(a)}" for y, a in zip(first.y, first.a)]
    if title is None:
        sg = f"+smoothgrad({first.smoothgrad:g})" if first.smoothgrad is not None else ""
        title = f"{first.method}{sg} attributions, {first.split} split"
    return heatmap_grid(first.inputs, [r.values for r in results], row_labels, core_masks=first.core_mask,
                        title=title, col_labels=col_labels, **options)
