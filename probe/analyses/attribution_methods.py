"""Input attributions by method name, through Captum, batched with bounded memory.

:func:`attribute` is the one entry point: ``attribute(model, inputs, target, method="ig") -> (n, *input_shape)``.
Every method is Captum's own implementation called with the arguments listed here; the wrapper only chooses the
defaults, splits the samples into chunks of at most ``max_batch_size`` and moves the result to the CPU.

Methods (``METHODS``), for a model ``f`` with logit ``f_t`` of the target class ``t``, input ``x`` and baseline
``b`` (the all-zero input unless ``baselines`` is given):

- ``ig``: Integrated Gradients, ``(x - b) * integral_0^1 d f_t(b + alpha (x - b)) / dx d alpha``, ``n_steps``
  Gauss-Legendre points (Captum's default rule), ``captum.attr.IntegratedGradients``.
- ``saliency``: ``|d f_t / dx|`` (Captum's ``Saliency`` with ``abs=True``).
- ``input_x_gradient``: ``x * d f_t / dx`` (``captum.attr.InputXGradient``).
- ``deeplift``: DeepLIFT (rescale rule) against ``b`` (``captum.attr.DeepLift``); the model must use ``nn.ReLU``
  modules, each used once per forward pass.
- ``gradient_shap``: expected gradients, ``E_{b ~ B, alpha ~ U(0, 1)} (x - b) * d f_t(b + alpha (x - b)) / dx``
  over ``shap_samples`` draws per sample (default 16), baselines ``B`` drawn from ``baselines`` (default: the single
  all-zero input), no input noise (``captum.attr.GradientShap``, ``stdevs=0``). Stochastic: see ``seed``.
- ``gradcam``: Grad-CAM on the output ``A`` of a layer (:func:`gradcam_layer`: ``layer`` by dotted module name, by
  default the last residual stage of probe's ResNets, else the last module whose output is a 4-D map with more than
  one pixel), ``ReLU(sum_k mean_ij(d f_t / dA_kij) A_k)`` (``captum.attr.LayerGradCam`` with
  ``relu_attributions=True``), upsampled bilinearly to the input's height and width
  (``LayerAttribution.interpolate``) and repeated over the input channels. Models without a conv layer raise
  :class:`~probe.errors.ProbeInputError` (see :func:`method_applies`).

SmoothGrad: ``smoothgrad=sigma`` wraps the method in ``captum.attr.NoiseTunnel`` (``nt_type="smoothgrad"``,
``nt_samples`` noisy copies, default 16) with noise standard deviation ``sigma * (max(x) - min(x))`` taken over all
``inputs`` of the call (or over ``input_range`` when given), i.e. relative to the input range.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from probe.errors import ProbeInputError

#: Method names, as the CLI and metric ids spell them (``core_attr_share@ig``).
METHODS: tuple[str, ...] = ("ig", "saliency", "input_x_gradient", "deeplift", "gradient_shap", "gradcam")

def last_conv_layer(model: nn.Module) -> nn.Conv2d | None:
    """The last ``nn.Conv2d`` in ``model.modules()`` order, or None (None: ``gradcam`` does not apply)."""
    last = None
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            last = module
    return last


def gradcam_layer(model: nn.Module, name: str | None = None, example: torch.Tensor | None = None) -> nn.Module:
    """The module whose output Grad-CAM weighs: ``model.get_submodule(name)`` for a dotted ``name``
    (``"stages.3"``, ``"stages.3.2"``), else the default layer:

    - a model with ``stages`` (probe's ResNets): its last stage, ``stages[-1]``, i.e. the output of the last
      residual block after the residual add and ReLU;
    - any other model: the last module, in the order forward passes finish, whose output is a 4-D map with more
      than one pixel, found with forward hooks on ``example`` (for probe's small CNN: the ReLU after its last conv;
      modules returning the same tensor as their last child, such as an ``nn.Sequential``, count as that tensor's
      outermost module).

    With ``example`` (an input batch), the layer's output must be a 4-D tensor ``(n, C, h, w)``. An unknown name, a
    layer that does not run on ``example`` or whose output is not 4-D, or a default without ``example`` on a
    non-ResNet model raise a one-line :class:`~probe.errors.ProbeInputError`.
    """
    if name:
        try:
            layer = model.get_submodule(name)
        except AttributeError:
            raise ProbeInputError(f"gradcam layer {name!r} is not a module of the model; "
                                  f"top-level modules: {', '.join(n for n, _ in model.named_children())}") from None
    else:
        stages = getattr(model, "stages", None)
        if isinstance(stages, nn.Sequential) and len(stages):
            layer = stages[-1]
        elif example is None:
            raise ProbeInputError("gradcam: the default layer of a model without stages needs an example input")
        else:
            layer = _last_map_module(model, example)
            if layer is None:
                raise ProbeInputError("gradcam does not apply: no module of the model outputs a 4-D map")
    if example is not None:
        shape = _output_shape(model, layer, example)
        label = repr(name) if name else "(default)"
        if shape is None:
            raise ProbeInputError(f"gradcam layer {label} does not run in the model's forward pass")
        if len(shape) != 4:
            raise ProbeInputError(f"gradcam layer {label} outputs shape {shape}, not a 4-D map (n, C, h, w)")
    return layer


def _forward_outputs(model: nn.Module, example: torch.Tensor, modules) -> list:
    """``(module, output)`` in the order their forward passes finish, over one no-grad pass on ``example[:1]``."""
    seen: list = []
    handles = [m.register_forward_hook(lambda mod, _inp, out: seen.append((mod, out))) for m in modules]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example[:1])
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return seen


def _output_shape(model: nn.Module, layer: nn.Module, example: torch.Tensor) -> tuple[int, ...] | None:
    outs = _forward_outputs(model, example, [layer])
    if not outs:
        return None
    out = outs[-1][1]
    return tuple(out.shape) if isinstance(out, torch.Tensor) else ()


def _last_map_module(model: nn.Module, example: torch.Tensor) -> nn.Module | None:
    last = None
    for module, out in _forward_outputs(model, example, [m for m in model.modules() if m is not model]):
        if isinstance(out, torch.Tensor) and out.dim() == 4 and out.shape[-2] * out.shape[-1] > 1:
            last = module
    return last


def method_applies(model: nn.Module, method: str) -> bool:
    """False only for ``gradcam`` on a model without a conv layer; raises on an unknown method name."""
    check_method(method)
    return method != "gradcam" or last_conv_layer(model) is not None


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ProbeInputError(f"unknown attribution method {method!r}; known: {', '.join(METHODS)}")
    return method


@contextmanager
def _inference_state(model: nn.Module) -> Iterator[None]:
    """Eval mode and frozen parameters for the duration (only input gradients are needed); restored after."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


@contextmanager
def _seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """Seed torch's and numpy's global generators inside the block and restore their states afterwards
    (Captum draws GradientShap's points with numpy and NoiseTunnel's noise with torch)."""
    if seed is None:
        yield
        return
    devices = []
    if device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    np_state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)
            yield
    finally:
        np.random.set_state(np_state)


