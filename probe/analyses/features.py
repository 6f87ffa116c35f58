"""Features of a model on a split: penultimate features and the outputs of named layers, in batches.

``extract_features`` runs ``model.forward_features`` (and, when layers are named, ``model.forward_head`` so that every
module of the forward pass fires) under ``torch.inference_mode`` in eval mode, batch by batch, and returns numpy
arrays in the split's sample order. ``cached_features`` keeps the penultimate features of one (run, epoch, split) as
an ``.npy`` file under the analysis cache so that every re-run reuses them.

Within one ``probe analyze``, every model-level analysis reads the model through :func:`model_epoch`: the model of
one (run, epoch) is loaded once, and one forward pass per split (:func:`split_outputs`) gives what the analyses
need of it: the penultimate features (geometry, probes), the predicted classes (the dense point of the pruning curve)
and the count of exact zeros at every ReLU module (activation sparsity).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from probe.analyses.base import Option
from probe.analyses.cache import FileCache
from probe.errors import ProbeInputError

if TYPE_CHECKING:
    from probe.analyses.base import AnalysisContext

#: Key of the penultimate features in the dict :func:`extract_features` returns.
PENULTIMATE = "penultimate"

#: Default number of samples per forward pass.
DEFAULT_BATCH_SIZE = 512
#: the analysis option ``batch_size``, declared by every analysis that runs the model over a split.
BATCH_SIZE = Option("batch_size", "int", DEFAULT_BATCH_SIZE, "samples per forward pass of the model analyses", low=1)


def relu_layers(model: nn.Module) -> list[str]:
    """Names (as ``model.named_modules()`` spells them) of every ``nn.ReLU`` module, in registration order."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.ReLU)]


def input_batches(
    source: Any, batch_size: int = DEFAULT_BATCH_SIZE, device: torch.device | str | None = None
) -> Iterator[torch.Tensor]:
    """Input batches of ``source`` in sample order: a :class:`probe.data.Split` (anything with ``.batches``), a
    tensor or an array of shape ``(n, *input_shape)``; each batch is moved to ``device`` when given."""
    if batch_size < 1:
        raise ProbeInputError(f"batch_size must be >= 1, got {batch_size}")
    if getattr(source, "in_memory", False) and isinstance(getattr(source, "x", None), torch.Tensor):
        # an in-memory split in sample order: contiguous slices, no gather
        for start in range(0, len(source.x), batch_size):
            xb = source.x[start : start + batch_size]
            yield (xb if device is None else xb.to(device, non_blocking=True)).float()
        return
    if hasattr(source, "batches"):
        for _, xb in source.batches(batch_size, device=device):
            yield xb.float()
        return
    try:
        x = torch.as_tensor(source)
    except (TypeError, ValueError, RuntimeError):
        raise ProbeInputError(f"cannot read inputs from a {type(source).__name__}; give a Split or a tensor") from None
    if x.ndim < 2:
        raise ProbeInputError(f"inputs need shape (n, *input_shape), got shape {tuple(x.shape)}")
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size].float()
        yield xb if device is None else xb.to(device)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


