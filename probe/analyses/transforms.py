"""Hidden cues from input transforms: shape vs texture, centre vs border, and background reliance.

Any image dataset, no extra data: the model's accuracy on a fixed subset of a held-out split is measured on the
images as they are (``acc_untransformed``) and after each transform (every transform keeps the image's shape):

- :func:`patch_shuffle` at grid ``g``: the image is cut into ``g x g`` patches of ``floor(H/g) x floor(W/g)`` pixels
  (rows and columns beyond ``g * floor(H/g)`` stay in place) and the patches are permuted, an independent uniform
  random permutation per image (seeded): local texture is kept, global shape destroyed (``acc_shuffle@<g>``);
- :func:`low_pass`: separable Gaussian blur of standard deviation ``sigma`` pixels (kernel radius ``ceil(3 sigma)``,
  normalised to sum 1, replicate padding, so a constant image is left as it is): shape is kept, fine texture removed
  (``acc_lowpass``);
- :func:`keep_centre` / :func:`keep_border`: the centre box of ``round(f H) x round(f W)`` pixels (``f`` the centre
  fraction) is kept and the border set to ``fill``, or the reverse (``acc_centre_only``, ``acc_border_only``);
  ``fill`` is the per-channel mean of the evaluated images over samples and pixels, a constant that carries no
  information about any one sample;
- :func:`swap_background` (datasets with core masks, e.g. Waterbirds with CUB's bird masks): pixels inside a sample's
  core mask keep their values; pixels outside it come from a partner image (:func:`background_partners`: drawn among
  the samples of another spurious attribute, another place on Waterbirds); where the partner's own core region falls
  in that background, the partner's mean background colour is used, so no part of the partner's object is pasted
  (``acc_bg_swap``, ``bg_flip_rate``).

Scores, normalised by how far the model is above chance so that they compare across datasets. With ``acc`` =
``acc_untransformed`` and ``chance`` = the majority-class rate of the evaluated samples (``transform_chance``: the
best accuracy a constant prediction reaches), and not clipped (a value above 1 means the transform took the model
below chance, a negative one that it helped)::

    shape_reliance@g   = (acc - acc_shuffle@g) / (acc - chance)
    shape_reliance     = mean over the measurable grids g of shape_reliance@g
    texture_reliance   = (acc - acc_lowpass) / (acc - chance)
    border_reliance    = (acc_border_only - chance) / (acc - chance)
    centre_reliance    = (acc_centre_only - chance) / (acc - chance)
    background_reliance = acc' - acc_bg_swap   (acc' over the swapped samples; SPEC section 4: the plain drop)

1 means the transform (or keeping only that region) takes the model to chance (or keeps all of its accuracy, for the
``*_only`` scores); 0 means no effect. A score is NaN ("not measurable") when ``acc - chance < MIN_ABOVE_CHANCE``
(0.05), and ``acc_shuffle@g`` with its score when ``g`` exceeds the image's height or width; the reasons are in
:attr:`TransformProbe.not_measurable`. Inputs that are not images (``(n, d)`` vectors, as ``parity``) are not
measurable at all: the epoch analysis emits nothing for them, and no background ids for datasets without masks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from probe.analyses.base import AnalysisContext, EpochMetrics, Metric, Option, register_epoch_analysis
from probe.analyses.features import BATCH_SIZE, DEFAULT_BATCH_SIZE, eval_mode, model_device, model_epoch
from probe.errors import ProbeInputError

#: default grids g of the patch shuffles.
DEFAULT_GRIDS = (2, 4, 8)
#: default standard deviation (pixels) of the Gaussian low-pass.
DEFAULT_SIGMA = 1.0
#: default side fraction of the centre box.
DEFAULT_CENTRE_FRACTION = 0.5
#: a score is not measurable when the untransformed accuracy is less than this above chance.
MIN_ABOVE_CHANCE = 0.05


# -- the transforms --------------------------------------------------------------------------------------------------


def _check_images(x: torch.Tensor) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
        raise ProbeInputError(f"image transforms need images of shape (n, C, H, W), got {shape}")
    return x


def patch_shuffle(x: torch.Tensor, grid: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each image cut into ``grid x grid`` patches of ``floor(H/grid) x floor(W/grid)`` pixels, the patches permuted
    (one uniform random permutation per image, drawn on the CPU from ``generator``); rows and columns beyond the
    patch grid stay where they are. ``x``: ``(n, C, H, W)``; returns a new tensor of the same shape.

    Example:
        >>> x = torch.arange(16.0).reshape(1, 1, 4, 4)
        >>> sorted(patch_shuffle(x, 2, torch.Generator().manual_seed(0)).flatten().tolist()) == list(range(16))
        True
    """
    x = _check_images(x)
    grid = int(grid)
    n, c, h, w = x.shape
    if grid < 1 or grid > min(h, w):
        raise ProbeInputError(f"patch grid {grid} does not fit images of {h}x{w} pixels (1 <= grid <= {min(h, w)})")
    ph, pw = h // grid, w // grid
    m = grid * grid
    order = torch.argsort(torch.rand(n, m, generator=generator), dim=1).to(x.device)
    patches = x[:, :, : grid * ph, : grid * pw].reshape(n, c, grid, ph, grid, pw).permute(0, 2, 4, 1, 3, 5)
    patches = patches.reshape(n, m, c, ph, pw)
    moved = torch.gather(patches, 1, order.view(n, m, 1, 1, 1).expand(n, m, c, ph, pw))
    out = x.clone()
    out[:, :, : grid * ph, : grid * pw] = (moved.reshape(n, grid, grid, c, ph, pw).permute(0, 3, 1, 4, 2, 5)
                                           .reshape(n, c, grid * ph, grid * pw))
    return out


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """The 1-d Gaussian ``exp(-k^2 / (2 sigma^2))`` for ``|k| <= ceil(3 sigma)``, normalised to sum 1 (float64);
    ``[1.]`` for ``sigma = 0``."""
    sigma = float(sigma)
    if not math.isfinite(sigma) or sigma < 0:
        raise ProbeInputError(f"low-pass sigma must be a finite number >= 0, got {sigma}")
    if sigma == 0:
        return torch.ones(1, dtype=torch.float64)
    radius = math.ceil(3 * sigma)
    k = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-(k**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def low_pass(x: torch.Tensor, sigma: float = DEFAULT_SIGMA) -> torch.Tensor:
    """Separable Gaussian blur of every channel (:func:`gaussian_kernel`, replicate padding): ``(n, C, H, W)`` in,
    the same shape out. A constant image is returned unchanged (up to rounding); ``sigma = 0`` is the identity.

    Example:
        >>> x = torch.full((1, 3, 5, 7), 0.25)
        >>> bool(torch.allclose(low_pass(x, 2.0), x))
        True
    """
    x = _check_images(x)
    kernel = gaussian_kernel(sigma).to(x.device, x.dtype)
    r = (len(kernel) - 1) // 2
    if r == 0:
        return x.clone()
    c = x.shape[1]
    out = F.pad(x, (r, r, 0, 0), mode="replicate")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    out = F.pad(out, (0, 0, r, r), mode="replicate")
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def centre_box(height: int, width: int, fraction: float = DEFAULT_CENTRE_FRACTION) -> torch.Tensor:
    """``(H, W)`` bool, True on the centre box of ``max(1, round(f H)) x max(1, round(f W))`` pixels (top-left corner
    at ``((H - h) // 2, (W - w) // 2)``)."""
    fraction = float(fraction)
    if not 0 < fraction < 1:
        raise ProbeInputError(f"centre fraction must lie strictly between 0 and 1, got {fraction}")
    h, w = max(1, round(fraction * height)), max(1, round(fraction * width))
    top, left = (height - h) // 2, (width - w) // 2
    box = torch.zeros(height, width, dtype=torch.bool)
    box[top : top + h, left : left + w] = True
    return box


def channel_fill(x: torch.Tensor) -> torch.Tensor:
    """``(1, C, 1, 1)``: the per-channel mean of ``x`` over samples and pixels, the value masked regions take."""
    return _check_images(x).mean(dim=(0, 2, 3), keepdim=True)


def keep_centre(x: torch.Tensor, fraction: float = DEFAULT_CENTRE_FRACTION,
                fill: torch.Tensor | float | None = None) -> torch.Tensor:
    """Images with everything outside :func:`centre_box` set to ``fill`` (default :func:`channel_fill` of ``x``)."""
    x = _check_images(x)
    box = centre_box(x.shape[2], x.shape[3], fraction).to(x.device)
    return torch.where(box, x, channel_fill(x) if fill is None else torch.as_tensor(fill, dtype=x.dtype))


def keep_border(x: torch.Tensor, fraction: float = DEFAULT_CENTRE_FRACTION,
                fill: torch.Tensor | float | None = None) -> torch.Tensor:
    """Images with :func:`centre_box` set to ``fill`` (default :func:`channel_fill` of ``x``), the border kept."""
    x = _check_images(x)
    box = centre_box(x.shape[2], x.shape[3], fraction).to(x.device)
    return torch.where(box, channel_fill(x) if fill is None else torch.as_tensor(fill, dtype=x.dtype), x)


def background_partners(attrs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """``(n,)`` int64: for each sample ``i`` a partner ``j != i`` drawn uniformly among the samples whose spurious
    attribute differs from ``attrs[i]``, or among all other samples when every sample shares it (CPU ``generator``).
    Needs at least two samples."""
    a = torch.as_tensor(attrs).cpu().long().flatten()
    n = len(a)
    if n < 2:
        raise ProbeInputError(f"a background swap needs at least 2 samples, got {n}")
    partner = torch.empty(n, dtype=torch.long)
    for value in torch.unique(a).tolist():
        mine = torch.nonzero(a == value).flatten()
        others = torch.nonzero(a != value).flatten()
        if len(others):
            partner[mine] = others[torch.randint(len(others), (len(mine),), generator=generator)]
        else:  # one attribute only: any other sample (shift by 1..n-1 positions)
            shift = torch.randint(1, n, (len(mine),), generator=generator)
            partner[mine] = (mine + shift) % n
    return partner


def swap_background(x: torch.Tensor, core: torch.Tensor, partners: torch.Tensor) -> torch.Tensor:
    """Images whose background comes from another image.

    ``out[i, :, p] = x[i, :, p]`` where ``core[i, p]`` (the object), else ``x[j, :, p]`` with ``j = partners[i]``
    where ``p`` is background in image ``j`` too, else the mean of ``x[j]`` over its background pixels (per channel).

    Args:
        x: ``(n, C, H, W)`` images.
        core: ``(n, H, W)`` bool core (object) masks; every image needs at least one background pixel.
        partners: ``(n,)`` int64 positions of the partner of each image (:func:`background_partners`).
    """
    x = _check_images(x)
    core = torch.as_tensor(core).to(x.device).bool()
    if core.shape != (x.shape[0], *x.shape[2:]):
        raise ProbeInputError(f"core masks of shape {tuple(core.shape)} do not match images of shape {tuple(x.shape)}")
    partners = torch.as_tensor(partners).to(x.device).long()
    if partners.shape != (len(x),) or (len(x) and (partners.min() < 0 or partners.max() >= len(x))):
        raise ProbeInputError(f"partners must be {len(x)} positions in 0..{len(x) - 1}")
    background = (~core).unsqueeze(1).to(x.dtype)  # (n, 1, H, W)
    n_background = background.sum(dim=(2, 3), keepdim=True)
    if bool((n_background == 0).any()):
        raise ProbeInputError("a background swap needs images with at least one background pixel")
    mean_background = (x * background).sum(dim=(2, 3), keepdim=True) / n_background  # (n, C, 1, 1)
    donor = torch.where(core[partners].unsqueeze(1), mean_background[partners], x[partners])
    return torch.where(core.unsqueeze(1), x, donor)


# -- predictions and scores --------------------------------------------------------------------------------------------


def predict_images(model: nn.Module, x: torch.Tensor, batch_size: int = DEFAULT_BATCH_SIZE) -> torch.Tensor:
    """``(n,)`` argmax of ``model(x)`` (eval mode, ``torch.inference_mode``, batches of ``batch_size``), on the CPU."""
    device = model_device(model)
    preds = []
    with eval_mode(model), torch.inference_mode():
        for start in range(0, len(x), batch_size):
            preds.append(model(x[start : start + batch_size].to(device).float()).argmax(dim=1).cpu())
    return torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)


def majority_rate(y: torch.Tensor | np.ndarray) -> float:
    """The frequency of the most common label: the accuracy of the best constant prediction."""
    y = np.asarray(torch.as_tensor(y).cpu())
    if y.size == 0:
        raise ProbeInputError("majority_rate of no labels")
    return float(np.bincount(y.astype(np.int64)).max() / y.size)


def reliance(acc: float, acc_transformed: float, chance: float, *, kept: bool = False) -> float:
    """``(acc - acc_transformed) / (acc - chance)``, or with ``kept`` ``(acc_transformed - chance) / (acc - chance)``
    (the share of the above-chance accuracy a region keeps); not clipped; NaN when ``acc - chance`` is below
    :data:`MIN_ABOVE_CHANCE` or a value is NaN."""
    gap = acc - chance
    if not (math.isfinite(gap) and math.isfinite(acc_transformed)) or gap < MIN_ABOVE_CHANCE:
        return float("nan")
    return ((acc_transformed - chance) if kept else (acc - acc_transformed)) / gap


@dataclass
class TransformProbe:
    """The transform probes of one model on one set of images.

    Attributes:
        metrics: metric id -> value (the ids of the module docstring; NaN where not measurable).
        not_measurable: metric id -> why it is NaN (or, for ``background_reliance``, why it is absent).
    """

    metrics: dict[str, float] = field(default_factory=dict)
    not_measurable: dict[str, str] = field(default_factory=dict)


def transform_probe(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    grids: Sequence[int] = DEFAULT_GRIDS,
    sigma: float = DEFAULT_SIGMA,
    centre_fraction: float = DEFAULT_CENTRE_FRACTION,
    core: torch.Tensor | None = None,
    attrs: torch.Tensor | None = None,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> TransformProbe:
    """Accuracies of ``model`` on ``x`` as it is and under every transform, and the reliance scores (module docstring).

    Args:
        model: a classifier ``x -> logits`` (run in eval mode on its own device).
        x: ``(n, C, H, W)`` images; y: ``(n,)`` labels.
        grids: the patch-shuffle grids g (default 2, 4, 8); sigma: the low-pass's standard deviation in pixels
            (default 1); centre_fraction: side fraction of the centre box (default 0.5).
        core: ``(n, H, W)`` bool core masks for the background swap, or None (no background ids).
        attrs: ``(n,)`` spurious attributes the swap partners are drawn against (default: all alike).
        seed: seed of the permutations and partners; batch_size: samples per forward pass.

    Example:
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
        >>> out = transform_probe(model, torch.randn(8, 1, 4, 4), torch.arange(8) % 2, grids=(2,))
        >>> sorted(out.metrics)[:3]
        ['acc_border_only', 'acc_centre_only', 'acc_lowpass']
    """
    x = _check_images(torch.as_tensor(x)).float()
    y = torch.as_tensor(y).cpu().long()
    if len(x) != len(y) or len(x) == 0:
        raise ProbeInputError(f"transform_probe needs as many labels as images (> 0), got {len(x)} and {len(y)}")
    h, w = x.shape[2:]
    out = TransformProbe()
    m, why = out.metrics, out.not_measurable

    def acc_of(images: torch.Tensor) -> float:
        return float((predict_images(model, images, batch_size) == y).double().mean())

    clean = predict_images(model, x, batch_size)
    acc = float((clean == y).double().mean())
    chance = majority_rate(y)
    m.update(acc_untransformed=acc, transform_chance=chance, n_transformed=float(len(x)))
    at_chance = acc - chance < MIN_ABOVE_CHANCE
    chance_reason = (f"untransformed accuracy {acc:.3f} is less than {MIN_ABOVE_CHANCE} above chance "
                     f"(majority rate {chance:.3f})")
    shape_scores = []
    for g in grids:
        g = int(g)
        if g > min(h, w) or g < 1:
            m[f"acc_shuffle@{g}"] = m[f"shape_reliance@{g}"] = float("nan")
            why[f"acc_shuffle@{g}"] = why[f"shape_reliance@{g}"] = f"grid {g} does not fit {h}x{w} images"
            continue
        shuffled = acc_of(patch_shuffle(x, g, torch.Generator().manual_seed(seed * 100_003 + g)))
        m[f"acc_shuffle@{g}"] = shuffled
        m[f"shape_reliance@{g}"] = score = reliance(acc, shuffled, chance)
        if math.isfinite(score):
            shape_scores.append(score)
        elif at_chance:
            why[f"shape_reliance@{g}"] = chance_reason
    m["shape_reliance"] = float(np.mean(shape_scores)) if shape_scores else float("nan")
    if not shape_scores:
        why["shape_reliance"] = chance_reason if at_chance else f"no grid of {list(grids)} fits {h}x{w} images"
    m["acc_lowpass"] = acc_of(low_pass(x, sigma))
    m["texture_reliance"] = reliance(acc, m["acc_lowpass"], chance)
    fill = channel_fill(x)
    m["acc_centre_only"] = acc_of(keep_centre(x, centre_fraction, fill))
    m["acc_border_only"] = acc_of(keep_border(x, centre_fraction, fill))
    m["centre_reliance"] = reliance(acc, m["acc_centre_only"], chance, kept=True)
    m["border_reliance"] = reliance(acc, m["acc_border_only"], chance, kept=True)
    if at_chance:
        for key in ("texture_reliance", "centre_reliance", "border_reliance"):
            why[key] = chance_reason
    if core is None:
        why["background_reliance"] = "no core masks: the background cannot be told from the object"
        return out
    core = torch.as_tensor(core).cpu().bool()
    if core.shape != (len(x), h, w):
        raise ProbeInputError(f"core masks of shape {tuple(core.shape)} do not match images of shape {tuple(x.shape)}")
    usable = torch.nonzero(core.flatten(1).any(1) & (~core).flatten(1).any(1)).flatten()
    m["n_bg_swapped"] = float(len(usable))
    if len(usable) < 2:
        why["background_reliance"] = f"{len(usable)} sample(s) with both an object and a background pixel; 2 needed"
        m.update(acc_bg_swap=float("nan"), background_reliance=float("nan"), bg_flip_rate=float("nan"))
        return out
    a = torch.zeros(len(x), dtype=torch.long) if attrs is None else torch.as_tensor(attrs).cpu().long()
    partners = background_partners(a[usable], torch.Generator().manual_seed(seed * 100_003 + 99_999))
    swapped = predict_images(model, swap_background(x[usable], core[usable], partners), batch_size)
    y_u, clean_u = y[usable], clean[usable]
    acc_u = float((clean_u == y_u).double().mean())
    m["acc_bg_swap"] = float((swapped == y_u).double().mean())
    m["bg_flip_rate"] = float((swapped != clean_u).double().mean())
    m["background_reliance"] = acc_u - m["acc_bg_swap"]
    return out


# -- the epoch analysis ----------------------------------------------------------------------------------------------


def is_image_shape(input_shape: Sequence[int]) -> bool:
    """True for ``(C, H, W)`` inputs with ``H, W >= 2``: the transforms need a spatial layout."""
    return len(input_shape) == 3 and min(input_shape[1:]) >= 2


def transform_positions(n_split: int, n: int, seed: int) -> torch.Tensor:
    """Sorted positions of a seeded uniform random choice of ``min(n, n_split)`` samples of a split."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.sort(torch.randperm(int(n_split), generator=g)[: int(n)]).values


_DOCS = "metrics-transforms.md#"
_SHUFFLE = _DOCS + "patch-shuffling-acc_shuffleg-shape_relianceg-shape_reliance"
_LOWPASS = _DOCS + "low-pass-filtering-acc_lowpass-texture_reliance"
_REGIONS = _DOCS + "centre-and-border-acc_centre_only-acc_border_only-centre_reliance-border_reliance"
_BACKGROUND = _DOCS + "background-swap-acc_bg_swap-background_reliance-bg_flip_rate"
_COMMON = _DOCS + "the-reference-acc_untransformed-transform_chance-n_transformed"
_CODE = "probe.analyses.transforms:transform_probe"


@register_epoch_analysis(
    "transforms",
    needs_model=True,
    version=1,
    options=(
        Option("transform_split", "str", "test", "split whose images the transform probes use",
               choices=("train", "val", "test")),
        Option("transform_n", "int", 256, "images per epoch the transform probes use (a seeded random subset)", low=1),
        Option("transform_seed", "int", 0, "seed of the subset, the patch permutations and the background partners"),
        Option("shuffle_grids", "list[int]", DEFAULT_GRIDS, "grids g of the patch shuffles (g x g patches)", low=1),
        Option("lowpass_sigma", "float", DEFAULT_SIGMA, "standard deviation in pixels of the Gaussian low-pass",
               low=0.0),
        Option("centre_fraction", "float", DEFAULT_CENTRE_FRACTION, "side fraction of the centre box of the "
               "centre / border probes", low=0.01, high=0.99),
        BATCH_SIZE,
    ),
    metrics=(
        Metric("acc_untransformed", "accuracy on the transform probes' images as they are (the reference acc)",
               _COMMON, _CODE),
        Metric("transform_chance", "majority-class rate of the transform probes' images (the chance level of the "
               "reliance scores)", _COMMON, "probe.analyses.transforms:majority_rate"),
        Metric("n_transformed", "number of images the transform probes use", _COMMON, _CODE),
        Metric("acc_shuffle@<g>", "accuracy after cutting each image into g x g patches and permuting them "
               "(NaN when g exceeds the image side)", _SHUFFLE, "probe.analyses.transforms:patch_shuffle"),
        Metric("shape_reliance@<g>", "(acc - acc_shuffle@g) / (acc - chance), acc = acc_untransformed, chance = "
               "transform_chance; not clipped, NaN when acc - chance < 0.05", _SHUFFLE,
               "probe.analyses.transforms:reliance"),
        Metric("shape_reliance", "mean of shape_reliance@g over the grids that fit (1: shuffling patches takes the "
               "model to chance, 0: no effect)", _SHUFFLE, _CODE),
        Metric("acc_lowpass", "accuracy after a Gaussian blur of lowpass_sigma pixels", _LOWPASS,
               "probe.analyses.transforms:low_pass"),
        Metric("texture_reliance", "(acc - acc_lowpass) / (acc - chance); not clipped, NaN when acc - chance < 0.05",
               _LOWPASS, "probe.analyses.transforms:reliance"),
        Metric("acc_centre_only", "accuracy with everything outside the centre box set to the mean colour",
               _REGIONS, "probe.analyses.transforms:keep_centre"),
        Metric("acc_border_only", "accuracy with the centre box set to the mean colour", _REGIONS,
               "probe.analyses.transforms:keep_border"),
        Metric("centre_reliance", "(acc_centre_only - chance) / (acc - chance): share of the above-chance accuracy "
               "the centre alone keeps", _REGIONS, "probe.analyses.transforms:reliance"),
        Metric("border_reliance", "(acc_border_only - chance) / (acc - chance): share of the above-chance accuracy "
               "the border alone keeps", _REGIONS, "probe.analyses.transforms:reliance"),
        Metric("acc_bg_swap", "accuracy when the pixels outside each image's core mask come from another image "
               "(of another spurious attribute)", _BACKGROUND, "probe.analyses.transforms:swap_background"),
        Metric("background_reliance", "acc - acc_bg_swap over the swapped images: the accuracy drop when the "
               "background is replaced by another image's; only with core masks", _BACKGROUND, _CODE),
        Metric("bg_flip_rate", "fraction of the swapped images whose predicted class changes with the background",
               _BACKGROUND, _CODE),
        Metric("n_bg_swapped", "number of images whose background is swapped (core mask with an object and a "
               "background pixel)", _BACKGROUND, _CODE),
    ),
)
def transforms_analysis(ctx: AnalysisContext, epoch: int) -> EpochMetrics:
    """``<transform_split>``: the ids of :func:`transform_probe` on a seeded subset of ``transform_n`` images
    (:func:`transform_positions`), with the core masks where the split has them; nothing for inputs that are not
    images. Options: ``transform_split`` (default test), ``transform_n`` (256), ``transform_seed`` (0),
    ``shuffle_grids`` (2, 4, 8), ``lowpass_sigma`` (1 pixel), ``centre_fraction`` (0.5), ``batch_size``."""
    dataset = ctx.dataset
    if not is_image_shape(dataset.input_shape):
        return {}
    split_name = ctx.option("transform_split")
    s = dataset.split(split_name)
    seed = ctx.option("transform_seed")
    positions = transform_positions(len(s), ctx.option("transform_n"), seed)
    model = model_epoch(ctx, epoch).model  # loaded once per epoch, shared with the other model analyses
    core = s.masks(positions, "core") if s.has_masks else None
    if core is not None and tuple(core.shape[1:]) != tuple(dataset.input_shape[1:]):
        core = None  # masks of another layout than the image's pixels
    result = transform_probe(
        model,
        s.inputs(positions).float(),
        s.y[positions.to(s.y.device)],
        grids=ctx.option("shuffle_grids"),
        sigma=ctx.option("lowpass_sigma"),
        centre_fraction=ctx.option("centre_fraction"),
        core=None if core is None else core.cpu(),
        attrs=s.a[positions.to(s.a.device)],
        seed=seed,
        batch_size=ctx.option(BATCH_SIZE),
    )
    return {split_name: result.metrics}