def _target_tensor(target, n: int, device: torch.device) -> torch.Tensor | None:
    if target is None:
        return None
    t = torch.as_tensor(target, device=device).long()
    if t.dim() == 0:
        t = t.expand(n)
    if t.shape != (n,):
        raise ProbeInputError(f"target must be one class index or one per sample ({n}), got shape {tuple(t.shape)}")
    return t


def attribute(
    model: nn.Module,
    inputs: torch.Tensor,
    target: torch.Tensor | int | None = None,
    method: str = "ig",
    *,
    n_steps: int = 32,
    internal_batch_size: int | None = None,
    max_batch_size: int = 256,
    baselines: torch.Tensor | None = None,
    shap_samples: int = 16,
    smoothgrad: float | None = None,
    nt_samples: int = 16,
    input_range: tuple[float, float] | None = None,
    seed: int | None = 0,
    device: torch.device | str | None = None,
    layer: str | None = None,
) -> torch.Tensor:
    """Attributions of ``model``'s target logit to every input feature, with a Captum method chosen by name.

    Args:
        model: a classifier returning logits ``(n, K)``. It runs in eval mode with its parameters frozen for the
            duration of the call (both restored afterwards); with ``device`` set to another device, a copy runs there.
        inputs: ``(n, *input_shape)`` float tensor.
        target: class per sample ``(n,)`` or one class for all; pass the true labels (the dataset-level functions
            of :mod:`probe.analyses.attribution` do); None attributes each sample's predicted class.
        method: one of :data:`METHODS` (default ``"ig"``).
        n_steps: integration points of ``ig`` (default 32).
        internal_batch_size: samples x steps per forward pass of ``ig`` (Captum's ``internal_batch_size``); default
            the chunk size, i.e. one integration point per pass. Chunks never exceed it.
        max_batch_size: at most this many samples are attributed at once (default 256), which bounds memory.
        baselines: reference input(s) of ``ig``/``deeplift`` (one, broadcast) and the baseline set of
            ``gradient_shap``; default the all-zero input.
        shap_samples: random points per sample of ``gradient_shap`` (default 16).
        smoothgrad: SmoothGrad noise level ``sigma`` relative to the input range, or None (default) for none.
        nt_samples: noisy copies per sample under SmoothGrad (default 16).
        input_range: ``(min, max)`` used for the SmoothGrad noise scale; default the range of ``inputs``.
        seed: seed of the random draws of ``gradient_shap`` and SmoothGrad (chunk ``i`` uses ``seed + i``); the global
            generators' states are restored afterwards. None uses the global generators as they are.
        device: where to compute; default the device of the model's parameters.
        layer: dotted module name of the ``gradcam`` layer (:func:`gradcam_layer`); None or "" for the default.
            Other methods ignore it.

    Returns:
        ``(n, *input_shape)`` float32 CPU tensor (``gradcam``: the upsampled map repeated over channels).

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> attribute(model, torch.ones(3, 4), torch.tensor([0, 1, 0]), "saliency").shape
        torch.Size([3, 4])
    """
    check_method(method)
    if not isinstance(inputs, torch.Tensor) or inputs.dim() < 2:
        raise ProbeInputError("inputs must be a tensor of shape (n, *input_shape)")
    if n_steps < 1 or max_batch_size < 1 or shap_samples < 1 or nt_samples < 1:
        raise ProbeInputError("n_steps, max_batch_size, shap_samples and nt_samples must be >= 1")
    if internal_batch_size is not None and internal_batch_size < 1:
        raise ProbeInputError(f"internal_batch_size must be >= 1, got {internal_batch_size}")
    if smoothgrad is not None and smoothgrad < 0:
        raise ProbeInputError(f"smoothgrad noise level must be >= 0, got {smoothgrad}")
    params = next(iter(model.parameters()), None)
    model_device = params.device if params is not None else torch.device("cpu")
    device = model_device if device is None else torch.device(device)
    if device != model_device:
        model = copy.deepcopy(model).to(device)
    cam_layer = None
    if method == "gradcam":
        if last_conv_layer(model) is None:
            raise ProbeInputError("gradcam does not apply: the model has no nn.Conv2d layer")
        if inputs.dim() != 4:
            raise ProbeInputError(f"gradcam needs image inputs (n, C, H, W), got shape {tuple(inputs.shape)}")
        cam_layer = gradcam_layer(model, layer, inputs[:1].to(device=device, dtype=torch.float32))

    n = len(inputs)
    chunk = min(max_batch_size, internal_batch_size or max_batch_size)
    targets = _target_tensor(target, n, inputs.device)
    stdev = None
    if smoothgrad is not None:
        lo, hi = input_range if input_range is not None else (float(inputs.min()), float(inputs.max()))
        stdev = float(smoothgrad) * (hi - lo)
    if baselines is not None:
        baselines = baselines.to(device=device, dtype=torch.float32)
        if method in ("ig", "deeplift") and baselines.dim() == inputs.dim() and len(baselines) != 1:
            raise ProbeInputError("ig and deeplift take one baseline input (shape (1, *input_shape))")

    out = []
    with _inference_state(model):
        for i, start in enumerate(range(0, n, chunk)):
            xb = inputs[start : start + chunk].to(device=device, dtype=torch.float32)
            tb = None if targets is None else targets[start : start + chunk].to(device)
            if tb is None:
                with torch.no_grad():
                    tb = model(xb).argmax(dim=1)
            seed_i = None if seed is None else seed + i
            with _seeded(seed_i, device):
                attr = _attribute_chunk(
                    model, xb, tb, method, cam_layer, n_steps, internal_batch_size or len(xb), baselines,
                    shap_samples, stdev, nt_samples,
                )
            out.append(attr.detach().float().cpu())
    return torch.cat(out) if out else torch.zeros(inputs.shape, dtype=torch.float32)


