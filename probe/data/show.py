"""A PNG grid of samples, one row per group, so the correlation between label and attribute can be seen."""

from __future__ import annotations

from pathlib import Path

import torch

from probe.data.base import SpuriousDataset


def display_image(x: torch.Tensor) -> torch.Tensor:
    """One input as an ``(H, W, 3)`` or ``(H, W)`` array in [0, 1] for ``imshow``.

    Images already in [0, 1] are shown as they are; normalised images are min-max rescaled; a feature vector of
    length ``d`` becomes a ``(1, d)`` strip.
    """
    x = x.detach().float().cpu()
    if x.dim() == 1:
        x = x[None]
        lo, hi = x.min(), x.max()
        return (x - lo) / (hi - lo) if hi > lo else torch.zeros_like(x)
    if float(x.min()) < 0 or float(x.max()) > 1:
        lo, hi = x.min(), x.max()
        x = (x - lo) / (hi - lo) if hi > lo else torch.zeros_like(x)
    return x[0] if x.shape[0] == 1 else x[:3].permute(1, 2, 0)


def groups_to_show(group_counts: torch.Tensor, ba_of_group: torch.Tensor, max_groups: int) -> list[int]:
    """Non-empty groups; when there are more than ``max_groups``, the largest BA groups and BC groups, half each."""
    present = [g for g in range(len(group_counts)) if group_counts[g] > 0]
    if len(present) <= max_groups:
        return present
    ba = sorted((g for g in present if ba_of_group[g]), key=lambda g: -int(group_counts[g]))
    bc = sorted((g for g in present if not ba_of_group[g]), key=lambda g: -int(group_counts[g]))
    n_ba = min(len(ba), max_groups // 2)
    chosen = ba[:n_ba] + bc[: max_groups - n_ba]
    return sorted(chosen)


def save_sample_grid(dataset: SpuriousDataset, out: str | Path, split: str = "train", per_group: int = 8,
                     max_groups: int = 20, seed: int = 0) -> Path:
    """Write a PNG with up to ``per_group`` random samples of each group of ``split`` (one row per group)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = dataset.split(split)
    group = s.group.cpu()
    counts = torch.bincount(group, minlength=dataset.num_groups)
    ba_of_group = torch.zeros(dataset.num_groups, dtype=torch.bool)
    is_bc = s.is_bc.cpu()
    for g in range(dataset.num_groups):
        sel = group == g
        ba_of_group[g] = bool(sel.any()) and not bool(is_bc[sel][0])
    rows = groups_to_show(counts, ba_of_group, max_groups)
    gen = torch.Generator().manual_seed(seed)
    shape = dataset.input_shape
    aspect = (shape[-1] / shape[-2]) if len(shape) == 3 else 4.0
    cell = 1.1
    fig, axes = plt.subplots(len(rows), per_group, figsize=(per_group * cell * min(aspect, 4), len(rows) * cell + 0.4),
                             squeeze=False)
    for r, g in enumerate(rows):
        members = torch.nonzero(group == g).flatten()
        pick = members[torch.randperm(len(members), generator=gen)[:per_group]]
        xs = s.inputs(pick) if len(pick) else []
        y, a = divmod(g, dataset.num_attrs)
        kind = "BA" if ba_of_group[g] else "BC"
        for c in range(per_group):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(pick):
                img = display_image(xs[c])
                ax.imshow(img.numpy(), cmap="gray" if img.dim() == 2 else None, vmin=0, vmax=1,
                          interpolation="nearest", aspect="auto" if len(shape) == 1 else "equal")
        axes[r, 0].set_ylabel(f"g{g} y={y} a={a}\n{kind} n={int(counts[g])}", fontsize=7, rotation=0, ha="right",
                              va="center")
    fig.suptitle(f"{dataset.name} / {split}: one row per group (y = core label, a = spurious attribute)", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out
