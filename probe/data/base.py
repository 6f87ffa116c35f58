"""The dataset protocol every trainer and analysis relies on.

A :class:`SpuriousDataset` holds named :class:`Split` objects. Each split exposes, per sample, the input ``x``,
the core label ``y`` (0..K-1), the spurious attribute ``a`` (0..A-1), ``group = y * A + a``, the flag ``is_bc``
(bias-conflicting) and a stable ``index`` that identifies the sample across epochs and runs. Where a dataset makes
them meaningful, boolean ``core_mask`` / ``spurious_mask`` mark the input pixels (or input features) that carry the
core and the spurious feature.

Small datasets keep ``x`` as one tensor (moved once to the training device); large ones give ``x`` as a map-style
``torch.utils.data.Dataset`` that decodes on demand and is streamed through a ``DataLoader``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from probe.errors import DataFormatError, ProbeError, ProbeInputError

#: BA/BC rules, as recorded in ``SpuriousDataset.bc_rule``.
BC_RULE_LABEL_SPACE = "label-space: bias-aligned iff a == y"
BC_RULE_MAJORITY = "majority: bias-aligned iff a is the attribute most common for class y in the training split"


@dataclass
class Split:
    """One split of a dataset. All per-sample tensors have length ``n`` and share one order.

    Attributes:
        name: ``"train"``, ``"val"`` or ``"test"``.
        x: ``(n, *input_shape)`` float32 tensor, or a map-style dataset whose item ``i`` is sample ``i``'s input.
        y: ``(n,)`` int64 core labels.
        a: ``(n,)`` int64 spurious attributes.
        is_bc: ``(n,)`` bool, True for bias-conflicting samples.
        index: ``(n,)`` int64 stable sample ids.
        num_attrs: ``A``, so that ``group = y * A + a``.
        core_mask, spurious_mask: ``(n, *mask_shape)`` bool, or a map-style dataset of masks, or None. For images
            ``mask_shape`` is ``(H, W)`` (channels are summed before a mask is applied); for feature vectors it is
            ``(d,)``.
    """

    name: str
    x: Any
    y: torch.Tensor
    a: torch.Tensor
    is_bc: torch.Tensor
    index: torch.Tensor
    num_attrs: int
    core_mask: Any = None
    spurious_mask: Any = None

    def __post_init__(self) -> None:
        n = len(self.y)
        for name in ("a", "is_bc", "index"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"split {self.name!r}: {name} has {len(getattr(self, name))} entries, y has {n}")
        if len(self.x) != n:
            raise ValueError(f"split {self.name!r}: x has {len(self.x)} samples, y has {n}")

    def __len__(self) -> int:
        return len(self.y)

    @property
    def group(self) -> torch.Tensor:
        """``y * A + a``."""
        return self.y * self.num_attrs + self.a

    @property
    def in_memory(self) -> bool:
        """True when ``x`` is one tensor (no decoding per batch)."""
        return isinstance(self.x, torch.Tensor)

    @property
    def has_masks(self) -> bool:
        return self.core_mask is not None

    def to(self, device: torch.device | str) -> Split:
        """A copy whose in-memory tensors live on ``device`` (lazy sources stay where they are)."""

        def move(t: Any) -> Any:
            return t.to(device) if isinstance(t, torch.Tensor) else t

        return replace(
            self,
            x=move(self.x),
            y=move(self.y),
            a=move(self.a),
            is_bc=move(self.is_bc),
            index=move(self.index),
            core_mask=move(self.core_mask),
            spurious_mask=move(self.spurious_mask),
        )

    def inputs(self, positions: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
        """The inputs at ``positions`` (a 1-d int64 tensor of positions within this split)."""
        if self.in_memory:
            out = self.x[positions.to(self.x.device)]
        else:
            out = torch.stack([self.x[int(i)] for i in positions.tolist()])
        return out if device is None else out.to(device, non_blocking=True)

    def masks(self, positions: torch.Tensor, kind: str = "core") -> torch.Tensor | None:
        """Boolean ``core`` or ``spurious`` masks at ``positions``, or None where the dataset has none."""
        source = self.core_mask if kind == "core" else self.spurious_mask
        if source is None:
            return None
        if isinstance(source, torch.Tensor):
            return source[positions.to(source.device)]
        return torch.stack([torch.as_tensor(source[int(i)]) for i in positions.tolist()]).bool()

    def batches(
        self,
        batch_size: int,
        *,
        order: torch.Tensor | None = None,
        device: torch.device | str | None = None,
        num_workers: int = 0,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(positions, x)`` batches in ``order`` (default: 0..n-1; may be shorter than the split, e.g. the rest
        of a pass on resume); the last batch may be smaller.

        In-memory splits are sliced on their own device. Lazy splits go through a ``DataLoader`` with
        ``num_workers`` workers and pinned memory when the target is CUDA.
        """
        n = len(self)
        if order is None:
            order = torch.arange(n)
        if self.in_memory:
            order = order.to(self.x.device)
            move = device is not None and torch.device(device) != self.x.device
            for start in range(0, len(order), batch_size):
                positions = order[start : start + batch_size]
                xb = self.x.index_select(0, positions)  # the same rows as x[positions], with less dispatch
                yield positions, (xb.to(device, non_blocking=True) if move else xb)
            return
        chunks = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
        pin = device is not None and torch.device(device).type == "cuda"
        loader = torch.utils.data.DataLoader(
            _PositionsDataset(self.x, chunks),
            batch_size=None,
            num_workers=num_workers,
            pin_memory=pin,
            persistent_workers=False,
        )
        for positions, xb in loader:
            if isinstance(xb, ProbeError):  # a worker could not decode a file: raise its one-line typed error here
                raise xb
            yield positions, (xb if device is None else xb.to(device, non_blocking=True))


