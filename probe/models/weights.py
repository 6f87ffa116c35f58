"""Pretrained weights: read a state dict from ``.safetensors`` or ``.pth``/``.pt`` (never unpickling code), map
torchvision's (and timm's) ResNet key names to probe's, and load it strictly.

torchvision and timm name a ResNet's layers alike; probe's :class:`~probe.models.ResNet` differs only in these
prefixes (``docs/models.md`` has the table):

============================  ==============================
torchvision / timm            probe
============================  ==============================
``conv1.*``                   ``stem.0.*``
``bn1.*``                     ``stem.1.*``
``layer{i}.{j}.*``            ``stages.{i-1}.{j}.*``
``layer{i}.{j}.downsample.*`` ``stages.{i-1}.{j}.shortcut.*``
``fc.*``                      ``head.*``
============================  ==============================
"""

from __future__ import annotations

import hashlib
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from probe.errors import ProbeInputError

#: File name endings :func:`read_state_dict` reads.
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt")

_LAYER = re.compile(r"^layer([1-9][0-9]*)\.")


def suffixes_text() -> str:
    """``".safetensors, .pth or .pt"``."""
    return ", ".join(WEIGHT_SUFFIXES[:-1]) + " or " + WEIGHT_SUFFIXES[-1]


def check_weights_file(path: str | Path) -> Path:
    """``path`` as a :class:`Path` when it is an existing file with a known ending, else a one-line
    :class:`ProbeInputError` (cheap: nothing is read)."""
    path = Path(path)
    if path.suffix.lower() not in WEIGHT_SUFFIXES:
        raise ProbeInputError(f"{path}: weights must be a {suffixes_text()} file")
    if not path.is_file():
        raise ProbeInputError(f"{path}: no such weights file")
    return path


