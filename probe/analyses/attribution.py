"""Core vs spurious reliance from input attributions, and counterfactual flip rates.

Pure functions over arrays (:func:`attr_shares`, :func:`flip_rate`), dataset-level wrappers
(:func:`spurious_flip_rate`, :func:`core_flip_rate`, :func:`select_positions`), a run-level API returning arrays and
tables (:func:`attribute_run`, :func:`attribute_sweep`, :func:`shares_table`) and the epoch analysis
``"attribution"`` that ``probe analyze`` runs. Attribution methods live in :mod:`probe.analyses.attribution_methods`.

Metric ids (SPEC section 4): ``core_attr_share@<method>``, ``spurious_attr_share@<method>``,
``pointing_game@<method>``, ``core_relevance_mass@<method>``, ``core_relevance_rank@<method>``,
``core_area_ratio@<method>``, ``n_attributed``, ``spurious_flip_rate``, ``core_flip_rate``. Heatmap grids of
:class:`Attributions` are drawn by :func:`probe.report.heatmaps.plot_attributions`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from probe.analyses.attribution_methods import (
    METHODS,
    attribute,
    check_method,
    method_applies,
)
from probe.analyses.base import AnalysisContext, EpochMetrics, Metric, Option, register_epoch_analysis
from probe.analyses.features import model_epoch
from probe.device import resolve_device
from probe.errors import ProbeInputError

if TYPE_CHECKING:
    import pandas as pd

    from probe.data.base import Split, SpuriousDataset
    from probe.store.reader import Run, Sweep

__all__ = [
    "METHODS",
    "Attributions",
    "analysis_positions",
    "attr_shares",
    "attr_shares_per_sample",
    "attribute",
    "attribute_run",
    "attribute_sweep",
    "core_flip_rate",
    "flip_rate",
    "n_attributed",
    "relevance_per_sample",
    "select_positions",
    "shares_table",
    "spurious_flip_rate",
]


# -- shares ------------------------------------------------------------------------------------------------------
def _mass(attributions: torch.Tensor | np.ndarray, mask_shape: tuple[int, ...]) -> torch.Tensor:
    """``|attribution|`` summed over the dimensions the mask does not have (the channels of an image)."""
    a = torch.as_tensor(np.asarray(attributions) if not isinstance(attributions, torch.Tensor) else attributions)
    a = a.detach().double().abs()
    extra = a.dim() - len(mask_shape)
    if extra < 0 or tuple(a.shape[extra + 1 :]) != tuple(mask_shape[1:]) or a.shape[0] != mask_shape[0]:
        raise ProbeInputError(
            f"attributions of shape {tuple(a.shape)} do not match masks of shape {tuple(mask_shape)}"
        )
    return a.sum(dim=tuple(range(1, extra + 1))) if extra else a


def _as_mask(mask: Any) -> torch.Tensor:
    m = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask)
    return m.detach().cpu().bool()


def _signed_map(attributions: torch.Tensor | np.ndarray, mask_shape: tuple[int, ...]) -> np.ndarray:
    """``s_i(p) = sum_c A_i[c, p]`` (signed; images: channels summed, vectors: ``A_i[p]``), as ``(n, P)`` float64."""
    a = attributions.detach().cpu().double().numpy() if isinstance(attributions, torch.Tensor) else (
        np.asarray(attributions, dtype=np.float64))
    extra = a.ndim - len(mask_shape)
    if extra < 0 or tuple(a.shape[extra + 1 :]) != tuple(mask_shape[1:]) or a.shape[0] != mask_shape[0]:
        raise ProbeInputError(
            f"attributions of shape {tuple(a.shape)} do not match masks of shape {tuple(mask_shape)}"
        )
    s = a.sum(axis=tuple(range(1, extra + 1))) if extra else a
    return s.reshape(len(s), -1)


def relevance_per_sample(
    attributions: torch.Tensor | np.ndarray,
    core_mask: torch.Tensor | np.ndarray,
) -> dict[str, np.ndarray]:
    """Per-sample relevance mass and rank accuracy of the core region (Arras et al. 2022, as Quantus 0.6 computes
    them from a channel-summed map).

    With the signed map ``s_i(p) = sum_c A_i[c, p]``, its positive part ``r_i(p) = max(0, s_i(p))`` and
    ``k_i = |core_i|``:

    - ``core_relevance_mass_i = sum_{p in core_i} r_i(p) / sum_p r_i(p)`` (Quantus's ``RelevanceMassAccuracy`` given
      ``r_i``; Quantus itself neither sums channels nor clips: it takes a one-channel map as it is);
    - ``core_relevance_rank_i = |top_k_i(s_i) ∩ core_i| / k_i`` where ``top_k_i`` are the first ``k_i`` pixels of
      ``np.argsort(-s_i)`` (Quantus's ``RelevanceRankAccuracy`` given ``s_i``; ties are broken in the order numpy's
      default argsort returns them, which is what Quantus does; it is not the index order).

    NaN where the core mask is empty (as Quantus), where ``sum_p r_i(p) = 0`` (mass), and where ``s_i = 0``
    everywhere (rank: no order to read; Quantus refuses an all-zero batch).

    Args:
        attributions: ``(n, C, H, W)`` or ``(n, H, W)`` for images, ``(n, d)`` for feature vectors.
        core_mask: ``(n, H, W)`` or ``(n, d)`` bool.

    Returns:
        ``{"core_relevance_mass": (n,), "core_relevance_rank": (n,)}`` float64 arrays.
    """
    core = _as_mask(core_mask)
    s = _signed_map(attributions, tuple(core.shape))
    inside = core.reshape(len(core), -1).numpy()
    k = inside.sum(axis=1)
    r = np.clip(s, 0.0, None)
    total = r.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mass = (r * inside).sum(axis=1) / total
    mass[(total <= 0) | (k == 0)] = np.nan
    order = np.argsort(-s, axis=-1)
    ranked_inside = np.take_along_axis(inside, order, axis=1)
    top_k = np.arange(s.shape[1])[None, :] < k[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        rank = (ranked_inside & top_k).sum(axis=1) / k
    rank[(k == 0) | ~(s != 0).any(axis=1)] = np.nan
    return {"core_relevance_mass": mass.astype(np.float64), "core_relevance_rank": rank.astype(np.float64)}


def attr_shares_per_sample(
    attributions: torch.Tensor | np.ndarray,
    core_mask: torch.Tensor | np.ndarray,
    spurious_mask: torch.Tensor | np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Per-sample shares of attribution mass.

    With ``m_i(p) = sum_c |A_i[c, p]|`` (images: summed over channels; vectors: ``|A_i[p]|``):
    ``core_attr_share_i = sum_{p in core_i} m_i(p) / sum_p m_i(p)``, ``spurious_attr_share_i`` likewise with the
    spurious mask, ``pointing_game_i = 1[argmax_p m_i(p) in core_i]`` (first maximum on ties). Samples with zero
    total mass get NaN shares and NaN pointing. ``core_area_ratio_i = core_attr_share_i / (|core_i| / P)`` with
    ``P`` pixels (features) per sample: 1 when the core region gets exactly its area's share of the mass (NaN for
    an empty core region). ``core_relevance_mass`` and ``core_relevance_rank``: :func:`relevance_per_sample`.

    Args:
        attributions: ``(n, C, H, W)`` or ``(n, H, W)`` for images, ``(n, d)`` for feature vectors.
        core_mask: ``(n, H, W)`` or ``(n, d)`` bool.
        spurious_mask: same shape, or None (the spurious share is then omitted).

    Returns:
        ``{"core_attr_share", "spurious_attr_share", "pointing_game", "core_relevance_mass", "core_relevance_rank",
        "core_area_ratio"}``, each an ``(n,)`` float64 array.
    """
    core = _as_mask(core_mask)
    mass = _mass(attributions.cpu() if isinstance(attributions, torch.Tensor) else attributions, tuple(core.shape))
    flat = mass.reshape(len(mass), -1)
    total = flat.sum(dim=1)
    zero = total <= 0
    safe = torch.where(zero, torch.ones_like(total), total)
    nan = torch.full_like(total, float("nan"))
    core_flat = core.reshape(len(core), -1)
    out = {"core_attr_share": torch.where(zero, nan, (flat * core_flat).sum(dim=1) / safe)}
    if spurious_mask is not None:
        spur = _as_mask(spurious_mask)
        if spur.shape != core.shape:
            raise ProbeInputError(f"spurious mask shape {tuple(spur.shape)} differs from core mask {tuple(core.shape)}")
        out["spurious_attr_share"] = torch.where(zero, nan, (flat * spur.reshape(len(spur), -1)).sum(dim=1) / safe)
    top = flat.argmax(dim=1)
    hit = core_flat.gather(1, top[:, None])[:, 0].double()
    out["pointing_game"] = torch.where(zero, nan, hit)
    result = {k: v.numpy() for k, v in out.items()}
    result.update(relevance_per_sample(attributions, core))
    area = core_flat.double().mean(dim=1).numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = result["core_attr_share"] / area
    ratio[area == 0] = np.nan
    result["core_area_ratio"] = ratio
    return result


