"""Image files decoded with Pillow and transformed with torch ops, as lazy map-style datasets.

The evaluation transform of a natural image is: resize so the shorter side is ``resize`` (bilinear, antialiased),
centre-crop ``crop x crop``, scale to [0, 1] and, optionally, normalise per channel with ``(x - mean) / std``.
A mask goes through exactly the same geometry (bilinear on the soft mask, then ``>= 0.5``), so it lines up with the
pixels of the transformed image. The optional training augmentation is a random resized crop (scale 0.7-1 of the
resized image's area) and a horizontal flip with probability 1/2.

``geometry="reference"`` gives group_DRO's Waterbirds transforms (``cub_dataset.py``, which DFR adapts), with torch
only: evaluation resizes both sides to ``resize x resize`` (the aspect ratio is not kept; 256 for a 224 crop) then
centre-crops ``crop``; training draws torchvision's ``RandomResizedCrop(crop, scale=(0.7, 1), ratio=(3/4, 4/3))``
box on the original image (:func:`random_resized_crop_box`), resizes it to ``crop x crop`` and flips it
horizontally with probability 1/2. Normalisation is unchanged. Resizing is bilinear with antialiasing
(``F.interpolate``), close to but not bit-identical with Pillow's.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from probe.data.base import MAX_IMAGE_SIZE, check_image_size
from probe.errors import DataFormatError, ProbeError, ProbeInputError, SizeLimitError

#: ImageNet channel statistics, the usual normalisation for natural images.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Largest image a file may declare (width x height), checked from its header before the pixels are decoded:
#: 2^26 pixels (e.g. 8192 x 8192), far above any photo of the supported releases.
MAX_IMAGE_PIXELS = 2**26

#: Transform geometries: probe's (shorter side, square crops) and group_DRO's Waterbirds reference.
GEOMETRIES = ("probe", "reference")

#: RandomResizedCrop's bounds in the reference training transform: area fraction and aspect ratio (width / height).
REFERENCE_SCALE = (0.7, 1.0)
REFERENCE_RATIO = (3 / 4, 4 / 3)

#: File suffixes treated as images in class folders.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".tif", ".tiff")


def default_resize(crop: int) -> int:
    """The resize side that goes with a centre crop, in the 256 -> 224 proportion."""
    return int(round(crop * 256 / 224))


def crop_geometry(name: str, image_size: int, resize: int | None,
                  resize_default: Callable[[int], int] = default_resize) -> tuple[int, int]:
    """``(image_size, resize)`` validated (:func:`~probe.data.base.check_image_size`): ``resize`` defaults to
    ``resize_default(image_size)`` and must be at least the crop side."""
    image_size = check_image_size(image_size, name)
    if resize is not None:
        resize = check_image_size(resize, name, option="resize")
    else:
        resize = min(MAX_IMAGE_SIZE, resize_default(image_size))
    if resize < image_size:
        raise ProbeInputError(f"{name}: need image_size <= resize, got {image_size} and {resize}")
    return image_size, resize


def load_image(path: str | Path, mode: str = "RGB") -> torch.Tensor:
    """Decode an image file to a ``(C, H, W)`` uint8 tensor (``mode`` "RGB" gives C = 3, "L" gives C = 1).

    A file that cannot be decoded (truncated, not an image) is a :class:`DataFormatError` naming it; one whose header
    declares more than :data:`MAX_IMAGE_PIXELS` pixels a :class:`SizeLimitError`, raised before decoding.
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > MAX_IMAGE_PIXELS:
                raise SizeLimitError(f"{path}: image header declares {w}x{h} pixels, over the limit of "
                                     f"{MAX_IMAGE_PIXELS}; refused before decoding")
            arr = np.asarray(im.convert(mode), dtype=np.uint8)
    except SizeLimitError:
        raise
    except FileNotFoundError:
        raise DataFormatError(f"{path}: image file is missing") from None
    except Exception as err:  # Pillow raises several types for broken files
        raise DataFormatError(f"{path}: cannot decode image ({type(err).__name__}: {err})") from None
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def image_size_of(path: str | Path) -> tuple[int, int]:
    """``(H, W)`` of an image file, read from its header only."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
    except FileNotFoundError:
        raise DataFormatError(f"{path}: image file is missing") from None
    except Exception as err:
        raise DataFormatError(f"{path}: cannot read image header ({type(err).__name__}: {err})") from None
    return h, w


def resize_shorter(img: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a ``(C, H, W)`` float image so that its shorter side is ``size`` (bilinear, antialiased)."""
    h, w = img.shape[-2:]
    if min(h, w) == size:
        return img
    scale = size / min(h, w)
    hw = (max(size, int(round(h * scale))), max(size, int(round(w * scale))))
    if hw[0] * hw[1] > MAX_IMAGE_PIXELS:
        raise SizeLimitError(f"resizing a {h}x{w} image to shorter side {size} would give {hw[0]}x{hw[1]} pixels, "
                             f"over the limit of {MAX_IMAGE_PIXELS}")
    return F.interpolate(img[None], size=hw, mode="bilinear", align_corners=False, antialias=True)[0]