def file_sha256(path: str | Path) -> str:
    """The hex sha256 of the file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict (name -> tensor, on the CPU) in a ``.safetensors`` or ``.pth``/``.pt`` file.

    A ``.pth`` is read with ``torch.load(weights_only=True)``, which rebuilds tensors and plain containers only: a
    file that needs any other object (a pickle that would run code) is refused with a :class:`ProbeInputError` and
    nothing in it runs. A checkpoint dict that wraps the weights under ``"state_dict"`` or ``"model"`` is unwrapped,
    and a ``"module."`` prefix on every key (``DataParallel``) is dropped.
    """
    path = check_weights_file(path)
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            data: Any = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as err:
            raise ProbeInputError(f"{path}: not a readable safetensors file ({_one_line(err)})") from None
    else:
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            raise ProbeInputError(f"{path}: refused: the file holds objects other than tensors, which "
                                  f"torch.load(weights_only=True) does not load ({_one_line(err)})"[:400]) from None
        except (RuntimeError, OSError, EOFError, ValueError) as err:
            raise ProbeInputError(f"{path}: not a readable torch file ({_one_line(err)})"[:400]) from None
    if isinstance(data, Mapping):
        for wrapper in ("state_dict", "model"):
            if isinstance(data.get(wrapper), Mapping):
                data = data[wrapper]
                break
    if not isinstance(data, Mapping) or not data:
        raise ProbeInputError(f"{path}: holds no state dict (a non-empty mapping of names to tensors)")
    bad = next((k for k, v in data.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise ProbeInputError(f"{path}: entry {bad!r} is not a named tensor; not a state dict")
    if all(k.startswith("module.") for k in data):
        data = {k[len("module."):]: v for k, v in data.items()}
    return dict(data)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:200]


def torchvision_to_probe_key(key: str) -> str:
    """A ResNet key in torchvision's (or timm's) layout as probe's :class:`~probe.models.ResNet` names it
    (``layer2.0.downsample.1.weight`` -> ``stages.1.0.shortcut.1.weight``); other keys are returned unchanged."""
    if key.startswith("conv1."):
        return "stem.0." + key[len("conv1."):]
    if key.startswith("bn1."):
        return "stem.1." + key[len("bn1."):]
    if key.startswith("fc."):
        return "head." + key[len("fc."):]
    match = _LAYER.match(key)
    if match:
        rest = key[match.end():].replace(".downsample.", ".shortcut.")
        return f"stages.{int(match.group(1)) - 1}.{rest}"
    return key


def probe_to_torchvision_key(key: str) -> str:
    """The inverse of :func:`torchvision_to_probe_key`."""
    for probe_prefix, tv_prefix in (("stem.0.", "conv1."), ("stem.1.", "bn1."), ("head.", "fc.")):
        if key.startswith(probe_prefix):
            return tv_prefix + key[len(probe_prefix):]
    match = re.match(r"^stages\.([0-9]+)\.", key)
    if match:
        rest = key[match.end():].replace(".shortcut.", ".downsample.")
        return f"layer{int(match.group(1)) + 1}.{rest}"
    return key


def to_probe_layout(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state_dict`` with torchvision's / timm's ResNet names mapped to probe's; a state dict in probe's layout
    already (a ``stem.`` key, as probe's epoch files hold) is returned as it is."""
    if any(k.startswith(("stem.", "stages.")) for k in state_dict):
        return dict(state_dict)
    return {torchvision_to_probe_key(k): v for k, v in state_dict.items()}


def _is_counter(key: str) -> bool:
    return key.endswith("num_batches_tracked")


def load_pretrained(model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str = "weights") -> str:
    """Load ``state_dict`` (torchvision's, timm's or probe's key layout) into ``model`` strictly; returns
    ``"kept"`` or ``"replaced"`` for the classifier head.

    Every tensor of the model's state dict must be given with its exact shape and every given tensor must be used,
    else a one-line :class:`ProbeInputError` names the first missing or unexpected key or shape mismatch. Two
    exceptions: the head (``head.weight``, ``head.bias``) keeps its fresh initialisation ("replaced") when the given
    one has another number of classes (same number of features) or when the file has no head at all; and BatchNorm's
    ``num_batches_tracked`` counters are copied when given and not required (torchvision's files have them, timm's do
    not; they matter only to a BatchNorm without momentum). Values are cast to the model's dtypes.
    """
    given = to_probe_layout(state_dict)
    own = model.state_dict()
    head_keys = [k for k in ("head.weight", "head.bias") if k in own]
    head = "kept"
    if head_keys and not any(k in given for k in head_keys):
        head = "replaced"  # a headless (feature extractor) file
    elif head_keys and "head.weight" in given:
        w_given, w_own = given["head.weight"], own["head.weight"]
        if (w_given.dim() == 2 and w_own.dim() == 2 and w_given.shape[1] == w_own.shape[1]
                and w_given.shape[0] != w_own.shape[0]):
            bias = given.get("head.bias")
            if bias is not None and tuple(bias.shape) != (w_given.shape[0],):
                raise ProbeInputError(f"{source}: {_named('head.bias')} has shape {tuple(bias.shape)}, not "
                                      f"({w_given.shape[0]},) as its head.weight says")
            head = "replaced"
    skip = set(head_keys) if head == "replaced" else set()
    for key, value in own.items():
        if key in skip or _is_counter(key):
            continue
        if key not in given:
            raise ProbeInputError(f"{source}: missing {_named(key)} (model {type(model).__name__} needs it; "
                                  f"{len(given)} tensors given)")
        if tuple(given[key].shape) != tuple(value.shape):
            raise ProbeInputError(f"{source}: {_named(key)} has shape {tuple(given[key].shape)}, the model's is "
                                  f"{tuple(value.shape)}")
    unexpected = next((k for k in given if k not in own and k not in skip), None)
    if unexpected is not None:
        raise ProbeInputError(f"{source}: unexpected key {_named(unexpected)}; the model has no such tensor")
    counters = {k: v for k, v in given.items() if _is_counter(k) and k in own and v.numel() == own[k].numel()}
    loading = {k: v for k, v in given.items() if k in own and k not in skip and not _is_counter(k)}
    with torch.no_grad():
        for key, value in {**loading, **counters}.items():
            own[key].copy_(value.reshape(own[key].shape))
    return head


def _named(key: str) -> str:
    """``'stem.0.weight'`` and, when torchvision names it otherwise, ``(conv1.weight in torchvision's layout)``."""
    tv = probe_to_torchvision_key(key)
    return repr(key) if tv == key else f"{key!r} ({tv!r} in torchvision's layout)"


def freeze_features(model: nn.Module) -> int:
    """Turn off gradients of every parameter except the classifier head's (``model.head``); returns the number of
    parameters left trainable."""
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Module):
        raise ProbeInputError(f"freeze features needs a model with a 'head' module; {type(model).__name__} has none")
    head_params = {id(p) for p in head.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in head_params)
    return sum(p.numel() for p in head.parameters())


def set_train_mode(model: nn.Module, freeze: str | None) -> None:
    """``model.train()``; with ``freeze="features"`` only the head is in training mode, so that the frozen
    features' BatchNorm layers keep their running statistics (the features stay those of the weights)."""
    if freeze == "features":
        model.eval()
        model.head.train()
    else:
        model.train()


def check_pretrained_model(name: str) -> None:
    """A one-line :class:`ProbeInputError` unless model ``name`` declares the ``input_norm`` option (the built-in
    ResNets), which pretrained weights need to standardise the inputs as they were trained."""
    from probe.models import declared_options, model_names

    declared = declared_options(name)
    if declared is None or not any(o.name == "input_norm" for o in declared):
        takes = [n for n in model_names() if any(o.name == "input_norm" for o in declared_options(n) or ())]
        raise ProbeInputError(f"model {name!r} takes no pretrained weights; --weights needs one of: {', '.join(takes)}")


def pretrained_options(model_options: Mapping[str, Any], weights: str | None,
                       dataset_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The options a model is built with: ``model_options`` and, when ``weights`` are given, ``input_norm`` set to
    ``"imagenet"`` unless given, so that the inputs reach the weights standardised as in ImageNet training.

    A dataset that standardises its images with ImageNet's statistics already (its ``normalize`` option is true:
    ``waterbirds``, ``celeba`` and ``imagenet`` by default) gets ``input_norm="none"`` instead, so that inputs are
    standardised once. ``dataset_options`` are the built dataset's options (``run.json``'s ``dataset.options``).
    """
    options = dict(model_options)
    if weights is not None and "input_norm" not in options:
        normalised = isinstance(dataset_options, Mapping) and dataset_options.get("normalize") is True
        options["input_norm"] = "none" if normalised else "imagenet"
    return options
