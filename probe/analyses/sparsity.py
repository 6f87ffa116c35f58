"""Activation sparsity: the fraction of post-ReLU activations that are exactly zero.

``activation_sparsity/<layer>`` pools every sample, unit and spatial position of one ReLU module's output over a
split (a module applied several times per forward, as in ResNet blocks, pools all its calls);
``activation_sparsity`` is the unweighted mean over the model's ReLU layers. Zeros are counted batch by batch inside
forward hooks, so no activation is stored. ``n_sparsity`` is the number of samples that went through the model
(every sample of the test split).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from probe.analyses.base import AnalysisContext, EpochMetrics, Metric, register_epoch_analysis
from probe.analyses.features import (
    BATCH_SIZE,
    DEFAULT_BATCH_SIZE,
    activation_hooks,
    eval_mode,
    input_batches,
    model_device,
    model_epoch,
    relu_layers,
)
from probe.errors import ProbeInputError


def activation_sparsity(activations) -> float:
    """Fraction of entries exactly equal to zero (numpy array or tensor, any shape)."""
    if isinstance(activations, torch.Tensor):
        if activations.numel() == 0:
            raise ProbeInputError("activation_sparsity of an empty array")
        return float((activations == 0).sum().item() / activations.numel())
    arr = np.asarray(activations)
    if arr.size == 0:
        raise ProbeInputError("activation_sparsity of an empty array")
    return float(np.count_nonzero(arr == 0) / arr.size)


def layer_activation_sparsity(
    model: nn.Module,
    split_or_tensor: Any,
    layers: Sequence[str] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """``{layer: fraction of that layer's outputs exactly zero}`` over all samples of ``split_or_tensor``
    (:func:`layer_activation_counts` without the sample count).

    Args:
        model: a :class:`probe.models.FeatureModel`, run in eval mode under ``torch.inference_mode``.
        split_or_tensor: a :class:`probe.data.Split` or a tensor ``(n, *input_shape)``.
        layers: module names (default :func:`probe.analyses.features.relu_layers`).
        batch_size: samples per forward pass (default 512).
        device: where to run (the model is moved there); default the model's device.
    """
    return layer_activation_counts(model, split_or_tensor, layers, batch_size, device)[0]


def layer_activation_counts(
    model: nn.Module,
    split_or_tensor: Any,
    layers: Sequence[str] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: torch.device | str | None = None,
) -> tuple[dict[str, float], int]:
    """``({layer: fraction of zeros}, n_samples)``: :func:`layer_activation_sparsity` and the number of samples that
    went through the model (``n_sparsity``); arguments as there."""
    layers = relu_layers(model) if layers is None else list(layers)
    if not layers:
        raise ProbeInputError("the model has no ReLU layers to measure")
    if device is not None:
        model.to(device)
    device = model_device(model)
    zeros = {name: 0 for name in layers}
    totals = {name: 0 for name in layers}
    n_samples = 0

    def count(name: str, output: torch.Tensor) -> None:
        zeros[name] += int((output == 0).sum().item())
        totals[name] += output.numel()

    with eval_mode(model), activation_hooks(model, layers, count), torch.inference_mode():
        for xb in input_batches(split_or_tensor, batch_size, device):
            model.forward_head(model.forward_features(xb))
            n_samples += len(xb)
    missing = [name for name in layers if totals[name] == 0]
    if missing:
        raise ProbeInputError(f"layer(s) {', '.join(missing)} produced no output in the forward pass")
    return {name: zeros[name] / totals[name] for name in layers}, n_samples


_DOCS = "metrics-representations.md#activation-sparsity-activation_sparsitylayer-activation_sparsity"


@register_epoch_analysis(
    "sparsity",
    needs_model=True,
    version=2,
    options=(BATCH_SIZE,),
    metrics=(
        Metric("activation_sparsity/<layer>", "fraction of the outputs of one ReLU module (by its module name) that "
               "are exactly zero, over the test split", _DOCS, "probe.analyses.sparsity:layer_activation_sparsity"),
        Metric("activation_sparsity", "unweighted mean of activation_sparsity/<layer> over the model's ReLU layers",
               _DOCS, "probe.analyses.sparsity:activation_sparsity"),
        Metric("n_sparsity", "number of test samples whose activations activation_sparsity pools", _DOCS,
               "probe.analyses.sparsity:layer_activation_counts"),
    ),
)
def sparsity_analysis(ctx: AnalysisContext, epoch: int) -> EpochMetrics:
    """``test``: ``activation_sparsity/<layer>`` for every ReLU layer, ``activation_sparsity`` (their mean) and
    ``n_sparsity``, from the forward pass over the test split that the model-level analyses share
    (:func:`probe.analyses.features.model_epoch`)."""
    outputs = model_epoch(ctx, epoch).outputs("test")  # the one forward pass the other analyses share
    if not outputs.relu_sizes:
        raise ProbeInputError("the model has no ReLU layers to measure")
    missing = [name for name, size in outputs.relu_sizes.items() if size == 0]
    if missing:
        raise ProbeInputError(f"layer(s) {', '.join(missing)} produced no output in the forward pass")
    per_layer = {name: outputs.relu_zeros[name] / size for name, size in outputs.relu_sizes.items()}
    n_samples = outputs.n
    out = {f"activation_sparsity/{name}": value for name, value in per_layer.items()}
    out["activation_sparsity"] = float(np.mean(list(per_layer.values())))
    out["n_sparsity"] = float(n_samples)
    return {"test": out}
