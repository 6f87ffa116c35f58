"""How per-sample logits are kept in the records: in full, or as a top-k summary (``--record-logits topk:K``).

For a logit vector ``z`` (length ``C``) of a sample with label ``y``, the summary keeps

- ``logit_true`` = ``z_y``;
- ``logit_top`` / ``logit_top_class``: the ``K`` largest logits, in decreasing order, and their classes (ties in class
  order, so ``logit_top_class[:, 0]`` is ``argmax_k z_k`` exactly as numpy picks it);
- ``logit_lse`` = ``log sum_k exp(z_k)`` and ``logit_norm`` = ``||z||_2``;

which is all the record-level metrics read: the prediction ``argmax z``, the margin ``z_y - max_{k != y} z_k``
(the largest logit, or the second largest when the largest is ``y``'s), the confidence
``max_k softmax(z)_k = exp(max_k z_k - lse)`` and the norm; the per-sample loss ``lse - z_y`` is stored anyway. Full
logits are kept for a fixed subset of each split (``full_positions``, ``full_logits``): the proposition's analyses,
which need every logit, run on it. The subset is a function of the split's groups only (evenly spaced positions in
every group, :func:`full_logits_subset`), so it is the same samples at every epoch and in every run of a sweep.

A 1000-class record costs ``4 * 1000`` bytes per sample in full (float32), ``2 * 1000`` as ``--logits-dtype
float16``, and ``4 * (3 + 2 * K)`` as ``topk:K`` (``benchmarks/bench_storage.py`` prints the figures).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from probe.errors import ProbeInputError

if TYPE_CHECKING:  # torch is imported where logits are summarised, not by readers of summaries
    import torch

#: values of ``TrainConfig.logits_dtype``.
LOGIT_DTYPES = ("float32", "float16")
#: default number of samples per split whose full logits a ``topk`` record keeps.
DEFAULT_FULL_SUBSET = 2048
#: the summary's fields, in the order they are written.
SUMMARY_FIELDS = ("logit_true", "logit_top", "logit_top_class", "logit_lse", "logit_norm")
#: fields of the fixed subset with full logits.
SUBSET_FIELDS = ("full_positions", "full_logits")

_TOPK = re.compile(r"topk:(\d+)")


def parse_record_logits(spec: str) -> int | None:
    """``"full"`` -> None; ``"topk:K"`` -> K (``K >= 2``: the margin needs the two largest logits)."""
    if spec == "full":
        return None
    match = _TOPK.fullmatch(str(spec))
    if match is None:
        raise ProbeInputError(f"record_logits must be 'full' or 'topk:K', got {spec!r}")
    k = int(match.group(1))
    if k < 2:
        raise ProbeInputError(f"record_logits topk:K needs K >= 2 (the margin reads the two largest logits), got {k}")
    return k


@dataclass(frozen=True)
class LogitSummary:
    """The top-k summary of ``n`` logit vectors of ``num_classes`` classes (see the module docstring)."""

    logit_true: np.ndarray  # (n,) z_y
    logit_top: np.ndarray  # (n, K) the K largest logits, decreasing
    logit_top_class: np.ndarray  # (n, K) their classes
    logit_lse: np.ndarray  # (n,) log sum_k exp z_k
    logit_norm: np.ndarray  # (n,) ||z||_2
    num_classes: int

    def __len__(self) -> int:
        return len(self.logit_true)

    @property
    def k(self) -> int:
        return self.logit_top.shape[1]

    @property
    def pred(self) -> np.ndarray:
        """``argmax_k z_k`` (the lowest class among ties)."""
        return self.logit_top_class[:, 0].astype(np.int64)

    def margins(self, y: np.ndarray) -> np.ndarray:
        """``z_y - max_{k != y} z_k`` (float64): the largest logit is ``y``'s exactly when ``pred == y``; then the
        largest other logit is the second largest."""
        top = self.logit_top.astype(np.float64)
        other = np.where(self.pred == np.asarray(y), top[:, 1], top[:, 0])
        return self.logit_true.astype(np.float64) - other

    def max_softmax(self) -> np.ndarray:
        """``max_k softmax(z)_k = exp(max_k z_k - lse)`` (float64)."""
        return np.exp(self.logit_top[:, 0].astype(np.float64) - self.logit_lse.astype(np.float64))

    def norms(self) -> np.ndarray:
        return self.logit_norm.astype(np.float64)

    def take(self, positions: np.ndarray) -> LogitSummary:
        return LogitSummary(self.logit_true[positions], self.logit_top[positions], self.logit_top_class[positions],
                            self.logit_lse[positions], self.logit_norm[positions], self.num_classes)

    def fields(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in SUMMARY_FIELDS}


def summarize_logits(logits: torch.Tensor, y: torch.Tensor, k: int) -> LogitSummary:
    """The :class:`LogitSummary` of float ``logits`` ``(n, C)`` with labels ``y``, computed on their device in their
    precision (float32 in the trainer); ``K`` is capped at ``C``."""
    import torch

    logits = logits.float()
    num_classes = logits.shape[1]
    k = min(k, num_classes)
    values, classes = torch.sort(logits, dim=1, descending=True, stable=True)
    return LogitSummary(
        logit_true=logits.gather(1, y.long().view(-1, 1)).view(-1).cpu().numpy(),
        logit_top=values[:, :k].contiguous().cpu().numpy(),
        logit_top_class=classes[:, :k].to(torch.int32 if num_classes < 2**31 else torch.int64).cpu().numpy(),
        logit_lse=torch.logsumexp(logits, dim=1).cpu().numpy(),
        logit_norm=torch.linalg.vector_norm(logits, dim=1).cpu().numpy(),
        num_classes=num_classes,
    )


def full_logits_subset(group: np.ndarray, size: int) -> np.ndarray:
    """Positions (increasing) of the samples of a split whose full logits a ``topk`` record keeps: every position
    when the split has at most ``size`` samples, else from each group ``g`` with ``n_g`` samples
    ``max(1, round(size * n_g / n))`` evenly spaced positions (all of them when ``n_g`` is smaller), so that small
    groups (the bias-conflicting ones) are kept in proportion and never left out."""
    group = np.asarray(group)
    n = len(group)
    if size < 1:
        raise ProbeInputError(f"the full-logits subset needs at least one sample, got {size}")
    if n <= size:
        return np.arange(n, dtype=np.int64)
    chosen = []
    for g in np.unique(group):
        members = np.flatnonzero(group == g)
        want = min(len(members), max(1, int(round(size * len(members) / n))))
        chosen.append(members[np.linspace(0, len(members) - 1, want).round().astype(np.int64)])
    return np.unique(np.concatenate(chosen))


def encode_logits(logits: torch.Tensor, y: torch.Tensor, group: np.ndarray, *, topk: int | None, dtype: str,
                  subset_size: int = DEFAULT_FULL_SUBSET, subset: bool = True) -> dict[str, np.ndarray]:
    """The logit fields of one group of records: ``{"logits"}`` in full (as ``dtype``), or the summary's fields plus
    (with ``subset``) ``full_positions`` and ``full_logits`` of :func:`full_logits_subset`."""
    import torch

    if topk is None:
        return {"logits": logits.float().cpu().numpy().astype(dtype, copy=False)}
    out = summarize_logits(logits, y, topk).fields()
    if subset:
        positions = full_logits_subset(group, subset_size)
        out["full_positions"] = positions
        out["full_logits"] = logits[torch.from_numpy(positions).to(logits.device)].float().cpu().numpy().astype(
            dtype, copy=False)
    return out


def bytes_per_sample(num_classes: int, *, topk: int | None, dtype: str = "float32") -> int:
    """Bytes of the logit fields per sample: ``C`` values of ``dtype`` in full, else ``3`` float32 scalars and ``K``
    float32 values with ``K`` int32 classes (the full-logits subset not counted)."""
    if topk is None:
        return num_classes * np.dtype(dtype).itemsize
    k = min(topk, num_classes)
    return 4 * 3 + k * (4 + 4)
