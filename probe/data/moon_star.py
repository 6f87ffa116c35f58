"""Moon-star: generated images of a moon (y = 0) or a star (y = 1); the spurious cue is the background colour or
the object's position.

Each image is ``(3, S, S)``: a light-grey shape with random size, rotation and placement, rendered with 2x2
supersampling. The cue:

- ``cue="color"`` (default): background tinted orange (``a = 0``) or blue (``a = 1``) with a little jitter; the shape is
  placed near the centre.
- ``cue="position"``: black background; the shape sits in the top-left (``a = 0``) or bottom-right (``a = 1``) quadrant.

BA/BC rule: label space, bias-aligned iff ``a == y``. Training: ``a = y`` with probability ``rho``; validation and test:
``a`` independent of ``y``. Masks: the core region is the shape (pixels at least half covered); the spurious region is
every other pixel (the tinted background, or for ``position`` the canvas whose empty quadrants carry the cue).
Counterfactuals re-render the same shape (same size, rotation and jitter) with the other cue, or the other shape with
the same cue.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from probe.data.base import (
    BC_RULE_LABEL_SPACE,
    Split,
    SpuriousDataset,
    check_image_size,
    check_rho,
    label_space_bc,
    spurious_attributes,
    unbiased_attributes,
)
from probe.errors import ProbeInputError

CUES = ("color", "position")
BACKGROUNDS = torch.tensor([[0.85, 0.55, 0.20], [0.20, 0.45, 0.85]])
SHAPE_COLOUR = 0.92
_SUPERSAMPLE = 2
STAR_INNER = 0.45


def shape_coverage(shape: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor, radius: torch.Tensor,
                   angle: torch.Tensor, size: int) -> torch.Tensor:
    """Fraction of each pixel covered by the shape: ``(n, size, size)`` in [0, 1].

    Coordinates are in pixels of the ``size x size`` canvas. A moon is the disk of ``radius`` minus a disk of
    ``0.85 radius`` shifted by ``0.5 radius`` towards ``angle``; a star is a five-pointed star polygon with outer
    radius ``radius``, inner radius ``0.45 radius``, rotated by ``angle``.
    """
    m = size * _SUPERSAMPLE
    t = (torch.arange(m, dtype=torch.float32) + 0.5) / _SUPERSAMPLE
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    dx = xx[None] - cx[:, None, None]
    dy = yy[None] - cy[:, None, None]
    r = radius[:, None, None]
    th = angle[:, None, None]
    dist = torch.sqrt(dx**2 + dy**2)
    inside = torch.zeros_like(dist)
    is_star = shape.bool()
    moon, star = torch.nonzero(~is_star).flatten(), torch.nonzero(is_star).flatten()
    if len(moon):
        r, th, d = radius[moon, None, None], angle[moon, None, None], dist[moon]
        sx, sy = dx[moon] - 0.5 * r * torch.cos(th), dy[moon] - 0.5 * r * torch.sin(th)
        inside[moon] = ((d <= r) & (sx**2 + sy**2 > (0.85 * r) ** 2)).float()
    if len(star):
        # boundary radius along the ray at polar angle u, folded into one of the ten half-sectors
        r, th, d = radius[star, None, None], angle[star, None, None], dist[star]
        sector = 2 * math.pi / 5
        u = torch.remainder(torch.atan2(dy[star], dx[star]) - th, sector)
        tt = torch.where(u <= sector / 2, u, sector - u)
        p2x, p2y = STAR_INNER * math.cos(sector / 2), STAR_INNER * math.sin(sector / 2)
        boundary = p2y / (torch.cos(tt) * p2y - torch.sin(tt) * (p2x - 1.0))
        inside[star] = (d <= boundary * r).float()
    return F.avg_pool2d(inside[:, None], _SUPERSAMPLE)[:, 0]


def draw_params(n: int, size: int, cue: str, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Per-sample rendering parameters: radius, rotation, centre jitter, background jitter."""
    if cue == "color":
        radius = size * (0.22 + 0.08 * torch.rand(n, generator=generator))
        jitter = (torch.rand(n, 2, generator=generator) - 0.5) * 0.2 * size
    else:
        radius = size * (0.13 + 0.05 * torch.rand(n, generator=generator))
        jitter = (torch.rand(n, 2, generator=generator) - 0.5) * 0.1 * size
    return {
        "radius": radius,
        "angle": torch.rand(n, generator=generator) * 2 * math.pi,
        "jitter": jitter,
        "tint": torch.randn(n, 3, generator=generator) * 0.05,
    }