class _PositionsDataset(torch.utils.data.Dataset):
    """Item ``i`` is batch ``i``: the positions and their stacked inputs (decoded inside the worker).

    A :class:`~probe.errors.ProbeError` raised while decoding (a damaged file) is returned in place of the inputs, so
    that it reaches the main process as itself rather than as a DataLoader traceback.
    """

    def __init__(self, source: Any, chunks: list[torch.Tensor]):
        self.source = source
        self.chunks = chunks

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        positions = self.chunks[i]
        try:
            return positions, torch.stack([torch.as_tensor(self.source[int(p)]) for p in positions.tolist()])
        except ProbeError as err:
            return positions, err


#: ``render(split_name, positions, new_values) -> x`` re-renders samples with another attribute or label.
Renderer = Callable[[str, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class SpuriousDataset:
    """A dataset with a core label, a spurious attribute and named splits.

    Attributes:
        name: the registry name (as the CLI spells it).
        num_classes: ``K``.
        num_attrs: ``A``.
        input_shape: per-sample input shape, e.g. ``(3, 8, 8)`` or ``(20,)``.
        splits: ``{"train": Split, "val": Split, "test": Split}`` (``val`` may be absent).
        bc_rule: one of :data:`BC_RULE_LABEL_SPACE`, :data:`BC_RULE_MAJORITY` (or a dataset's own sentence).
        source: where the data came from, in words (reports print it).
        options: the exact keyword arguments that rebuild this dataset through the registry.
        mask_note: what the masks mark, or why the dataset has none.
        render_spurious: re-renders samples with another spurious attribute (counterfactual), or None.
        render_core: re-renders samples with another core label, or None.
    """

    name: str
    num_classes: int
    num_attrs: int
    input_shape: tuple[int, ...]
    splits: dict[str, Split]
    bc_rule: str
    source: str
    options: dict[str, Any] = field(default_factory=dict)
    mask_note: str = "no masks"
    render_spurious: Renderer | None = None
    render_core: Renderer | None = None

    def __post_init__(self) -> None:
        empty = [name for name, s in self.splits.items() if len(s) == 0]
        if empty:  # a builder must leave out a split it has no samples for (e.g. val_fraction=0)
            raise ValueError(f"dataset {self.name!r}: empty split(s) {', '.join(empty)}")

    def split(self, name: str) -> Split:
        try:
            return self.splits[name]
        except KeyError:
            raise ProbeInputError(
                f"dataset {self.name!r} has no split {name!r}; it has {', '.join(self.splits)}"
            ) from None

    @property
    def train(self) -> Split:
        return self.split("train")

    def preflight(self) -> int:
        """Decode one sample per split and per source file type of every split streamed from disk (inputs and
        masks), so that a file of a kind that cannot be decoded, or decodes to the wrong shape, fails here with a
        one-line :class:`~probe.errors.DataFormatError` naming it, before a run writes anything.

        In-memory splits were decoded when the dataset was built and cost nothing. Returns the samples decoded.
        """
        decoded = 0
        for split in self.splits.values():
            for kind, source in (("input", split.x), ("core mask", split.core_mask),
                                 ("spurious mask", split.spurious_mask)):
                if source is None or isinstance(source, torch.Tensor):
                    continue
                positions = source.one_per_file_type() if hasattr(source, "one_per_file_type") else [0]
                for p in positions:
                    sample = torch.as_tensor(source[p])
                    decoded += 1
                    if kind == "input" and tuple(sample.shape) != tuple(self.input_shape):
                        where = source.paths[p] if hasattr(source, "paths") else f"sample {p}"
                        raise DataFormatError(f"{self.name}/{split.name}: {where} decodes to shape "
                                              f"{tuple(sample.shape)}, expected {tuple(self.input_shape)}")
        return decoded

    @property
    def num_groups(self) -> int:
        return self.num_classes * self.num_attrs

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary (counts per split, BA fraction, source) for ``run.json`` and reports."""
        out: dict[str, Any] = {
            "name": self.name,
            "num_classes": self.num_classes,
            "num_attrs": self.num_attrs,
            "input_shape": list(self.input_shape),
            "bc_rule": self.bc_rule,
            "source": self.source,
            "mask_note": self.mask_note,
            "options": self.options,
            "splits": {},
        }
        for name, s in self.splits.items():
            out["splits"][name] = {
                "n": len(s),
                "ba_fraction": float((~s.is_bc).float().mean()) if len(s) else float("nan"),
                "group_counts": torch.bincount(s.group.cpu(), minlength=self.num_groups).tolist(),
            }
        return out


def label_space_bc(y: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """BC flags under the label-space rule: bias-conflicting iff ``a != y``."""
    return a != y


def majority_bc(y: torch.Tensor, a: torch.Tensor, train_y: torch.Tensor, train_a: torch.Tensor,
                num_classes: int, num_attrs: int) -> torch.Tensor:
    """BC flags under the majority rule: bias-aligned iff ``a`` is the most common attribute of class ``y`` in the
    training split (ties go to the smaller attribute id)."""
    counts = torch.zeros(num_classes, num_attrs, dtype=torch.long)
    counts.index_put_((train_y.cpu(), train_a.cpu()), torch.ones_like(train_y.cpu()), accumulate=True)
    majority = counts.argmax(dim=1)
    return a != majority.to(a.device)[y]


def spurious_attributes(y: torch.Tensor, rho: float, num_attrs: int, generator: torch.Generator) -> torch.Tensor:
    """Draw ``a`` for labels ``y`` in a label-space dataset: ``a = y`` with probability ``rho``, otherwise uniform
    over the other ``num_attrs - 1`` values. ``rho = 1 / num_attrs`` makes ``a`` independent of ``y``."""
    n = len(y)
    aligned = torch.rand(n, generator=generator) < rho
    offset = torch.randint(1, num_attrs, (n,), generator=generator)
    return torch.where(aligned, y, (y + offset) % num_attrs)


def unbiased_attributes(n: int, num_attrs: int, generator: torch.Generator) -> torch.Tensor:
    """Draw ``a`` uniformly and independently of the label (unbiased splits)."""
    return torch.randint(0, num_attrs, (n,), generator=generator)


#: Largest image side (and resize side) a dataset accepts; standard protocols use at most 512.
MAX_IMAGE_SIZE = 4096


def check_image_size(image_size: Any, name: str, *, minimum: int = 1, option: str = "image_size") -> int:
    """``image_size`` as an int in ``minimum..MAX_IMAGE_SIZE``, else a one-line :class:`ProbeInputError`.

    Every dataset that takes an image side validates it here (pass ``None`` through yourself where it means "keep
    the source's size").
    """
    whole = isinstance(image_size, int) or (isinstance(image_size, float) and image_size.is_integer())
    if isinstance(image_size, bool) or not whole:
        raise ProbeInputError(f"{name}: {option} must be a whole number of pixels, got {image_size!r}")
    size = int(image_size)
    if not minimum <= size <= MAX_IMAGE_SIZE:
        raise ProbeInputError(f"{name}: {option} must lie in {minimum}..{MAX_IMAGE_SIZE}, got {size}")
    return size


def check_rho(rho: float, name: str) -> float:
    rho = float(rho)
    if not 0.0 <= rho <= 1.0:
        raise ProbeInputError(f"{name}: rho must lie in [0, 1], got {rho}")
    return rho