def n_attributed(core_mask: torch.Tensor | np.ndarray) -> int:
    """``n_attributed``: the number of samples whose core mask holds at least one pixel (feature)."""
    core = _as_mask(core_mask)
    return int(core.reshape(len(core), -1).any(dim=1).sum())


def attr_shares(
    attributions: torch.Tensor | np.ndarray,
    core_mask: torch.Tensor | np.ndarray,
    spurious_mask: torch.Tensor | np.ndarray | None = None,
) -> dict[str, float]:
    """``core_attr_share``, ``spurious_attr_share``, ``pointing_game``, ``core_relevance_mass``,
    ``core_relevance_rank`` and ``core_area_ratio``: the means over samples of :func:`attr_shares_per_sample`
    (each sample weighs the same; samples with a NaN value, e.g. zero attribution mass, are left out).

    Example:
        >>> a = torch.tensor([[3.0, -1.0, 0.0]]); core = torch.tensor([[True, False, False]])
        >>> attr_shares(a, core, ~core)["core_attr_share"]
        0.75
    """
    per = attr_shares_per_sample(attributions, core_mask, spurious_mask)
    return {k: (float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")) for k, v in per.items()}


# -- counterfactual flip rates -----------------------------------------------------------------------------------
@torch.no_grad()
def predictions(model: nn.Module, x: torch.Tensor, batch_size: int = 1024,
                device: torch.device | str | None = None) -> torch.Tensor:
    """``argmax_k f(x)_k`` per sample, in eval mode, in batches of ``batch_size`` (CPU int64 tensor)."""
    params = next(iter(model.parameters()), None)
    device = (params.device if params is not None else torch.device("cpu")) if device is None else device
    was_training = model.training
    model.eval()
    try:
        out = [model(x[s : s + batch_size].to(device)).argmax(dim=1).cpu() for s in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def flip_rate(model: nn.Module, x: torch.Tensor, x_counterfactual: torch.Tensor, batch_size: int = 1024,
              device: torch.device | str | None = None) -> float:
    """Fraction of samples whose predicted class changes: ``mean_i 1[argmax f(x_i) != argmax f(x'_i)]``."""
    if x.shape != x_counterfactual.shape:
        raise ProbeInputError(f"inputs {tuple(x.shape)} and counterfactuals {tuple(x_counterfactual.shape)} differ")
    if len(x) == 0:
        raise ProbeInputError("flip_rate needs at least one sample")
    p, q = predictions(model, x, batch_size, device), predictions(model, x_counterfactual, batch_size, device)
    return float((p != q).double().mean())


def other_values(values: torch.Tensor, num_values: int, seed: int = 0) -> torch.Tensor:
    """A different value per sample, drawn deterministically: ``(v + u) mod V`` with ``u`` uniform on
    ``1..V-1`` from a generator seeded with ``seed``."""
    if num_values < 2:
        raise ProbeInputError("a counterfactual needs at least two values to choose from")
    g = torch.Generator().manual_seed(seed)
    shift = torch.randint(1, num_values, (len(values),), generator=g)
    return (values.cpu() + shift) % num_values


def _counterfactual_flip_rate(model: nn.Module, dataset: SpuriousDataset, split: str, positions: torch.Tensor,
                              feature: str, seed: int, device: torch.device | str | None) -> float:
    """:func:`flip_rate` between samples and their re-renderings with another value of ``feature`` (``"spurious"``:
    the attribute ``a`` via ``render_spurious``; ``"core"``: the label ``y`` via ``render_core``)."""
    spurious = feature == "spurious"
    render = dataset.render_spurious if spurious else dataset.render_core
    if render is None:
        raise ProbeInputError(f"dataset {dataset.name!r} cannot re-render a sample's {feature} feature")
    s = dataset.split(split)
    positions = torch.as_tensor(positions).long().cpu()
    values, num_values = (s.a, dataset.num_attrs) if spurious else (s.y, dataset.num_classes)
    x_cf = render(split, positions, other_values(values[positions.to(values.device)], num_values, seed))
    return flip_rate(model, s.inputs(positions).cpu(), x_cf.cpu(), device=device)


def spurious_flip_rate(model: nn.Module, dataset: SpuriousDataset, split: str, positions: torch.Tensor,
                       seed: int = 0, device: torch.device | str | None = None) -> float:
    """``spurious_flip_rate``: :func:`flip_rate` between samples and their re-renderings with another spurious
    attribute (:func:`other_values` of ``a``, via ``dataset.render_spurious``)."""
    return _counterfactual_flip_rate(model, dataset, split, positions, "spurious", seed, device)


def core_flip_rate(model: nn.Module, dataset: SpuriousDataset, split: str, positions: torch.Tensor,
                   seed: int = 0, device: torch.device | str | None = None) -> float:
    """``core_flip_rate``: :func:`flip_rate` between samples and their re-renderings with another core label
    (:func:`other_values` of ``y``, via ``dataset.render_core``)."""
    return _counterfactual_flip_rate(model, dataset, split, positions, "core", seed, device)


# -- which samples -----------------------------------------------------------------------------------------------
def _permuted(candidates: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return candidates[torch.randperm(len(candidates), generator=g)]


def select_positions(split: Split, samples: str = "bc", n: int = 16, seed: int = 0) -> torch.Tensor:
    """Positions of up to ``n`` samples of ``split``, a seeded random choice among ``samples``:
    ``"bc"`` (bias-conflicting), ``"ba"`` (bias-aligned), ``"all"`` or ``"group:<g>"``; returned in ascending
    order so that the same samples line up across runs of one dataset."""
    if n < 1:
        raise ProbeInputError(f"number of samples must be >= 1, got {n}")
    is_bc = split.is_bc.cpu()
    if samples == "bc":
        keep = is_bc
    elif samples == "ba":
        keep = ~is_bc
    elif samples == "all":
        keep = torch.ones_like(is_bc)
    elif samples.startswith("group:"):
        try:
            g = int(samples.split(":", 1)[1])
        except ValueError:
            raise ProbeInputError(f"bad sample choice {samples!r}; use group:<integer>") from None
        keep = split.group.cpu() == g
    else:
        raise ProbeInputError(f"bad sample choice {samples!r}; use bc, ba, all or group:<g>")
    candidates = torch.nonzero(keep).flatten()
    if len(candidates) == 0:
        raise ProbeInputError(f"split {split.name!r} has no {samples} samples")
    return _permuted(candidates, seed)[:n].sort().values


def analysis_positions(split: Split, n: int = 256, seed: int = 0) -> torch.Tensor:
    """The fixed subset of the ``attribution`` analysis: up to ``n`` samples of ``split``, BC samples first (a
    seeded random choice of them), then BA samples to fill up to ``n``."""
    is_bc = split.is_bc.cpu()
    bc = _permuted(torch.nonzero(is_bc).flatten(), seed)
    ba = _permuted(torch.nonzero(~is_bc).flatten(), seed + 1)
    return torch.cat([bc, ba])[:n]


# -- run-level API -----------------------------------------------------------------------------------------------
@dataclass
class Attributions:
    """Attributions of one model (one run, one epoch) on chosen samples, as numpy arrays.

    Attributes:
        method: the attribution method (see :data:`METHODS`); ``smoothgrad`` the SmoothGrad level or None.
        run_name, lr, seed, epoch, split: where the model and samples come from.
        positions, index, y, a, is_bc: ``(n,)`` per sample (positions within the split; stable sample ids).
        inputs: ``(n, *input_shape)``; values: attributions of the same shape.
        core_mask, spurious_mask: ``(n, H, W)`` / ``(n, d)`` bool, or None where the dataset has no masks.
    """

    method: str
    smoothgrad: float | None
    run_name: str
    lr: float
    seed: int
    epoch: int
    split: str
    positions: np.ndarray
    index: np.ndarray
    y: np.ndarray
    a: np.ndarray
    is_bc: np.ndarray
    inputs: np.ndarray
    values: np.ndarray
    core_mask: np.ndarray | None
    spurious_mask: np.ndarray | None

    def shares(self) -> pd.DataFrame:
        """One row per sample: index, y, a, is_bc and its ``core_attr_share``, ``spurious_attr_share``,
        ``pointing_game``, ``core_relevance_mass``, ``core_relevance_rank``, ``core_area_ratio``
        (:func:`attr_shares_per_sample`; no share columns where the dataset has no masks)."""
        import pandas as pd

        table = pd.DataFrame({"index": self.index, "y": self.y, "a": self.a, "is_bc": self.is_bc})
        if self.core_mask is not None:
            for k, v in attr_shares_per_sample(self.values, self.core_mask, self.spurious_mask).items():
                table[k] = v
        return table

    def summary(self) -> dict[str, float]:
        """:func:`attr_shares` over these samples (empty where the dataset has no masks)."""
        if self.core_mask is None:
            return {}
        return attr_shares(self.values, self.core_mask, self.spurious_mask)


def attribute_run(
    run: Run,
    epoch: int | None = None,
    method: str = "ig",
    *,
    split: str = "test",
    samples: str = "bc",
    n: int = 16,
    positions: torch.Tensor | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    dataset: SpuriousDataset | None = None,
    values: np.ndarray | None = None,
    **method_options: Any,
) -> Attributions:
    """Attributions of ``run``'s model at ``epoch`` (default: the last) on samples of ``split``, target = true label.

    Samples are ``positions`` when given, else :func:`select_positions` of ``samples``, ``n``, ``seed``. Extra
    keyword arguments go to :func:`~probe.analyses.attribution_methods.attribute` (``n_steps``, ``smoothgrad``,
    ``max_batch_size`` ...). ``dataset`` saves rebuilding it when the caller already has it. ``values``: the
    attributions of these very samples computed before (by a cache of them); the model is then not loaded.
    """
    check_method(method)
    epochs = run.epochs
    if not epochs:
        raise ProbeInputError(f"run {run.name!r} has no committed epoch")
    epoch = epochs[-1] if epoch is None else int(epoch)
    if epoch not in epochs:
        raise ProbeInputError(f"run {run.name!r} has no epoch {epoch}; committed: {epochs[0]}..{epochs[-1]}")
    dataset = run.dataset() if dataset is None else dataset
    s = dataset.split(split)
    positions = select_positions(s, samples, n, seed) if positions is None else torch.as_tensor(positions).long()
    x = s.inputs(positions).float()
    y = s.y[positions.to(s.y.device)].cpu()
    if values is None:
        device = resolve_device("auto") if device is None else torch.device(device)
        model = run.model(epoch).to(device).eval()
        if not method_applies(model, method):
            raise ProbeInputError(f"{method} does not apply to model {run.config.get('model')!r}: it has no conv "
                                  "layer")
        values = attribute(model, x, y, method, device=device, seed=seed, **method_options).numpy()
    elif tuple(np.shape(values)) != tuple(x.shape):
        raise ProbeInputError(f"values have shape {tuple(np.shape(values))}; the samples {tuple(x.shape)}")
    core, spur = s.masks(positions, "core"), s.masks(positions, "spurious")
    return Attributions(
        method=method,
        smoothgrad=method_options.get("smoothgrad"),
        run_name=run.name,
        lr=float(run.lr),
        seed=int(run.seed),
        epoch=epoch,
        split=split,
        positions=positions.cpu().numpy(),
        index=s.index[positions.to(s.index.device)].cpu().numpy(),
        y=y.numpy(),
        a=s.a[positions.to(s.a.device)].cpu().numpy(),
        is_bc=s.is_bc[positions.to(s.is_bc.device)].cpu().numpy(),
        inputs=x.cpu().numpy(),
        values=np.asarray(values),
        core_mask=None if core is None else core.cpu().numpy(),
        spurious_mask=None if spur is None else spur.cpu().numpy(),
    )


def attribute_sweep(sweep: Sweep, epoch: int | None = None, method: str = "ig", **options: Any) -> list[Attributions]:
    """:func:`attribute_run` for every run of ``sweep`` that has a committed epoch, ordered by (lr, seed), on the
    same samples (the dataset is built once; runs of one sweep share it). ``epoch`` None takes each run's last."""
    runs = sorted((r for r in sweep.runs if r.epochs), key=lambda r: (r.lr, r.seed))
    if not runs:
        raise ProbeInputError(f"sweep {sweep.name!r} has no run with a committed epoch")
    datasets = {(r.config["dataset"], repr(sorted(r.config.get("dataset_options", {}).items()))) for r in runs}
    if len(datasets) > 1:  # a folder of runs trained one by one may mix them
        raise ProbeInputError(f"{sweep.name!r}: its runs were trained on different datasets; attribute each run")
    dataset = options.pop("dataset", None) or runs[0].dataset()
    return [attribute_run(r, epoch if epoch is None or epoch in r.epochs else r.epochs[-1], method,
                          dataset=dataset, **options) for r in runs]


def shares_table(results: list[Attributions]) -> pd.DataFrame:
    """One row per :class:`Attributions`: run, lr, seed, epoch, method, n (samples attributed), n_attributed
    (those with a non-empty core mask: :func:`n_attributed`, 0 without masks) and its :func:`attr_shares`."""
    import pandas as pd

    rows = []
    for r in results:
        counted = 0 if r.core_mask is None else n_attributed(r.core_mask)
        rows.append({"run": r.run_name, "lr": r.lr, "seed": r.seed, "epoch": r.epoch, "method": r.method,
                     "smoothgrad": r.smoothgrad, "n": len(r.index), "n_attributed": counted, **r.summary()})
    return pd.DataFrame(rows)


# -- the epoch analysis ------------------------------------------------------------------------------------------
_NUMBERS = "metrics-attributions.md#numbers"


@register_epoch_analysis(
    "attribution",
    needs_model=True,
    version=3,
    options=(
        Option("attr_methods", "list[str]", ("ig",), "attribution methods of the attr_share ids", choices=METHODS),
        Option("attr_split", "str", "test", "split whose samples are attributed and re-rendered",
               choices=("train", "val", "test")),
        Option("attr_n", "int", 256, "samples attributed per epoch (analysis_positions)", low=0),
        Option("attr_seed", "int", 0, "seed of the sample choice, the stochastic methods and the re-renderings"),
        Option("attr_method_options", "dict", {}, "keyword arguments of attribute() for every method, as JSON, "
               "e.g. {\"smoothgrad\": 0.1}"),
        Option("gradcam_layer", "str", "", "dotted module name of the gradcam layer, e.g. stages.3 (empty: the "
               "last residual stage, or the last module with a 4-D output)"),
    ),
    metrics=(
        Metric("core_attr_share@<method>", "attribution mass (method m, '+smoothgrad' when smoothed) inside the core "
               "region over the total", _NUMBERS, "probe.analyses.attribution:attr_shares"),
        Metric("spurious_attr_share@<method>", "attribution mass inside the spurious region over the total",
               _NUMBERS, "probe.analyses.attribution:attr_shares"),
        Metric("pointing_game@<method>", "fraction of samples whose top-attributed pixel lies in the core region",
               _NUMBERS, "probe.analyses.attribution:attr_shares"),
        Metric("core_relevance_mass@<method>", "positive part of the channel-summed attribution inside the core "
               "region over its total (Quantus's RelevanceMassAccuracy)", _NUMBERS,
               "probe.analyses.attribution:relevance_per_sample"),
        Metric("core_relevance_rank@<method>", "fraction of the top-|core| pixels by channel-summed attribution that "
               "lie in the core region (Quantus's RelevanceRankAccuracy)", _NUMBERS,
               "probe.analyses.attribution:relevance_per_sample"),
        Metric("core_area_ratio@<method>", "core_attr_share over the core region's area fraction (1: just the share "
               "its area would give)", _NUMBERS, "probe.analyses.attribution:attr_shares_per_sample"),
        Metric("n_attributed", "number of samples attributed with a non-empty core mask at that epoch", _NUMBERS,
               "probe.analyses.attribution:n_attributed"),
        Metric("spurious_flip_rate", "fraction of predictions that change when only the spurious feature of a sample "
               "is re-rendered", _NUMBERS, "probe.analyses.attribution:spurious_flip_rate"),
        Metric("core_flip_rate", "fraction of predictions that change when only the core feature of a sample is "
               "re-rendered", _NUMBERS, "probe.analyses.attribution:core_flip_rate"),
    ),
)
def attribution_analysis(ctx: AnalysisContext, epoch: int) -> EpochMetrics:
    """``core_attr_share@<m>``, ``spurious_attr_share@<m>``, ``pointing_game@<m>``, ``core_relevance_mass@<m>``,
    ``core_relevance_rank@<m>``, ``core_area_ratio@<m>`` for each method ``m`` in the option ``attr_methods``
    (default ``["ig"]``; skipped without masks, ``gradcam`` skipped for models without a conv layer), with
    ``n_attributed`` (samples with a non-empty core mask) where a method ran, and ``spurious_flip_rate`` /
    ``core_flip_rate`` where the dataset can re-render, on the split ``attr_split`` (default ``"test"``), over
    :func:`analysis_positions` with ``n = attr_n`` (default 256) and ``seed = attr_seed`` (default 0); the options
    are declared above. ``gradcam_layer`` names the Grad-CAM layer (default: see
    :func:`~probe.analyses.attribution_methods.gradcam_layer`).
    ``attr_method_options`` (a dict) goes to :func:`attribute` for every method; with a
    ``smoothgrad`` level in it the ids read ``core_attr_share@<m>+smoothgrad``."""
    methods = ctx.option("attr_methods")
    split_name = ctx.option("attr_split")
    n = ctx.option("attr_n")
    seed = ctx.option("attr_seed")
    method_options = ctx.option("attr_method_options")
    cam_layer = ctx.option("gradcam_layer") or None
    dataset = ctx.dataset
    s = dataset.split(split_name)
    positions = analysis_positions(s, n, seed)
    model = model_epoch(ctx, epoch).model  # loaded once per epoch, shared with the other analyses
    out: dict[str, float] = {}
    if s.has_masks and len(positions):
        x = s.inputs(positions).float()
        y = s.y[positions.to(s.y.device)].cpu()
        core, spur = s.masks(positions, "core"), s.masks(positions, "spurious")
        for m in methods:
            if not method_applies(model, m):
                continue
            extra = {"layer": cam_layer} if m == "gradcam" and cam_layer else {}
            values = attribute(model, x, y, m, device=ctx.device, seed=seed, **{**method_options, **extra})
            tag = f"{m}+smoothgrad" if method_options.get("smoothgrad") is not None else m
            for k, v in attr_shares(values, core, spur).items():
                out[f"{k}@{tag}"] = v
            out["n_attributed"] = float(n_attributed(core))
    if dataset.render_spurious is not None and len(positions):
        out["spurious_flip_rate"] = spurious_flip_rate(model, dataset, split_name, positions, seed, ctx.device)
    if dataset.render_core is not None and len(positions):
        out["core_flip_rate"] = core_flip_rate(model, dataset, split_name, positions, seed, ctx.device)
    return {split_name: out} if out else {}