def _attribute_chunk(model, xb, tb, method, layer, n_steps, internal_batch_size, baselines, shap_samples, stdev,
                     nt_samples) -> torch.Tensor:
    from captum.attr import (  # imported on first use: the CLI and data paths do not need Captum loaded
        DeepLift,
        GradientShap,
        InputXGradient,
        IntegratedGradients,
        LayerAttribution,
        LayerGradCam,
        Saliency,
    )

    zero = torch.zeros_like(xb[:1])
    base = zero if baselines is None else baselines
    if method == "ig":
        algo, kwargs = IntegratedGradients(model), dict(baselines=base, n_steps=n_steps,
                                                        internal_batch_size=internal_batch_size)
    elif method == "saliency":
        algo, kwargs = Saliency(model), dict(abs=True)
    elif method == "input_x_gradient":
        algo, kwargs = InputXGradient(model), {}
    elif method == "deeplift":
        algo, kwargs = DeepLift(model), dict(baselines=base.expand_as(xb) if base.dim() == xb.dim() else base)
    elif method == "gradient_shap":
        algo, kwargs = GradientShap(model), dict(baselines=base, n_samples=shap_samples, stdevs=0.0)
    else:  # gradcam
        algo, kwargs = LayerGradCam(model, layer), dict(relu_attributions=True)

    if method == "gradient_shap" and stdev is not None:
        # GradientShap is already a noise tunnel: SmoothGrad noise is its own ``stdevs``.
        kwargs["stdevs"] = stdev
        stdev = None
    xb = xb.detach().requires_grad_()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Setting forward, backward hooks")
        attr = _run_method(algo, xb, tb, kwargs, stdev, nt_samples)
    if method == "gradcam":
        attr = LayerAttribution.interpolate(attr, tuple(xb.shape[-2:]), interpolate_mode="bilinear")
        attr = attr.expand(-1, xb.shape[1], -1, -1)
    return attr


def _run_method(algo, xb, tb, kwargs, stdev, nt_samples) -> torch.Tensor:
    from captum.attr import NoiseTunnel

    if stdev is None:
        attr = algo.attribute(xb, target=tb, **kwargs)
    else:
        # One noisy copy of the chunk per pass keeps memory at the chunk size.
        attr = NoiseTunnel(algo).attribute(
            xb, nt_type="smoothgrad", nt_samples=nt_samples, nt_samples_batch_size=1, stdevs=stdev,
            target=tb, **kwargs,
        )
    return attr
