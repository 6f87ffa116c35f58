"""The one device picker of probe: ``train``, ``analyze`` and ``attribute`` resolve ``--device`` here."""

from __future__ import annotations

import torch

from probe.errors import ProbeInputError


def resolve_device(name: str) -> torch.device:
    """The :class:`torch.device` named ``name``: ``auto`` picks CUDA, then MPS, then the CPU; any other name (``cpu``,
    ``cuda``, ``cuda:N``, ``mps``) must be a device torch can use here, else :class:`~probe.errors.ProbeInputError`.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ProbeInputError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ProbeInputError(f"device {name!r} asked for, but CUDA is not available here")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ProbeInputError(f"device {name!r} asked for, but MPS is not available here")
    return device