def resize_to(img: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Resize a ``(C, H, W)`` float image to exactly ``hw`` (bilinear, antialiased; the aspect ratio is not kept)."""
    if tuple(img.shape[-2:]) == tuple(hw):
        return img
    if hw[0] * hw[1] > MAX_IMAGE_PIXELS:
        raise SizeLimitError(f"resizing to {hw[0]}x{hw[1]} pixels is over the limit of {MAX_IMAGE_PIXELS}")
    return F.interpolate(img[None], size=tuple(hw), mode="bilinear", align_corners=False, antialias=True)[0]


def check_geometry(geometry: str, name: str = "transform") -> str:
    if geometry not in GEOMETRIES:
        raise ProbeInputError(f"unknown {name} {geometry!r}; known: {', '.join(GEOMETRIES)}")
    return geometry


def random_resized_crop_box(height: int, width: int, scale: tuple[float, float] = REFERENCE_SCALE,
                            ratio: tuple[float, float] = REFERENCE_RATIO,
                            generator: torch.Generator | None = None) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of torchvision's ``RandomResizedCrop.get_params`` on a ``height x width`` image.

    Up to 10 attempts draw an area ``s * height * width`` with ``s ~ U(scale)`` and an aspect ratio
    ``r = exp(U(log ratio))``; ``w = round(sqrt(area r))``, ``h = round(sqrt(area / r))``; the first box that fits
    gets a uniform position. Otherwise the central crop of the whole image with its ratio clamped to ``ratio``.
    Draws come from ``generator`` (default torch's global generator), in torchvision's order.
    """
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio))
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1], generator=generator).item()
        log_r = torch.empty(1).uniform_(float(log_ratio[0]), float(log_ratio[1]), generator=generator)
        aspect = torch.exp(log_r).item()
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, size=(1,), generator=generator).item())
            left = int(torch.randint(0, width - w + 1, size=(1,), generator=generator).item())
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def center_crop(img: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size x size`` window of a ``(..., H, W)`` tensor (top-left offsets rounded as torchvision)."""
    h, w = img.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"cannot centre-crop {size}x{size} from {h}x{w}")
    top = int(round((h - size) / 2.0))
    left = int(round((w - size) / 2.0))
    return img[..., top : top + size, left : left + size]


def normalize(img: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(img - mean[c]) / std[c]`` per channel."""
    m = torch.as_tensor(mean, dtype=img.dtype).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=img.dtype).view(-1, 1, 1)
    return (img - m) / s


def eval_geometry(x: torch.Tensor, resize: int, crop: int, geometry: str = "probe") -> torch.Tensor:
    """The evaluation geometry of a float ``(C, H, W)`` image: ``probe`` resizes the shorter side to ``resize``,
    ``reference`` both sides to ``resize``; then the central ``crop x crop`` window."""
    resized = resize_to(x, (resize, resize)) if check_geometry(geometry) == "reference" else resize_shorter(x, resize)
    return center_crop(resized, crop)


def eval_transform(img: torch.Tensor, resize: int, crop: int, norm: bool, geometry: str = "probe") -> torch.Tensor:
    """uint8 ``(C, H, W)`` -> float ``(C, crop, crop)``: :func:`eval_geometry`, [0, 1], normalise."""
    x = eval_geometry(img.float() / 255.0, resize, crop, geometry).clamp_(0, 1)
    return normalize(x, IMAGENET_MEAN, IMAGENET_STD) if norm else x.contiguous()


