"""Compressibility: global magnitude pruning without fine-tuning, and norm-based compressibility.

Prunable weights are the ``weight`` of every ``nn.Linear`` and convolution (``nn.Conv1d/2d/3d`` and transposed)
module, the head included, and the input projection matrices of every ``nn.MultiheadAttention`` (``in_proj_weight``,
or ``q/k/v_proj_weight``; torchvision's ViT), found by type wherever they sit in a wrapped model; biases,
normalisation parameters and embeddings are never pruned. Global unstructured magnitude
pruning at sparsity ``s`` concatenates all prunable weights (``N`` entries, in ``named_modules`` order) and zeroes
the ``round(s * N)`` of smallest magnitude: the same masks as ``torch.nn.utils.prune.global_unstructured`` with
``prune.L1Unstructured``. The pruning curve masks the model's weights in place and restores them bit for bit; the
model passed in is unchanged on return.

- ``prune_curve``: ``acc``, ``wga`` and ``unbiased_acc`` of the pruned copy at each sparsity (no fine-tuning), on
  every sample of the test split (``n_pruning`` of them); ``wga`` over the groups with at least ``min_group_size``
  samples, as in :func:`probe.analyses.groups.group_accuracy_metrics`.
- ``retention@s`` = ``acc(s) / acc(0)``.
- ``max_sparsity@0.95`` = the largest sparsity of the curve whose retention is >= 0.95 (curve points only, no
  interpolation; 0 when none above 0 qualifies).
- ``norm_compressibility@kappa`` = ``1 - ||w - top_kappa(w)||_2 / ||w||_2`` with ``w`` all prunable weights
  concatenated and ``top_kappa(w)`` keeping the ``round(kappa * N)`` entries of largest magnitude (kappa is the *kept*
  fraction) and zeroing the rest: the share of the weight norm the top kappa fraction captures, in the sense of
  compressible signals (values near 1: a few weights carry almost all of the norm).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from probe.analyses.base import AnalysisContext, EpochMetrics, Metric, Option, register_epoch_analysis
from probe.analyses.features import (
    BATCH_SIZE,
    DEFAULT_BATCH_SIZE,
    eval_mode,
    input_batches,
    model_device,
    model_epoch,
)
from probe.analyses.groups import DEFAULT_MIN_GROUP_SIZE, MIN_GROUP_SIZE, group_accuracy_metrics
from probe.errors import ProbeInputError

#: Sparsities of the SPEC's pruning curve.
DEFAULT_SPARSITIES = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)

#: Kept fractions reported as ``norm_compressibility@kappa``.
DEFAULT_KAPPAS = (0.1, 0.05, 0.01)

_PRUNABLE = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)


def prunable_weights(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(module_name, module)`` for every Linear and convolution module with a weight, in ``named_modules`` order."""
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, _PRUNABLE) and getattr(module, "weight", None) is not None
    ]