@contextmanager
def activation_hooks(model: nn.Module, layers: Sequence[str], on_output: Callable[[str, torch.Tensor], None]):
    """Within the block, every forward call of module ``name`` (for ``name`` in ``layers``) hands its output to
    ``on_output(name, output)``. A module called several times per forward (a ResNet block reuses one ReLU) reports
    each call. Unknown names raise :class:`ProbeInputError`."""
    modules = dict(model.named_modules())
    unknown = [name for name in layers if name not in modules or name == ""]
    if unknown:
        raise ProbeInputError(
            f"model has no layer {', '.join(map(repr, unknown))}; its ReLU layers are {', '.join(relu_layers(model))}"
        )
    handles = []
    for name in layers:
        def hook(_module, _inputs, output, _name=name):
            on_output(_name, output)

        handles.append(modules[name].register_forward_hook(hook))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def eval_mode(model: nn.Module):
    """Within the block the model is in eval mode; its training flag is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def extract_features(
    model: nn.Module,
    split_or_tensor: Any,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: torch.device | str | None = None,
    layers: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """Penultimate features and, optionally, the outputs of named layers, for every sample in order.

    Args:
        model: a :class:`probe.models.FeatureModel` (has ``forward_features`` and ``forward_head``). Run in eval
            mode (BatchNorm uses running statistics); its training flag is restored afterwards.
        split_or_tensor: a :class:`probe.data.Split` or a tensor / array ``(n, *input_shape)``.
        batch_size: samples per forward pass (default 512).
        device: where to run; the model is moved there (``nn.Module.to``, in place). Default: the model's device.
        layers: module names whose outputs to keep (e.g. ``relu_layers(model)``); default none.

    Returns:
        ``{"penultimate": (n, F) float32, <layer>: (n, D_layer) float32 ...}``; a layer's output is flattened per
        sample, and a module called several times per forward has its calls concatenated along the second axis.

    Example:
        >>> from probe.models import build_model
        >>> model = build_model("mlp", (20,), 2, width=8)
        >>> out = extract_features(model, torch.randn(5, 20), layers=relu_layers(model))
        >>> out["penultimate"].shape, out["features.2"].shape
        ((5, 8), (5, 8))
    """
    layers = list(layers or [])
    if PENULTIMATE in layers:
        raise ProbeInputError(f"{PENULTIMATE!r} names the penultimate features; it cannot also be a layer name")
    if device is not None:
        model.to(device)
    device = model_device(model)
    feats: list[torch.Tensor] = []
    outputs: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    current: dict[str, list[torch.Tensor]] = {name: [] for name in layers}

    def keep(name: str, output: torch.Tensor) -> None:
        # copy to the CPU at once: a later in-place operation must not alter what was recorded
        current[name].append(output.detach().flatten(1).to("cpu", torch.float32, copy=True))

    with eval_mode(model), activation_hooks(model, layers, keep), torch.inference_mode():
        for xb in input_batches(split_or_tensor, batch_size, device):
            f = model.forward_features(xb)
            if layers:
                model.forward_head(f)
            feats.append(f.detach().flatten(1).to("cpu", torch.float32))
            for name in layers:
                if not current[name]:
                    raise ProbeInputError(f"layer {name!r} did not run in the forward pass")
                outputs[name].append(torch.cat(current[name], dim=1))
                current[name] = []
    if not feats:
        raise ProbeInputError("no samples to extract features from")
    out = {PENULTIMATE: torch.cat(feats).numpy()}
    for name in layers:
        out[name] = torch.cat(outputs[name]).numpy()
    return out


# -- cache -----------------------------------------------------------------------------------------------------------


def feature_cache_path(cache_dir: str | os.PathLike, run_name: str, epoch: int, split: str) -> Path:
    """``<cache_dir>/features/<run_name>/epoch_XXXXX_<split>.npy``."""
    return Path(cache_dir) / "features" / run_name / f"epoch_{int(epoch):05d}_{split}.npy"


def _cache_key(ctx: AnalysisContext, epoch: int, n: int) -> dict[str, Any]:
    """What identifies cached features: the run, the epoch file's sha256 (when the manifest records it), the split
    size and the model config; a change in any of them invalidates the cache entry."""
    sha = None
    manifest = getattr(ctx.run, "manifest", None)
    if isinstance(manifest, dict):
        for entry in manifest.get("epochs", []):
            if entry.get("epoch") == epoch:
                sha = entry.get("sha256")
    config = getattr(ctx.run, "config", {}) or {}
    model_cfg = json.dumps([config.get("model"), config.get("model_options")], sort_keys=True, default=str)
    return {
        "run": ctx.run.name,
        "epoch": int(epoch),
        "epoch_sha256": sha,
        "n": int(n),
        "model": hashlib.sha256(model_cfg.encode()).hexdigest()[:16],
    }


def cached_features(
    ctx: AnalysisContext,
    epoch: int,
    split: str,
    model: nn.Module | None = None,
    batch_size: int | None = None,
) -> np.ndarray:
    """Penultimate features ``(n, F)`` of ``split`` at ``epoch``, read from the cache when a matching entry exists,
    otherwise extracted (with ``model``, or ``ctx.model(epoch)`` when not given) and stored.

    The entry is ``ctx.cache_dir/features/<run>/epoch_XXXXX_<split>.npy``, a :class:`~probe.analyses.cache.FileCache`
    array entry (``allow_pickle=False``, written atomically) whose key is the run, the epoch, the epoch file's sha256,
    the split size and the model config. Without a ``ctx.cache_dir`` nothing is stored. ``batch_size`` defaults to
    the option ``batch_size`` (:data:`BATCH_SIZE`).
    """
    ds_split = ctx.dataset.split(split)
    n = len(ds_split)
    key = _cache_key(ctx, epoch, n)
    cache = FileCache(ctx.cache_dir)
    name = feature_cache_path("", ctx.run.name, epoch, split)
    array = cache.load_array(name, key)
    if array is not None and array.ndim == 2 and array.shape[0] == n:
        return array
    if model is None:
        model = ctx.model(epoch)
    bs = int(batch_size or ctx.option(BATCH_SIZE))
    array = extract_features(model, ds_split, batch_size=bs, device=ctx.device)[PENULTIMATE]
    cache.store_array(name, array, key)
    return array


# -- one forward pass per (run, epoch, split), shared by the analyses of one context --------------------------------


@dataclass(frozen=True)
class SplitOutputs:
    """What one forward pass of a model over a split gives, in the split's sample order.

    Attributes:
        features: ``(n, F)`` float32 penultimate features (``model.forward_features``).
        predictions: ``(n,)`` int64 ``argmax_k`` of the logits ``model.forward_head(features)``.
        relu_zeros: ``{layer: number of outputs exactly 0}`` of every ReLU module (:func:`relu_layers`), all
            samples, units, positions and calls pooled.
        relu_sizes: ``{layer: number of outputs}`` likewise.
    """

    features: np.ndarray
    predictions: np.ndarray
    relu_zeros: dict[str, int]
    relu_sizes: dict[str, int]

    @property
    def n(self) -> int:
        """Samples that went through the model."""
        return len(self.predictions)


def split_outputs(
    model: nn.Module,
    split_or_tensor: Any,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: torch.device | str | None = None,
) -> SplitOutputs:
    """One forward pass (``forward_head(forward_features(x))``, eval mode, ``torch.inference_mode``, batches of
    ``batch_size``) over ``split_or_tensor``: penultimate features, predicted classes and the zero counts of every
    ReLU module (:class:`SplitOutputs`); the same numbers as :func:`extract_features`,
    :func:`probe.analyses.pruning.predict` and :func:`probe.analyses.sparsity.layer_activation_counts`. ``device``:
    where to run (the model is moved there, in place); default the model's device."""
    if device is not None:
        model.to(device)
    device = model_device(model)
    layers = relu_layers(model)
    zeros = {name: 0 for name in layers}
    sizes = {name: 0 for name in layers}
    feats: list[torch.Tensor] = []
    preds: list[torch.Tensor] = []

    def count(name: str, output: torch.Tensor) -> None:
        zeros[name] += int((output == 0).sum().item())
        sizes[name] += output.numel()

    with eval_mode(model), activation_hooks(model, layers, count), torch.inference_mode():
        for xb in input_batches(split_or_tensor, batch_size, device):
            f = model.forward_features(xb)
            # a copy: the head must not alter what was recorded
            feats.append(f.detach().flatten(1).to("cpu", torch.float32, copy=True))
            preds.append(model.forward_head(f).argmax(dim=1).cpu())
    if not feats:
        raise ProbeInputError("no samples to run the model on")
    return SplitOutputs(torch.cat(feats).numpy(), torch.cat(preds).numpy(), zeros, sizes)