def reference_train_geometry(x: torch.Tensor, crop: int, generator: torch.Generator | None = None,
                             mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """group_DRO's training geometry on a float ``(C, H, W)`` image: the :func:`random_resized_crop_box` box,
    resized to ``crop x crop``, flipped horizontally with probability 1/2 (one draw after the box). A float
    ``mask`` ``(1, H, W)`` of the same size gets the same box, resize and flip. Returns ``(image, mask or None)``."""
    h, w = x.shape[-2:]
    top, left, bh, bw = random_resized_crop_box(h, w, generator=generator)
    flip = bool(torch.rand(1, generator=generator) < 0.5)
    out = []
    for t in (x, mask):
        if t is None:
            out.append(None)
            continue
        t = resize_to(t[:, top : top + bh, left : left + bw], (crop, crop))
        out.append(t.flip(-1) if flip else t)
    return out[0], out[1]


def train_transform(img: torch.Tensor, resize: int, crop: int, norm: bool, generator: torch.Generator | None = None,
                    scale: tuple[float, float] = (0.7, 1.0), geometry: str = "probe") -> torch.Tensor:
    """Training augmentation: ``probe``: resize, random square crop covering ``scale`` of the area, resize to
    ``crop``, random flip; ``reference``: :func:`reference_train_geometry` (``resize`` and ``scale`` unused)."""
    if check_geometry(geometry) == "reference":
        x = reference_train_geometry(img.float() / 255.0, crop, generator)[0].clamp_(0, 1)
        return normalize(x, IMAGENET_MEAN, IMAGENET_STD) if norm else x.contiguous()
    x = resize_shorter(img.float() / 255.0, resize)
    h, w = x.shape[-2:]
    area = float(torch.empty(1).uniform_(*scale, generator=generator)) * min(h, w) ** 2
    side = min(h, w, max(1, int(round(math.sqrt(area)))))
    top = int(torch.randint(0, h - side + 1, (1,), generator=generator))
    left = int(torch.randint(0, w - side + 1, (1,), generator=generator))
    x = x[:, top : top + side, left : left + side]
    x = F.interpolate(x[None], size=(crop, crop), mode="bilinear", align_corners=False, antialias=True)[0].clamp_(0, 1)
    if bool(torch.rand(1, generator=generator) < 0.5):
        x = x.flip(-1)
    return normalize(x, IMAGENET_MEAN, IMAGENET_STD) if norm else x.contiguous()


def mask_transform(mask: torch.Tensor, resize: int, crop: int, size_hw: tuple[int, int] | None = None,
                   threshold: float = 0.5, geometry: str = "probe") -> torch.Tensor:
    """uint8 ``(H, W)`` or ``(1, H, W)`` soft mask -> bool ``(crop, crop)`` under the image's evaluation geometry.

    ``size_hw`` is the size of the image the mask belongs to; a mask of another size is first resized to it.
    """
    m = soft_mask(mask, size_hw)
    return eval_geometry(m, resize, crop, geometry)[0] >= threshold


def soft_mask(mask: torch.Tensor, size_hw: tuple[int, int] | None = None) -> torch.Tensor:
    """uint8 ``(H, W)`` or ``(1, H, W)`` mask -> float ``(1, H, W)`` in [0, 1], resized to ``size_hw`` if given."""
    m = mask.float().reshape(1, *mask.shape[-2:]) / 255.0
    if size_hw is not None and tuple(m.shape[-2:]) != tuple(size_hw):
        m = F.interpolate(m[None], size=tuple(size_hw), mode="bilinear", align_corners=False)[0]
    return m


def reference_train_pair(img: torch.Tensor, mask: torch.Tensor, crop: int, norm: bool,
                         generator: torch.Generator | None = None,
                         threshold: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 image ``(C, H, W)`` and its uint8 mask -> the reference training image ``(C, crop, crop)`` and bool mask
    ``(crop, crop)`` under one draw (same box, same flip), so the mask stays aligned with the augmented pixels."""
    m = soft_mask(mask, tuple(img.shape[-2:]))
    x, m = reference_train_geometry(img.float() / 255.0, crop, generator, m)
    x = x.clamp_(0, 1)
    x = normalize(x, IMAGENET_MEAN, IMAGENET_STD) if norm else x.contiguous()
    return x, m[0] >= threshold


class ImageFiles(torch.utils.data.Dataset):
    """Item ``i``: image file ``paths[i]`` decoded and transformed to a float ``(3, crop, crop)`` tensor.

    With ``augment`` the training augmentation is applied (a fresh random draw on every read).
    """

    def __init__(self, paths: Sequence[str | Path], crop: int, resize: int | None = None, norm: bool = True,
                 augment: bool = False, mode: str = "RGB", geometry: str = "probe"):
        self.paths = [str(p) for p in paths]
        self.geometry = check_geometry(geometry)
        self.crop = int(crop)
        self.resize = int(resize) if resize is not None else default_resize(self.crop)
        self.norm = bool(norm)
        self.augment = bool(augment)
        self.mode = mode

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        with decoding(self.paths[i]):
            img = load_image(self.paths[i], self.mode)
            if self.augment:
                return train_transform(img, self.resize, self.crop, self.norm, geometry=self.geometry)
            return eval_transform(img, self.resize, self.crop, self.norm, geometry=self.geometry)

    def one_per_file_type(self) -> list[int]:
        """The first position of each file type (suffix): what :meth:`SpuriousDataset.preflight` decodes."""
        return first_per_suffix(self.paths)


class MaskFiles(torch.utils.data.Dataset):
    """Item ``i``: bool ``(crop, crop)`` mask from ``mask_paths[i]``, aligned with ``ImageFiles`` item ``i``.

    ``invert`` gives the complement (e.g. the background of a bird segmentation). Masks follow the evaluation
    ``geometry`` (un-augmented images).
    """

    def __init__(self, mask_paths: Sequence[str | Path], image_paths: Sequence[str | Path], crop: int,
                 resize: int | None = None, invert: bool = False, geometry: str = "probe"):
        self.geometry = check_geometry(geometry)
        self.mask_paths = [str(p) for p in mask_paths]
        self.image_paths = [str(p) for p in image_paths]
        self.crop = int(crop)
        self.resize = int(resize) if resize is not None else default_resize(self.crop)
        self.invert = bool(invert)

    def __len__(self) -> int:
        return len(self.mask_paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        with decoding(self.mask_paths[i]):
            mask = load_image(self.mask_paths[i], "L")
            m = mask_transform(mask, self.resize, self.crop, image_size_of(self.image_paths[i]),
                               geometry=self.geometry)
            return ~m if self.invert else m

    def one_per_file_type(self) -> list[int]:
        """The first position of each mask file type (suffix)."""
        return first_per_suffix(self.mask_paths)


def first_per_suffix(paths: Sequence[str]) -> list[int]:
    """Position of the first path of each (lower-cased) suffix, in order."""
    first: dict[str, int] = {}
    for k, p in enumerate(paths):
        first.setdefault(os.path.splitext(p)[1].lower(), k)
    return list(first.values())


@contextmanager
def decoding(path: str):
    """Errors while decoding and transforming ``path`` become one-line typed errors naming it: probe's own errors
    pass unchanged (they name the file already, or gain its name), anything else is a :class:`DataFormatError`."""
    try:
        yield
    except ProbeError as err:
        if path in str(err):
            raise
        raise type(err)(f"{path}: {err}") from None
    except Exception as err:
        raise DataFormatError(f"{path}: cannot decode and transform image ({type(err).__name__}: {err})") from None


def list_files(folder: Path) -> set[str]:
    """Names of the plain files in ``folder`` (empty if it does not exist), read with one directory scan."""
    try:
        with os.scandir(folder) as it:
            return {e.name for e in it if e.is_file()}
    except (FileNotFoundError, NotADirectoryError):
        return set()


def check_files_exist(paths: Sequence[Path], source: Path, rows: Sequence[object] | None = None,
                      what: str = "image file") -> None:
    """Raise :class:`DataFormatError` naming ``source`` and the line (``rows[k]``) of the first missing path.

    Directories are scanned once each, so this stays fast for hundreds of thousands of files.
    """
    cache: dict[Path, set[str]] = {}
    for k, p in enumerate(paths):
        parent = p.parent
        if parent not in cache:
            cache[parent] = list_files(parent)
        if p.name not in cache[parent]:
            row = rows[k] if rows is not None else k
            raise DataFormatError(f"{source}, line {row}: {what} {str(p)!r} does not exist")
