"""What every per-epoch analysis shares: the context it runs in and the registry ``probe analyze`` walks.

An epoch analysis is a function ``fn(ctx, epoch) -> {split: {metric_id: value}}``. ``split`` is a split name
(``"train"``, ``"val"``, ``"test"``), ``"sgd"`` for the minibatches SGD saw in that epoch, or ``"model"`` for
metrics of the weights alone (``param_norm``, ``norm_compressibility@kappa``). Metric ids are the SPEC's
(``wga``, ``acc_group/3``, ``cmr@0.9`` ...). Analyses that need the model or the inputs (features, pruning,
attributions) set ``needs_model=True`` and run on a chosen subset of epochs; analyses over the stored records run
on every epoch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from probe.data.base import SpuriousDataset
    from probe.store.reader import Run

EpochMetrics = dict[str, dict[str, float]]


@dataclass
class AnalysisContext:
    """One run, opened once for all analyses of ``probe analyze``.

    Attributes:
        run: the run being analysed.
        device: where models run (``cpu`` unless a GPU is available and asked for).
        cache_dir: folder for reusable intermediate results (features), or None for no caching.
        options: analysis options (``--n-attr``, probe regularisation ...), by name.
    """

    run: Run
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    cache_dir: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def dataset(self) -> SpuriousDataset:
        """The run's dataset, rebuilt deterministically from ``run.json`` (built once per context)."""
        return self.run.dataset()

    def model(self, epoch: int) -> torch.nn.Module:
        """The model at ``epoch`` in eval mode on ``self.device`` (a fresh copy each call)."""
        return self.run.model(epoch).to(self.device).eval()


@dataclass(frozen=True)
class EpochAnalysis:
    name: str
    fn: Callable[[AnalysisContext, int], EpochMetrics]
    needs_model: bool


EPOCH_ANALYSES: dict[str, EpochAnalysis] = {}


def register_epoch_analysis(name: str, *, needs_model: bool = False):
    """Decorator registering ``fn(ctx, epoch) -> {split: {metric: value}}`` under ``name`` for ``probe analyze``."""

    def wrap(fn: Callable[[AnalysisContext, int], EpochMetrics]) -> Callable[[AnalysisContext, int], EpochMetrics]:
        EPOCH_ANALYSES[name] = EpochAnalysis(name, fn, needs_model)
        return fn

    return wrap