def num_logits(model: nn.Module) -> int:
    """``K``: the ``out_features`` of the last ``nn.Linear`` of ``model.head`` (a linear layer, or a head such as
    torchvision's VGG ``classifier``, an ``nn.Sequential`` ending in one)."""
    linears = [m for m in model.head.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ProbeInputError(f"{type(model).__name__}.head has no nn.Linear to count the classes of")
    return int(linears[-1].out_features)


def prunable_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """``(key, weight)`` for every prunable weight, in ``named_modules`` order: the key of a Linear or convolution
    weight is its module's name (as in :func:`prunable_weights`), that of an ``nn.MultiheadAttention`` projection
    ``<module>.<parameter>`` (``encoder.layers.0.self_attention.in_proj_weight``)."""
    found = []
    for name, module in model.named_modules():
        if isinstance(module, _PRUNABLE) and getattr(module, "weight", None) is not None:
            found.append((name, module.weight))
        elif isinstance(module, nn.MultiheadAttention):
            for attr in ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight"):
                weight = getattr(module, attr, None)
                if isinstance(weight, nn.Parameter):
                    found.append((f"{name}.{attr}" if name else attr, weight))
    return found


def _check_fraction(value: float, name: str) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ProbeInputError(f"{name} must lie in [0, 1], got {value}")
    return value


def global_magnitude_masks(model: nn.Module, sparsity: float) -> dict[str, torch.Tensor]:
    """Keep-masks (bool, True = kept) of global unstructured magnitude pruning at ``sparsity``, by the keys of
    :func:`prunable_parameters` (module names for Linear and convolution weights).

    Exactly ``round(sparsity * N)`` of the ``N`` prunable weights are pruned: those of smallest ``|w|`` over all
    prunable weights concatenated (``torch.topk(..., largest=False)``, as ``prune.L1Unstructured`` does).
    """
    sparsity = _check_fraction(sparsity, "sparsity")
    params = prunable_parameters(model)
    if not params:
        raise ProbeInputError("the model has no Linear or convolution weights to prune")
    with torch.no_grad():
        scores = torch.cat([w.detach().abs().reshape(-1) for _, w in params])
        return _split_mask(params, _topk_keep(scores, round(sparsity * scores.numel())))


def _topk_keep(scores: torch.Tensor, n_prune: int) -> torch.Tensor:
    """Keep-mask of ``scores`` without its ``n_prune`` smallest entries (``torch.topk(..., largest=False)``)."""
    keep = torch.ones_like(scores, dtype=torch.bool)
    if n_prune > 0:
        keep[torch.topk(scores, n_prune, largest=False).indices] = False
    return keep


def _split_mask(params: Sequence[tuple[str, torch.Tensor]], keep: torch.Tensor) -> dict[str, torch.Tensor]:
    """The flat keep-mask over all prunable weights concatenated, cut back into one mask per weight."""
    masks, start = {}, 0
    for name, weight in params:
        n = weight.numel()
        masks[name] = keep[start : start + n].view_as(weight)
        start += n
    return masks


class MagnitudeMasks:
    """:func:`global_magnitude_masks` of one model at many sparsities from one sort of ``|w|``.

    With ``v`` the ``round(s * N)``-th smallest ``|w|``, the pruned set is ``{|w| <= v}`` whenever exactly
    ``round(s * N)`` weights satisfy it (no tie straddles ``v``): then it is the one set of the ``round(s * N)``
    smallest, the set ``torch.topk`` returns. When a tie straddles ``v`` (or a weight is NaN) the mask comes from
    ``torch.topk`` itself, so the masks always equal :func:`global_magnitude_masks`.

    Args:
        params: ``(key, weight)`` pairs, as :func:`prunable_parameters` returns them (read when constructed).
    """

    def __init__(self, params: Sequence[tuple[str, torch.Tensor]]):
        if not params:
            raise ProbeInputError("the model has no Linear or convolution weights to prune")
        self.params = list(params)
        with torch.no_grad():
            self.scores = torch.cat([w.detach().abs().reshape(-1) for _, w in self.params])
        self.sorted = torch.sort(self.scores).values
        self.has_nan = bool(torch.isnan(self.scores).any())

    @property
    def total(self) -> int:
        """``N``, the number of prunable weights."""
        return self.scores.numel()

    def __call__(self, sparsity: float) -> dict[str, torch.Tensor]:
        """Keep-masks at ``sparsity``, by weight key."""
        n_prune = round(_check_fraction(sparsity, "sparsity") * self.total)
        if n_prune == 0:
            keep = torch.ones_like(self.scores, dtype=torch.bool)
        else:
            threshold = self.sorted[n_prune - 1]
            at_most = int(torch.searchsorted(self.sorted, threshold, right=True))
            if at_most == n_prune and not self.has_nan:
                keep = self.scores > threshold
            else:
                keep = _topk_keep(self.scores, n_prune)
        return _split_mask(self.params, keep)


def pruned_copy(model: nn.Module, sparsity: float) -> nn.Module:
    """A deep copy of ``model`` whose prunable weights are multiplied by :func:`global_magnitude_masks`."""
    masks = global_magnitude_masks(model, sparsity)
    pruned = copy.deepcopy(model)
    weights = dict(prunable_parameters(pruned))
    with torch.no_grad():
        for name, mask in masks.items():
            weights[name].mul_(mask.to(weights[name].dtype))
    return pruned


def predict(model: nn.Module, split_or_tensor: Any, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
    """``argmax`` of the logits for every sample, in eval mode under ``torch.inference_mode``."""
    device = model_device(model)
    preds = []
    with eval_mode(model), torch.inference_mode():
        for xb in input_batches(split_or_tensor, batch_size, device):
            preds.append(model(xb).argmax(dim=1).cpu())
    return torch.cat(preds).numpy()


def prune_curve(
    model: nn.Module,
    split: Any,
    sparsities: Sequence[float] = DEFAULT_SPARSITIES,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: torch.device | str | None = None,
    num_classes: int | None = None,
    train_group_counts: Any = None,
    min_group_size: int = DEFAULT_MIN_GROUP_SIZE,
    dense_predictions: np.ndarray | None = None,
) -> pd.DataFrame:
    """Accuracy of the magnitude-pruned model at each sparsity, without fine-tuning.

    The masks come from one sort of ``|w|`` (:class:`MagnitudeMasks`) and are applied to the model's own weights in
    place, which are restored bit for bit afterwards (also on an error); a deep copy is made only when ``device``
    differs from the model's.

    Args:
        model: the dense model (unchanged on return).
        split: a :class:`probe.data.Split` (inputs, ``y``, ``a``, ``is_bc``, ``num_attrs``).
        sparsities: fractions of prunable weights removed (default 0, .5, .7, .8, .9, .95, .98, .99); 0 is added
            when missing, since retention is relative to the dense model.
        batch_size: samples per forward pass (default 512).
        device: where to run (default the model's device).
        num_classes: ``K`` (default :func:`num_logits`: the ``out_features`` of the head's last ``nn.Linear``).
        train_group_counts: training-split group counts, passed on to ``group_accuracy_metrics``.
        min_group_size: groups with fewer samples are left out of ``wga`` (default 20), passed on likewise.
        dense_predictions: the dense model's predicted classes on ``split`` when already known (from
            :func:`probe.analyses.features.split_outputs`, with the same ``batch_size``): the point at sparsity 0
            then costs no forward pass.

    Returns:
        One row per sparsity, sorted: ``sparsity``, ``reached_sparsity`` (pruned / prunable weights), ``acc``,
        ``wga``, ``unbiased_acc``, ``n`` (samples the pruned model was evaluated on).
    """
    for attr in ("y", "a", "is_bc", "num_attrs"):
        if not hasattr(split, attr):
            raise ProbeInputError(f"prune_curve needs a dataset split (with {attr}), got a {type(split).__name__}")
    levels = sorted({0.0, *(_check_fraction(s, "sparsity") for s in sparsities)})
    on_copy = device is not None and torch.device(device) != model_device(model)
    work = copy.deepcopy(model).to(device) if on_copy else model
    if num_classes is None:
        num_classes = num_logits(work)
    if dense_predictions is not None and len(dense_predictions) != len(split):
        raise ProbeInputError(f"dense_predictions has {len(dense_predictions)} entries, the split {len(split)}")
    y, a = split.y.cpu().numpy(), split.a.cpu().numpy()
    is_bc = split.is_bc.cpu().numpy()
    params = prunable_parameters(work)
    masks_at = MagnitudeMasks(params)
    dense = [w.detach().clone() for _, w in params]
    rows = []
    try:
        for s in levels:
            masks = masks_at(s)
            with torch.no_grad():
                for (name, w), w0 in zip(params, dense):
                    w.copy_(w0).mul_(masks[name].to(w.dtype))
            if s == 0.0 and dense_predictions is not None:
                pred = np.asarray(dense_predictions)
            else:
                pred = predict(work, split, batch_size)
            metrics = group_accuracy_metrics(pred, y, a, is_bc, num_classes, split.num_attrs, train_group_counts,
                                             min_group_size=min_group_size)
            pruned = round(s * masks_at.total)  # exactly that many weights are zeroed by the masks
            rows.append(
                {
                    "sparsity": s,
                    "reached_sparsity": pruned / masks_at.total,
                    "acc": metrics["acc"],
                    "wga": metrics["wga"],
                    "unbiased_acc": metrics["unbiased_acc"],
                    "n": len(pred),
                }
            )
    finally:
        with torch.no_grad():
            for (_, w), w0 in zip(params, dense):
                w.copy_(w0)
    return pd.DataFrame(rows)


def _row(curve: pd.DataFrame, s: float) -> pd.Series:
    hit = np.isclose(curve["sparsity"].to_numpy(dtype=float), float(s), rtol=0, atol=1e-9)
    if not hit.any():
        raise ProbeInputError(f"sparsity {s} is not on the pruning curve; it has {curve['sparsity'].tolist()}")
    return curve.loc[hit].iloc[0]


def retention(curve: pd.DataFrame, s: float, column: str = "acc") -> float:
    """``retention@s`` = ``column`` at sparsity ``s`` / ``column`` of the dense model (sparsity 0); ``nan`` when the
    dense value is 0."""
    dense = float(_row(curve, 0.0)[column])
    return float(_row(curve, s)[column]) / dense if dense > 0 else float("nan")


def max_sparsity_at(curve: pd.DataFrame, fraction: float = 0.95, column: str = "acc") -> float:
    """``max_sparsity@fraction``: the largest sparsity of the curve with retention >= ``fraction``."""
    fraction = _check_fraction(fraction, "fraction")
    dense = float(_row(curve, 0.0)[column])
    if not dense > 0:
        return float("nan")
    kept = curve.loc[curve[column].to_numpy(dtype=float) >= fraction * dense, "sparsity"]
    return float(kept.max()) if len(kept) else 0.0


def _weight_vector(weights: nn.Module | Mapping[str, torch.Tensor]) -> torch.Tensor:
    if isinstance(weights, nn.Module):
        tensors = [w.detach() for _, w in prunable_parameters(weights)]
    elif isinstance(weights, Mapping):
        # Linear matrices and conv kernels of a state dict: tensors named "...weight" with two or more dimensions
        tensors = [t for name, t in weights.items() if name.endswith("weight") and torch.as_tensor(t).ndim >= 2]
    else:
        raise ProbeInputError(f"norm_compressibility takes a model or a state dict, got a {type(weights).__name__}")
    if not tensors:
        raise ProbeInputError("no weight matrices or conv kernels found")
    return torch.cat([torch.as_tensor(t).detach().reshape(-1).to(torch.float64).cpu() for t in tensors])


def norm_compressibility(weights: nn.Module | Mapping[str, torch.Tensor], kappa: float) -> float:
    """``1 - ||w - top_kappa(w)||_2 / ||w||_2`` over all weight matrices and conv kernels concatenated (from a model,
    its prunable weights; from a state dict, the tensors named ``...weight`` with >= 2 dimensions). ``top_kappa``
    keeps the ``round(kappa * N)`` largest-magnitude entries. ``nan`` when ``w`` is all zero."""
    kappa = _check_fraction(kappa, "kappa")
    w = _weight_vector(weights)
    total = float(torch.sum(w**2))
    if total == 0:
        return float("nan")
    k = round(kappa * w.numel())
    kept = float(torch.sum(torch.topk(w.abs(), k).values ** 2)) if k > 0 else 0.0
    return 1.0 - float(np.sqrt(max(total - kept, 0.0) / total))


def _fmt(value: float) -> str:
    return f"{value:g}"


_PRUNING = "metrics-representations.md#pruning-prune_curve-retentions-max_sparsity095"


@register_epoch_analysis(
    "pruning",
    needs_model=True,
    version=3,
    options=(
        Option("prune_sparsities", "list[float]", DEFAULT_SPARSITIES, "sparsities s of the pruning curve", low=0.0,
               high=1.0),
        MIN_GROUP_SIZE,
        BATCH_SIZE,
    ),
    metrics=(
        Metric("prune_acc@<s>", "test accuracy after global magnitude pruning of a fraction s of the weights (no "
               "fine-tuning)", _PRUNING, "probe.analyses.pruning:prune_curve"),
        Metric("prune_wga@<s>", "worst-group accuracy after pruning a fraction s of the weights, over groups with at "
               "least min_group_size test samples", _PRUNING, "probe.analyses.pruning:prune_curve"),
        Metric("prune_unbiased_acc@<s>", "unbiased accuracy after pruning a fraction s of the weights", _PRUNING,
               "probe.analyses.pruning:prune_curve"),
        Metric("retention@<s>", "accuracy after pruning a fraction s of the weights / dense accuracy", _PRUNING,
               "probe.analyses.pruning:retention"),
        Metric("n_pruning", "number of test samples each pruned model is evaluated on", _PRUNING,
               "probe.analyses.pruning:prune_curve"),
        Metric("max_sparsity@0.95", "largest sparsity of the curve that keeps 95% of the dense accuracy", _PRUNING,
               "probe.analyses.pruning:max_sparsity_at"),
        Metric("norm_compressibility@<kappa>", "1 - ||w - top_kappa(w)|| / ||w|| over all prunable weights, kappa "
               "the kept fraction (0.1, 0.05, 0.01); split 'model'",
               "metrics-representations.md#norm-compressibility-norm_compressibilitykappa",
               "probe.analyses.pruning:norm_compressibility"),
    ),
)
def pruning_analysis(ctx: AnalysisContext, epoch: int) -> EpochMetrics:
    """``test``: ``retention@s``, ``prune_acc@s``, ``prune_wga@s``, ``prune_unbiased_acc@s`` for each sparsity of
    the curve, ``max_sparsity@0.95`` and ``n_pruning``; ``model``: ``norm_compressibility@kappa`` for kappa in 0.1,
    0.05, 0.01. Options: ``prune_sparsities`` (default the SPEC's :data:`DEFAULT_SPARSITIES`), ``batch_size``,
    ``min_group_size``."""
    shared = model_epoch(ctx, epoch)
    model = shared.model
    sparsities = ctx.option("prune_sparsities")
    train = ctx.dataset.splits.get("train")
    counts = None
    if train is not None:
        counts = torch.bincount(train.group.cpu(), minlength=ctx.dataset.num_groups).numpy()
    curve = prune_curve(
        model,
        ctx.dataset.split("test"),
        sparsities,
        batch_size=ctx.option(BATCH_SIZE),
        num_classes=ctx.dataset.num_classes,
        train_group_counts=counts,
        min_group_size=ctx.option(MIN_GROUP_SIZE),
        dense_predictions=shared.outputs("test").predictions,
    )
    test: dict[str, float] = {}
    for row in curve.itertuples(index=False):
        s = _fmt(row.sparsity)
        test[f"retention@{s}"] = retention(curve, row.sparsity)
        test[f"prune_acc@{s}"] = float(row.acc)
        test[f"prune_wga@{s}"] = float(row.wga)
        test[f"prune_unbiased_acc@{s}"] = float(row.unbiased_acc)
    test["max_sparsity@0.95"] = max_sparsity_at(curve, 0.95)
    test["n_pruning"] = float(curve["n"].min())  # the same test split at every sparsity
    weights = {f"norm_compressibility@{_fmt(k)}": norm_compressibility(model, k) for k in DEFAULT_KAPPAS}
    return {"test": test, "model": weights}