def render(y: torch.Tensor, a: torch.Tensor, params: dict[str, torch.Tensor], size: int, cue: str,
           chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``(n, 3, size, size)`` and core masks ``(n, size, size)`` for shapes ``y`` and cues ``a``."""
    xs, masks = [], []
    for s in range(0, len(y), chunk):
        sl = slice(s, s + chunk)
        yb, ab = y[sl], a[sl]
        if cue == "color":
            centre = torch.full((len(yb), 2), size / 2.0)
            background = (BACKGROUNDS[ab] + params["tint"][sl]).clamp(0, 1)
        else:
            quadrant = torch.where(ab[:, None] == 0, torch.tensor(0.25), torch.tensor(0.75))
            centre = quadrant.expand(-1, 2) * size
            background = torch.zeros(len(yb), 3)
        centre = centre + params["jitter"][sl]
        cover = shape_coverage(yb, centre[:, 0], centre[:, 1], params["radius"][sl], params["angle"][sl], size)
        x = background[:, :, None, None] * (1 - cover[:, None]) + SHAPE_COLOUR * cover[:, None]
        xs.append(x)
        masks.append(cover >= 0.5)
    return torch.cat(xs), torch.cat(masks)


def moon_star(
    rho: float = 0.95,
    seed: int = 0,
    image_size: int = 32,
    cue: str = "color",
    n_train: int = 2000,
    n_val: int = 1000,
    n_test: int = 1000,
) -> SpuriousDataset:
    """Build moon-star.

    Args:
        rho: fraction of bias-aligned training samples (default 0.95).
        seed: seed of every draw.
        image_size: side ``S`` (default 32, at least 8).
        cue: ``"color"`` (background tint) or ``"position"`` (quadrant).
        n_train, n_val, n_test: split sizes (validation and test are unbiased).
    """
    rho = check_rho(rho, "moon-star")
    if cue not in CUES:
        raise ProbeInputError(f"moon-star: cue must be one of {', '.join(CUES)}, got {cue!r}")
    image_size = check_image_size(image_size, "moon-star", minimum=8)
    g = torch.Generator().manual_seed(seed)
    splits: dict[str, Split] = {}
    params: dict[str, dict[str, torch.Tensor]] = {}
    offset = 0
    for name, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        y = torch.randint(0, 2, (n,), generator=g)
        a = spurious_attributes(y, rho, 2, g) if name == "train" else unbiased_attributes(n, 2, g)
        params[name] = draw_params(n, image_size, cue, g)
        x, core = render(y, a, params[name], image_size, cue)
        splits[name] = Split(name=name, x=x, y=y, a=a, is_bc=label_space_bc(y, a), index=torch.arange(n) + offset,
                             num_attrs=2, core_mask=core, spurious_mask=~core)
        offset += 1_000_000

    def pick(split: str, positions: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: v[positions.cpu()] for k, v in params[split].items()}

    def render_spurious(split: str, positions: torch.Tensor, new_a: torch.Tensor) -> torch.Tensor:
        y = splits[split].y[positions.to(splits[split].y.device)].cpu()
        return render(y, new_a.cpu(), pick(split, positions), image_size, cue)[0]

    def render_core(split: str, positions: torch.Tensor, new_y: torch.Tensor) -> torch.Tensor:
        a = splits[split].a[positions.to(splits[split].a.device)].cpu()
        return render(new_y.cpu(), a, pick(split, positions), image_size, cue)[0]

    return SpuriousDataset(
        name="moon-star",
        num_classes=2,
        num_attrs=2,
        input_shape=(3, image_size, image_size),
        splits=splits,
        bc_rule=BC_RULE_LABEL_SPACE,
        source=f"generated: moon vs star, {cue} cue, {image_size}x{image_size}",
        options=dict(rho=rho, seed=seed, image_size=image_size, cue=cue, n_train=n_train, n_val=n_val,
                     n_test=n_test),
        mask_note="core: the shape's pixels; spurious: every other pixel (background tint or the empty quadrants)",
        render_spurious=render_spurious,
        render_core=render_core,
    )
