"""Regularisers of the training objective: weight penalties, focal loss with label smoothing, SAM and ASAM.

They change what the optimiser minimises, never what probe records: the per-sample minibatch loss kept in the epoch
files stays the plain cross-entropy ``-log p_y`` that the metrics are defined on. With every option at its default
(:attr:`Objective.plain`) the trainer takes its ordinary step and none of this code runs.

The training objective of a minibatch ``B`` is::

    J(w) = 1/|B| sum_{i in B} l_i(w) + l1 * sum_{w in W} |w| + (l2 / 2) * sum_{w in W} w^2

where ``l_i`` is the focal loss with smoothed targets (:func:`focal_loss`; cross-entropy when ``focal_gamma`` and
``label_smoothing`` are 0) and ``W`` holds the weights of every ``Linear`` and ``Conv`` layer that trains
(:func:`penalised_weights`; biases, BatchNorm and other norm parameters are not penalised). The penalties are
explicit terms of the loss, separate from ``weight_decay``, which the optimiser applies (coupled for SGD, decoupled
for AdamW). With ``sam_rho`` each step takes the data term's gradient at the perturbed weights ``w + e``
(:class:`SAM`), the penalty's at ``w``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from probe.train.config import TrainConfig

#: Layers whose ``weight`` the L1 and L2 penalties cover.
PENALISED_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
#: ASAM's ``eta``: ``T_w = |w| + eta`` keeps a zero weight perturbable (Kwon et al. 2021 use 0.01).
ASAM_ETA = 0.01
#: Added to the gradient norm that SAM divides by, so that a zero gradient gives a zero perturbation.
SAM_NORM_EPS = 1e-12


def penalised_weights(model: nn.Module) -> list[torch.Tensor]:
    """The ``weight`` tensors of ``model``'s ``Linear`` and ``Conv1d/2d/3d`` layers that train (``requires_grad``),
    each once even when shared. Biases, BatchNorm/LayerNorm parameters and frozen layers are left out."""
    seen: set[int] = set()
    weights = []
    for module in model.modules():
        w = getattr(module, "weight", None)
        if isinstance(module, PENALISED_LAYERS) and isinstance(w, torch.Tensor) and w.requires_grad \
                and id(w) not in seen:
            seen.add(id(w))
            weights.append(w)
    return weights


def weight_penalty(weights: Iterable[torch.Tensor], l1: float = 0.0, l2: float = 0.0) -> torch.Tensor:
    """``l1 * sum |w| + (l2 / 2) * sum w^2`` over every entry of ``weights``; its gradient is
    ``l1 * sign(w) + l2 * w`` (0 where ``w = 0`` for the L1 term).

    Example:
        >>> weight_penalty([torch.tensor([1.0, -2.0])], l1=0.1, l2=1.0)
        tensor(2.8000)
    """
    terms = []
    for w in weights:
        if l1:
            terms.append(l1 * w.abs().sum())
        if l2:
            terms.append((0.5 * l2) * w.square().sum())
    return torch.stack(terms).sum() if terms else torch.zeros(())


def focal_loss(logits: torch.Tensor, y: torch.Tensor, gamma: float = 0.0,
               label_smoothing: float = 0.0) -> torch.Tensor:
    """Per-sample focal loss (Lin et al. 2017) with smoothed targets, shape ``(n,)``::

        l_i = -sum_k q_ik (1 - p_ik)^gamma log p_ik,   p_i = softmax(z_i),   q_ik = (1 - s) [k = y_i] + s / K

    Without smoothing (``s = 0``) this is ``FL = -(1 - p_t)^gamma log p_t``; at ``gamma = 0`` it is the
    cross-entropy with label smoothing ``s`` (``F.cross_entropy(..., label_smoothing=s)``, which computes it then).
    ``1 - p`` is floored at the smallest normal float so that ``gamma < 1`` keeps finite gradients.

    Example:
        >>> z, y = torch.tensor([[2.0, 0.0]]), torch.tensor([0])
        >>> bool(torch.allclose(focal_loss(z, y, 0.0), F.cross_entropy(z, y, reduction="none")))
        True
    """
    if gamma == 0:
        return F.cross_entropy(logits, y, reduction="none", label_smoothing=label_smoothing)
    log_p = F.log_softmax(logits, dim=1)
    tiny = torch.finfo(log_p.dtype).tiny
    if label_smoothing == 0:
        log_pt = log_p.gather(1, y[:, None])[:, 0]
        return -(-log_pt.expm1()).clamp_min(tiny).pow(gamma) * log_pt
    k = logits.shape[1]
    q = torch.full_like(log_p, label_smoothing / k)
    q.scatter_add_(1, y[:, None], torch.full_like(log_p[:, :1], 1.0 - label_smoothing))
    return -(q * (-log_p.expm1()).clamp_min(tiny).pow(gamma) * log_p).sum(dim=1)


class Objective:
    """What the optimiser minimises besides the mean cross-entropy (see the module docstring), as the regulariser
    fields of ``cfg`` (a :class:`~probe.train.config.TrainConfig`, which documents and validates them) set it:
    ``l1``, ``l2``, ``focal_gamma``, ``label_smoothing``, ``sam_rho``."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg

    @property
    def plain(self) -> bool:
        """True when the objective is the mean cross-entropy and the step an ordinary one."""
        return self.plain_loss and not self.cfg.l1 and not self.cfg.l2 and self.cfg.sam_rho is None

    @property
    def plain_loss(self) -> bool:
        """True when the per-sample data term is the plain cross-entropy (no focal loss, no smoothing)."""
        return not self.cfg.focal_gamma and not self.cfg.label_smoothing

    def sample_losses(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The per-sample data term ``l_i`` (:func:`focal_loss`)."""
        return focal_loss(logits, y, self.cfg.focal_gamma, self.cfg.label_smoothing)

    def penalty(self, weights: Iterable[torch.Tensor]) -> torch.Tensor | None:
        """The weight penalty (:func:`weight_penalty`) of ``weights``, a model's :func:`penalised_weights` (found
        once per run: training changes their values, not which tensors they are); None without ``l1`` and ``l2``."""
        if not self.cfg.l1 and not self.cfg.l2:
            return None
        return weight_penalty(weights, self.cfg.l1, self.cfg.l2)


class SAM:
    """Sharpness-aware minimisation (Foret et al. 2021) and adaptive SAM (Kwon et al. 2021) around a base optimiser.

    One step takes two forward-backward passes: the gradient ``g`` at ``w``, then the gradient at ``w + e`` with::

        SAM:   e = rho * g / ||g||
        ASAM:  e = rho * T^2 g / ||T g||,   T = diag(|w| + eta)

    (norms over all parameters together), which the base optimiser (SGD or AdamW) applies at ``w``::

        loss(w).backward(); sam.ascend()          # w <- w + e
        optimizer.zero_grad(); loss(w).backward()  # the gradient at w + e
        sam.descend(); optimizer.step()            # w restored exactly, then the step

    Parameters without a gradient are not perturbed. ``T`` covers every parameter (weights and biases alike).
    """

    def __init__(self, params: Iterable[torch.Tensor], rho: float, *, adaptive: bool = False, eta: float = ASAM_ETA):
        self.params = [p for p in params if p.requires_grad]
        self.rho, self.adaptive, self.eta = rho, adaptive, eta
        self._saved: list[tuple[torch.Tensor, torch.Tensor]] = []

    @torch.no_grad()
    def perturbation(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``(parameter, e)`` for every parameter with a gradient, from the current gradients."""
        with_grad = [p for p in self.params if p.grad is not None]
        if not with_grad:
            return []
        scales = [(p.abs() + self.eta) if self.adaptive else None for p in with_grad]
        scaled = [p.grad if t is None else t * p.grad for p, t in zip(with_grad, scales)]
        norm = torch.linalg.vector_norm(torch.stack([
            torch.linalg.vector_norm(s, dtype=torch.promote_types(s.dtype, torch.float32)) for s in scaled]))
        factor = self.rho / (norm + SAM_NORM_EPS)
        return [(p, (s if t is None else t * s) * factor.to(s.dtype)) for p, s, t in zip(with_grad, scaled, scales)]

    @torch.no_grad()
    def ascend(self) -> None:
        """Move every parameter to ``w + e`` (keeping a copy of ``w``)."""
        self._saved = []
        for p, e in self.perturbation():
            self._saved.append((p, p.detach().clone()))
            p.add_(e)

    @torch.no_grad()
    def descend(self) -> None:
        """Put back the weights :meth:`ascend` moved (bit for bit), keeping the gradients taken at ``w + e``."""
        for p, w in self._saved:
            p.copy_(w)
        self._saved = []


@contextmanager
def batchnorm_stats_frozen(model: nn.Module) -> Iterator[None]:
    """Within the block, BatchNorm layers in training mode normalise with their batch's statistics but leave their
    running statistics as they are (momentum 0): SAM's second pass updates none of them."""
    saved = [(m, m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None)
             for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training
             and m.track_running_stats]
    for m, _, _ in saved:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum, tracked in saved:
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)
