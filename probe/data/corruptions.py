"""Image corruptions (numpy / torch / Pillow) with a severity from 1 to 5, in the spirit of CIFAR-10-C.

Every function maps float images ``(n, 3, H, W)`` in [0, 1] to corrupted images in [0, 1]; random corruptions draw
from the ``generator`` they are given, so a dataset is deterministic given its seed.
"""

from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F

from probe.errors import ProbeInputError

#: Corruption names; in ``corrupted-cifar10`` the attribute ``a`` indexes this tuple.
CORRUPTIONS = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "speckle_noise",
    "gaussian_blur",
    "pixelate",
    "contrast",
    "brightness",
    "saturate",
    "jpeg_compression",
)

_PARAMS = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),  # std of additive noise
    "shot_noise": (500.0, 250.0, 100.0, 75.0, 50.0),  # photons per unit intensity
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),  # fraction of salt-and-pepper pixels
    "speckle_noise": (0.06, 0.10, 0.12, 0.16, 0.20),  # std of multiplicative noise
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),  # blur sigma in pixels at side 32 (scaled with the side)
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),  # down-sampling factor
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),  # contrast factor around the image mean
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),  # added intensity
    "saturate": (1.5, 2.0, 3.0, 4.0, 5.0),  # saturation factor around the grey value
    "jpeg_compression": (25, 18, 15, 10, 7),  # Pillow JPEG quality
}


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, int(np.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with reflect padding."""
    k = _gaussian_kernel(sigma).to(x)
    c = x.shape[1]
    r = len(k) // 2
    out = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(out, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """Round trip through Pillow's JPEG encoder at ``quality``."""
    from PIL import Image

    out = torch.empty_like(x)
    arr = (x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    for i in range(len(arr)):
        buf = io.BytesIO()
        Image.fromarray(arr[i]).save(buf, format="JPEG", quality=int(quality))
        buf.seek(0)
        with Image.open(buf) as im:
            out[i] = torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1).float() / 255.0
    return out


def corrupt(x: torch.Tensor, kind: str, severity: int = 3, generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply corruption ``kind`` (one of :data:`CORRUPTIONS`) at ``severity`` 1..5 to ``(n, 3, H, W)`` images."""
    if kind not in _PARAMS:
        raise ProbeInputError(f"unknown corruption {kind!r}; known: {', '.join(CORRUPTIONS)}")
    if severity not in (1, 2, 3, 4, 5):
        raise ProbeInputError(f"corruption severity must be 1..5, got {severity}")
    p = _PARAMS[kind][severity - 1]
    if len(x) == 0:
        return x.clone()
    if kind == "gaussian_noise":
        out = x + torch.randn(x.shape, generator=generator) * p
    elif kind == "shot_noise":
        out = torch.poisson(x * p, generator=generator) / p
    elif kind == "impulse_noise":
        u = torch.rand(x.shape, generator=generator)
        out = torch.where(u < p / 2, torch.zeros_like(x), torch.where(u > 1 - p / 2, torch.ones_like(x), x))
    elif kind == "speckle_noise":
        out = x + x * torch.randn(x.shape, generator=generator) * p
    elif kind == "gaussian_blur":
        out = gaussian_blur(x, p * x.shape[-1] / 32)
    elif kind == "pixelate":
        h, w = x.shape[-2:]
        small = F.interpolate(x, size=(max(1, int(h * p)), max(1, int(w * p))), mode="area")
        out = F.interpolate(small, size=(h, w), mode="nearest")
    elif kind == "contrast":
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        out = (x - mean) * p + mean
    elif kind == "brightness":
        out = x + p
    elif kind == "saturate":
        grey = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
        out = grey + (x - grey) * p
    else:
        out = jpeg(x, int(p))
    return out.clamp(0, 1)


def corrupt_by_attribute(x: torch.Tensor, a: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Corrupt sample ``i`` with ``CORRUPTIONS[a[i]]``."""
    out = torch.empty_like(x)
    for k in a.unique().tolist():
        sel = torch.nonzero(a == k).flatten()
        out[sel] = corrupt(x[sel], CORRUPTIONS[k], severity, generator)
    return out