class ModelEpoch:
    """The model of one (run, epoch) and what the analyses read of it, each computed at most once.

    The model is loaded on first use (``ctx.model(epoch)``) and shared: analyses must leave it as they found it
    (pruning masks its weights in place and restores them). :meth:`outputs` runs the one forward pass over a split;
    :meth:`features` answers from that pass, else from the feature cache (:func:`cached_features`, no model load),
    else runs the pass and stores its features in the cache. Get it with :func:`model_epoch`.
    """

    def __init__(self, ctx: AnalysisContext, epoch: int):
        self.ctx = ctx
        self.epoch = int(epoch)
        self.batch_size = int(ctx.option(BATCH_SIZE))
        self._model: nn.Module | None = None
        self._outputs: dict[str, SplitOutputs] = {}
        self._features: dict[str, np.ndarray] = {}

    @property
    def model(self) -> nn.Module:
        """The model at this epoch, in eval mode on ``ctx.device`` (loaded once)."""
        if self._model is None:
            self._model = self.ctx.model(self.epoch)
        return self._model

    def outputs(self, split: str) -> SplitOutputs:
        """:func:`split_outputs` of the model over ``split`` (computed once; its features go to the cache)."""
        if split not in self._outputs:
            ctx = self.ctx
            out = split_outputs(self.model, ctx.dataset.split(split), self.batch_size, ctx.device)
            self._outputs[split] = out
            if split not in self._features:
                key = _cache_key(ctx, self.epoch, len(out.features))
                FileCache(ctx.cache_dir).store_array(feature_cache_path("", ctx.run.name, self.epoch, split),
                                                     out.features, key)
                self._features[split] = out.features
        return self._outputs[split]

    def features(self, split: str) -> np.ndarray:
        """Penultimate features ``(n, F)`` of ``split``: from the forward pass when it ran, else the cache, else the
        pass."""
        if split in self._features:
            return self._features[split]
        if split in self._outputs:
            return self._outputs[split].features
        ctx = self.ctx
        n = len(ctx.dataset.split(split))
        cached = FileCache(ctx.cache_dir).load_array(feature_cache_path("", ctx.run.name, self.epoch, split),
                                                     _cache_key(ctx, self.epoch, n))
        if cached is not None and cached.ndim == 2 and cached.shape[0] == n:
            self._features[split] = cached
            return cached
        return self.outputs(split).features


_MODEL_EPOCH = "model_epoch"


def model_epoch(ctx: AnalysisContext, epoch: int) -> ModelEpoch:
    """The :class:`ModelEpoch` of ``ctx``'s run at ``epoch``, shared by every analysis that runs on that context:
    the context keeps the one of the epoch last asked for (so memory holds one epoch's model and outputs), and a new
    one is made when the epoch or the option ``batch_size`` changes."""
    held = ctx.shared.get(_MODEL_EPOCH)
    if held is None or held.epoch != int(epoch) or held.batch_size != int(ctx.option(BATCH_SIZE)):
        held = ctx.shared[_MODEL_EPOCH] = ModelEpoch(ctx, epoch)
    return held


class EpochFeatures:
    """Penultimate features of several splits at one epoch, read through :func:`model_epoch`: the model is loaded
    at most once (only when a split misses the cache) and shared with the other model-level analyses."""

    def __init__(self, ctx: AnalysisContext, epoch: int):
        self.ctx = ctx
        self.epoch = epoch
        self._shared = model_epoch(ctx, epoch)

    @property
    def model(self) -> nn.Module:
        return self._shared.model

    def __getitem__(self, split: str) -> np.ndarray:
        return self._shared.features(split)
