"""Regularised logistic regression in torch: scikit-learn's objectives, solved in float64 to a stated tolerance.

Two problems, on the device of the inputs:

- :func:`multinomial_l2` — the objective of ``LogisticRegression(C)`` with solver ``lbfgs``::

      C * sum_i s_i * CE(x_i @ W.T + b, y_i) + 0.5 * ||W||_F^2      (the intercept b is not penalised)

  with one row of ``W`` per class (softmax cross-entropy) and, for two classes, scikit-learn's binary form: one row
  ``w``, ``CE = log(1 + exp(-t_i (x_i @ w + b)))`` with ``t_i = +1`` for class 1, ``-1`` for class 0. Solved by
  L-BFGS (``torch.optim.LBFGS``, strong-Wolfe line search) on the objective divided by ``C * sum_i s_i`` (the
  scaling scikit-learn minimises); converged when the largest absolute gradient entry of that scaled objective is at
  most ``tol``. The intercepts of more than two classes are centred (they are defined up to a common shift).

- :func:`l1_logistic` — the objective of ``LogisticRegression(l1_ratio=1, solver="liblinear", C)`` for one binary
  problem, with liblinear's penalised intercept (``intercept_scaling=1``: a constant feature 1 is appended to ``x``
  and its weight ``b`` is penalised like every other)::

      P(w, b) = C * sum_i s_i * log(1 + exp(-t_i (x_i @ w + b))) + ||w||_1 + |b|,     t_i in {-1, +1}

  BATCHED: a batch of problems ``(G, P)`` — ``G`` feature matrices, each shared by ``P`` problems (C values,
  one-vs-rest targets) — is solved at once. Per-sample weights ``s_i >= 0`` (0/1 masks for subsamples of different
  sizes). Solved by FISTA (accelerated proximal gradient) with per-problem backtracking of the step and an adaptive
  restart of the momentum when the objective rises. Converged when the relative duality gap
  ``(P(w) - D(alpha)) / P(w) <= tol``, where ``alpha_i = r * C s_i sigmoid(-t_i (x_i @ w + b))`` scaled by
  ``r = min(1, 1 / ||grad f(w)||_inf)`` to be dual-feasible and ``D(alpha) = sum_i C s_i H(alpha_i / (C s_i))``
  (``H`` the binary entropy in nats); the gap bounds the distance of ``P(w)`` to the optimum.

Both return a :class:`LogisticFit` that says whether every problem converged within ``max_iter``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from probe.errors import ProbeInputError

#: Default tolerance of :func:`multinomial_l2`: the largest gradient entry of the objective / (C * sum of weights).
L2_TOL = 1e-8
#: Default tolerance of :func:`l1_logistic`: the relative duality gap.
L1_TOL = 1e-6


@dataclass(frozen=True)
class LogisticFit:
    """A solved batch of logistic regressions: ``scores = x @ coef.T + intercept`` per problem.

    ``coef``: ``(..., R, F)`` (``R`` = 1 for a binary problem), ``intercept``: ``(..., R)``; ``objective``: the
    objective at the solution, per problem; ``stop_value``: the stopping measure per problem (the scaled gradient's
    largest entry, or the relative duality gap), ``converged`` where it is at most the tolerance; ``n_iter``: the
    iterations run.
    """

    coef: torch.Tensor
    intercept: torch.Tensor
    objective: torch.Tensor
    stop_value: torch.Tensor
    converged: torch.Tensor
    n_iter: int

    @property
    def all_converged(self) -> bool:
        return bool(self.converged.all())


def _check_features(x: torch.Tensor, ndims: tuple[int, ...]) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ProbeInputError(f"features must be a torch tensor, got {type(x).__name__}")
    if x.ndim not in ndims:
        dims = " or ".join(map(str, ndims))
        raise ProbeInputError(f"features must have {dims} dimensions, got shape {tuple(x.shape)}")
    if x.shape[-2] == 0 or x.shape[-1] == 0:
        raise ProbeInputError(f"features are empty (shape {tuple(x.shape)})")
    x = x.to(torch.float64)
    if not torch.isfinite(x).all():
        raise ProbeInputError("features contain non-finite values")
    return x


def _check_settings(tol: float, max_iter: int) -> None:
    if not tol > 0:
        raise ProbeInputError(f"tol must be > 0, got {tol}")
    if max_iter < 1:
        raise ProbeInputError(f"max_iter must be >= 1, got {max_iter}")


# -- multinomial (softmax) L2 ---------------------------------------------------------------------------------------


def multinomial_l2_objective(x, labels, C: float, coef, intercept, sample_weight=None) -> torch.Tensor:
    """``C * sum_i s_i CE_i + 0.5 ||coef||^2`` (see the module docstring; ``coef`` with one row for two classes)."""
    x = x.to(torch.float64)
    scores = x @ coef.to(torch.float64).T + intercept.to(torch.float64)
    if scores.shape[1] == 1:
        scores = torch.cat([torch.zeros_like(scores), scores], dim=1)
    weight = torch.ones(len(x), dtype=torch.float64, device=x.device) if sample_weight is None else sample_weight
    ce = torch.nn.functional.cross_entropy(scores, labels, reduction="none")
    return C * (weight * ce).sum() + 0.5 * (coef.to(torch.float64) ** 2).sum()


def multinomial_l2(
    x: torch.Tensor,
    labels: torch.Tensor,
    C: float = 1.0,
    *,
    sample_weight: torch.Tensor | None = None,
    tol: float = L2_TOL,
    max_iter: int = 1000,
    history_size: int = 20,
) -> LogisticFit:
    """L2-regularised multinomial logistic regression, scikit-learn's ``LogisticRegression(C, solver="lbfgs")``.

    Args:
        x: ``(n, F)`` features. labels: ``(n,)`` class indices ``0 ... K-1``, each present at least once, ``K >= 2``.
        C: inverse regularisation strength (> 0). sample_weight: ``(n,)`` non-negative weights (default 1).
        tol: stop when the largest absolute gradient entry of objective / (C * sum of weights) is <= ``tol``.
        max_iter: L-BFGS iterations at most. history_size: L-BFGS memory.

    Returns:
        :class:`LogisticFit` with ``coef`` ``(K, F)`` and ``intercept`` ``(K,)`` (summing to 0), or ``(1, F)`` and
        ``(1,)`` for two classes (positive scores predict class 1).
    """
    x = _check_features(x, (2,))
    _check_settings(tol, max_iter)
    n, num_features = x.shape
    labels = torch.as_tensor(labels, device=x.device)
    if labels.shape != (n,) or labels.dtype.is_floating_point:
        raise ProbeInputError(f"labels must be ({n},) integers, got {tuple(labels.shape)} {labels.dtype}")
    labels = labels.to(torch.int64)
    if not C > 0:
        raise ProbeInputError(f"C must be > 0, got {C}")
    if labels.min() < 0:
        raise ProbeInputError("labels must be non-negative class indices")
    num_classes = int(labels.max()) + 1
    if num_classes < 2 or (torch.bincount(labels, minlength=num_classes) == 0).any():
        raise ProbeInputError("labels must hold every class 0 ... K-1 and at least two classes")
    weight = _sample_weight(sample_weight, (n,), x)
    rows = 1 if num_classes == 2 else num_classes
    params = torch.zeros(rows, num_features + 1, dtype=torch.float64, device=x.device, requires_grad=True)
    scale = 1.0 / (C * float(weight.sum()))

    def scaled_objective() -> torch.Tensor:
        coef, intercept = params[:, :num_features], params[:, num_features]
        scores = torch.addmm(intercept, x, coef.T)
        if rows == 1:
            scores = torch.cat([torch.zeros_like(scores), scores], dim=1)
        ce = torch.nn.functional.cross_entropy(scores, labels, reduction="none")
        return (weight * ce).sum() / float(weight.sum()) + 0.5 * scale * (coef**2).sum()

    optimizer = torch.optim.LBFGS([params], lr=1.0, max_iter=max_iter, max_eval=4 * max_iter,
                                  tolerance_grad=tol, tolerance_change=0.0, history_size=history_size,
                                  line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        value = scaled_objective()
        value.backward()
        return value

    optimizer.step(closure)
    n_iter = int(optimizer.state[optimizer.param_groups[0]["params"][0]].get("n_iter", 0))
    value = closure()
    grad_max = params.grad.abs().max().detach()
    coef, intercept = params.detach()[:, :num_features].clone(), params.detach()[:, num_features].clone()
    if rows > 1:
        intercept -= intercept.mean()
    return LogisticFit(coef, intercept, value.detach() / scale, grad_max, grad_max <= tol, n_iter)


# -- L1, liblinear's objective, batched ------------------------------------------------------------------------------


def _sample_weight(sample_weight, shape: tuple[int, ...], x: torch.Tensor) -> torch.Tensor:
    if sample_weight is None:
        return torch.ones(shape, dtype=torch.float64, device=x.device)
    weight = torch.as_tensor(sample_weight, device=x.device).to(torch.float64)
    try:
        weight = weight.broadcast_to(shape)
    except RuntimeError:
        raise ProbeInputError(f"sample_weight of shape {tuple(weight.shape)} does not fit {shape}") from None
    if not torch.isfinite(weight).all() or (weight < 0).any():
        raise ProbeInputError("sample_weight must be finite and non-negative")
    return weight


def l1_objective(x, targets, C, coef, intercept, sample_weight=None) -> torch.Tensor:
    """liblinear's L1 objective ``P(w, b)`` per problem (module docstring); shapes as in :func:`l1_logistic`."""
    x = x.to(torch.float64)
    x = x.unsqueeze(0) if x.ndim == 2 else x
    signs = torch.as_tensor(targets, device=x.device).to(torch.float64) * 2 - 1
    signs = signs.reshape(x.shape[0], -1, x.shape[1])
    coef = coef.reshape(signs.shape[0], signs.shape[1], -1).to(torch.float64)
    intercept = intercept.reshape(signs.shape[:2]).to(torch.float64)
    C = torch.as_tensor(C, dtype=torch.float64, device=x.device).broadcast_to(signs.shape[:2])
    weight = _sample_weight(sample_weight, signs.shape, x)
    margins = signs * (torch.bmm(coef, x.transpose(1, 2)) + intercept[..., None])
    loss = (weight * torch.nn.functional.softplus(-margins)).sum(-1)
    return C * loss + coef.abs().sum(-1) + intercept.abs()


def l1_logistic(
    x: torch.Tensor,
    targets: torch.Tensor,
    C,
    *,
    sample_weight: torch.Tensor | None = None,
    tol: float = L1_TOL,
    max_iter: int | None = None,
    check_every: int = 10,
    init: tuple[torch.Tensor, torch.Tensor] | None = None,
    method: str = "newton",
) -> LogisticFit:
    """L1-regularised binary logistic regressions with liblinear's objective, many at once (module docstring).

    Args:
        x: ``(n, F)`` features shared by every problem, or ``(G, n, F)``: one matrix per group of problems.
        targets: ``(P, n)`` (with ``(n, F)`` features) or ``(G, P, n)`` booleans: the positive class of each problem.
        C: inverse regularisation strength (> 0), a number or one per problem (broadcast to ``(G, P)`` / ``(P,)``).
        sample_weight: non-negative weights broadcast to the targets' shape (0 drops a sample; default 1).
        tol: stop a problem when its relative duality gap is <= ``tol``.
        max_iter: outer iterations at most (default 200 proximal Newton, 20000 FISTA iterations); a problem whose
            line search finds no decrease (the gap's floating-point floor, about 1e-9) also stops, not converged.
        check_every: FISTA iterations between duality-gap checks.
        init: ``(coef, intercept)`` to start from (a warm start), broadcast to the result's shapes; default zeros.
        method: ``"newton"`` (proximal Newton on a working set, default) or ``"fista"``; both stop on the gap.

    Returns:
        :class:`LogisticFit` with ``coef`` of shape ``targets.shape[:-1] + (F,)`` and ``intercept``
        ``targets.shape[:-1]``; ``stop_value`` is the relative duality gap.
    """
    x = _check_features(x, (2, 3))
    max_iter = max_iter if max_iter is not None else 200 if method == "newton" else 20000
    _check_settings(tol, max_iter)
    shared = x.ndim == 2
    xg = x.unsqueeze(0) if shared else x
    groups, n, num_features = xg.shape
    targets = torch.as_tensor(targets, device=x.device)
    expected = 2 if shared else 3
    if targets.ndim != expected or targets.shape[-1] != n or (not shared and targets.shape[0] != groups):
        raise ProbeInputError(f"targets must have shape {'(P, n)' if shared else '(G, P, n)'} with n = {n}"
                              f"{'' if shared else f' and G = {groups}'}, got {tuple(targets.shape)}")
    if targets.dtype != torch.bool:
        if targets.dtype.is_floating_point or ((targets != 0) & (targets != 1)).any():
            raise ProbeInputError("targets must be booleans (or 0/1)")
        targets = targets.to(torch.bool)
    out_shape = targets.shape[:-1]
    targets = targets.reshape(groups, -1, n)
    problems = targets.shape[1]
    weight = _sample_weight(sample_weight, out_shape + (n,), x).reshape(groups, problems, n)
    try:
        C = torch.as_tensor(C, dtype=torch.float64, device=x.device).broadcast_to(out_shape).reshape(groups, problems)
    except RuntimeError:
        raise ProbeInputError(f"C does not broadcast to the problems' shape {tuple(out_shape)}") from None
    if not (C > 0).all() or not torch.isfinite(C).all():
        raise ProbeInputError("C must be finite and > 0")
    used = weight > 0
    if ((targets & used).sum(-1) == 0).any() or ((~targets & used).sum(-1) == 0).any():
        raise ProbeInputError("every L1 problem needs both classes among its weighted samples")

    # augmented features [x, 1] (liblinear's intercept_scaling = 1), per-sample weights c_i = C s_i, signs t_i
    xa = torch.cat([xg, torch.ones(groups, n, 1, dtype=torch.float64, device=x.device)], dim=2)
    problem = _L1Problem(xa, C[..., None] * weight, targets.to(torch.float64) * 2 - 1)
    w = torch.zeros(groups, problems, num_features + 1, dtype=torch.float64, device=x.device)
    if init is not None:
        try:
            w[..., :num_features] = torch.as_tensor(init[0], device=x.device).to(torch.float64).broadcast_to(
                out_shape + (num_features,)).reshape(groups, problems, num_features)
            w[..., num_features] = torch.as_tensor(init[1], device=x.device).to(torch.float64).broadcast_to(
                out_shape).reshape(groups, problems)
        except RuntimeError:
            raise ProbeInputError(f"init does not broadcast to coef {tuple(out_shape) + (num_features,)} and "
                                  f"intercept {tuple(out_shape)}") from None
    if method == "newton":
        w, obj, gap, iteration = _prox_newton(problem, w, tol, max_iter)
    elif method == "fista":
        w, obj, gap, iteration = _fista(problem, w, tol, max_iter, check_every)
    else:
        raise ProbeInputError(f"method must be 'newton' or 'fista', got {method!r}")
    coef, intercept = w[..., :num_features], w[..., num_features]
    return LogisticFit(coef.reshape(out_shape + (num_features,)), intercept.reshape(out_shape),
                       obj.reshape(out_shape), gap.reshape(out_shape), (gap <= tol).reshape(out_shape), iteration)


@dataclass(frozen=True)
class _L1Problem:
    """A batch ``(G, P)`` of L1 problems: augmented features ``xa`` ``(G, n, D)``, weights ``cw = C s`` and signs
    ``(G, P, n)``. Iterates ``w`` are ``(G, P, D)`` (the intercept last), scores ``z = xa @ w`` ``(G, P, n)``."""

    xa: torch.Tensor
    cw: torch.Tensor
    signs: torch.Tensor

    def scores(self, w: torch.Tensor) -> torch.Tensor:
        return torch.bmm(w, self.xa.transpose(1, 2))

    def smooth(self, z: torch.Tensor) -> torch.Tensor:
        return (self.cw * torch.nn.functional.softplus(-self.signs * z)).sum(-1)

    def gradient(self, z: torch.Tensor) -> torch.Tensor:
        return torch.bmm(-self.cw * self.signs * torch.sigmoid(-self.signs * z), self.xa)

    def relative_gap(self, w: torch.Tensor, z: torch.Tensor, primal: torch.Tensor) -> torch.Tensor:
        """``(P(w) - D(alpha)) / P(w)`` with the dual point of the module docstring."""
        ratio = 1 / torch.clamp(self.gradient(z).abs().amax(-1), min=1.0)
        q = ratio[..., None] * torch.sigmoid(-self.signs * z)
        dual = (self.cw * (torch.special.entr(q) + torch.special.entr(1 - q))).sum(-1)
        return (primal - dual) / primal


def _fista(problem: _L1Problem, w: torch.Tensor, tol: float, max_iter: int, check_every: int):
    """FISTA with per-problem backtracking and adaptive restart; returns ``(w, objective, gap, iterations)``."""
    xa, cw = problem.xa, problem.cw
    # step: 1 / L with L from a few power iterations on C/4 * X^T diag(s) X, corrected upward by backtracking
    v = torch.ones_like(w)
    for _ in range(8):
        v = torch.bmm(cw * problem.scores(v), xa)
        v = v / v.norm(dim=-1, keepdim=True)
    lipschitz = (torch.bmm(cw * problem.scores(v), xa) * v).sum(-1) / 4
    z = problem.scores(w)
    obj = problem.smooth(z) + w.abs().sum(-1)
    y_w, y_z, momentum = w, z, torch.ones_like(obj)
    done = torch.zeros_like(obj, dtype=torch.bool)
    gap = torch.full_like(obj, float("inf"))
    iteration = 0
    for iteration in range(1, max_iter + 1):
        f_y = problem.smooth(y_z)
        g_y = problem.gradient(y_z)
        while True:
            step = (1 / lipschitz)[..., None]
            v = y_w - step * g_y
            new_w = torch.sign(v) * torch.clamp(v.abs() - step, min=0)
            new_z = problem.scores(new_w)
            diff = new_w - y_w
            f_new = problem.smooth(new_z)
            bound = f_y + (g_y * diff).sum(-1) + 0.5 * lipschitz * (diff**2).sum(-1)
            too_long = (f_new > bound + 1e-12 * f_y.abs()) & ~done
            if not too_long.any():
                break
            lipschitz = torch.where(too_long, 2 * lipschitz, lipschitz)
        new_obj = f_new + new_w.abs().sum(-1)
        # adaptive restart (O'Donoghue and Candes, gradient scheme): drop the momentum when the step from the
        # extrapolated point y points back against the last move; converged problems stay where they are
        restart = ((y_w - new_w) * (new_w - w)).sum(-1) > 0
        next_momentum = torch.where(restart, 1.0, (1 + torch.sqrt(1 + 4 * momentum**2)) / 2)
        beta = torch.where(restart, 0.0, (momentum - 1) / next_momentum)[..., None]
        keep = done[..., None]
        new_w = torch.where(keep, w, new_w)
        new_z = torch.where(keep, z, new_z)
        new_obj = torch.where(done, obj, new_obj)
        y_w = new_w + beta * (new_w - w)
        y_z = new_z + beta * (new_z - z)
        momentum = next_momentum
        w, z, obj = new_w, new_z, new_obj
        lipschitz = torch.where(done, lipschitz, lipschitz * 0.95)
        if iteration % check_every == 0 or iteration == max_iter:
            gap = torch.where(done, gap, problem.relative_gap(w, z, obj))
            done = gap <= tol
            if done.all():
                break
    return w, obj, gap, iteration


def _min_norm_subgradient(w: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """The smallest element of ``grad + d||w||_1``: ``grad + sign(w)`` where ``w != 0``, else ``grad`` shrunk by 1."""
    shrunk = torch.sign(grad) * torch.clamp(grad.abs() - 1, min=0)
    return torch.where(w != 0, grad + torch.sign(w), shrunk)


def _prox_newton(problem: _L1Problem, w: torch.Tensor, tol: float, max_iter: int, inner_max: int = 300,
                 chunk_elements: int = 2**23):
    """Proximal Newton on a working set (as liblinear's newGLMNET); returns ``(w, objective, gap, iterations)``.

    Each outer iteration: the gradient ``g`` and curvature ``h_i = c_i p_i (1 - p_i)`` at ``w``; a working set per
    problem of the non-zero weights and as many (16 at least) of the zero weights with ``|g_j| >= 1 - 1e-3``, the
    largest first (padded to a common size with the next largest ``|g_j|``); the quadratic model
    ``g.d + d.H d / 2 + ||w + d||_1`` over the working set (``H = X_W^T diag(h) X_W``) solved by FISTA with
    restart to a tenth of the outer KKT violation; then a backtracking (Armijo) line search on the true objective
    along ``d``. Converged problems drop out of the batch.
    """
    xa, cw, signs = problem.xa, problem.cw, problem.signs
    groups, problems, dims = w.shape
    z = problem.scores(w)
    obj = problem.smooth(z) + w.abs().sum(-1)
    done = torch.zeros_like(obj, dtype=torch.bool)
    stalled = torch.zeros_like(done)
    gap = torch.full_like(obj, float("inf"))
    group_of = torch.arange(groups, device=w.device)[:, None].expand(groups, problems).reshape(-1)
    iteration = 0
    while iteration < max_iter:
        iteration += 1
        p = torch.sigmoid(-signs * z)
        grad = torch.bmm(-cw * signs * p, xa)
        gap = torch.where(done, gap, problem.relative_gap(w, z, obj))
        done = (gap <= tol) | stalled
        if done.all():
            break
        violation = _min_norm_subgradient(w, grad).abs().amax(-1)
        # working set: non-zero weights, the intercept, and zero weights whose gradient (nearly) violates |g| <= 1
        score = torch.where(w != 0, torch.inf, grad.abs())
        score[..., -1] = torch.inf
        # at most as many new zero weights as non-zero ones (16 at least): the set grows while the support does
        support = (w != 0).sum(-1)
        violators = ((score >= 1 - 1e-3) & (w == 0)).sum(-1)
        wanted = torch.where(done, 0, support + torch.minimum(violators, torch.clamp(support, min=16)))
        k = min(max(int(wanted.max()), 1), dims)
        active = torch.nonzero(~done.reshape(-1)).reshape(-1)  # the problems not yet converged
        ws = torch.topk(score.reshape(-1, dims)[active], k, dim=-1).indices  # (A, k)
        flat_w, flat_g = w.reshape(-1, dims)[active], grad.reshape(-1, dims)[active]
        curvature = (cw * p * (1 - p)).reshape(-1, z.shape[-1])[active]
        hessian = torch.empty(len(active), k, k, dtype=w.dtype, device=w.device)
        step = max(1, chunk_elements // (k * z.shape[-1]))
        xa_t = xa.transpose(1, 2)
        for lo in range(0, len(active), step):
            sl = slice(lo, lo + step)
            cols = xa_t[group_of[active[sl], None], ws[sl]]  # (c, k, n)
            hessian[sl] = torch.bmm(cols * curvature[sl, None, :], cols.transpose(1, 2))
        w_ws, g_ws = flat_w.gather(1, ws), flat_g.gather(1, ws)
        u = _quadratic_l1(hessian, g_ws, w_ws, 0.1 * violation.reshape(-1)[active], inner_max)
        direction = torch.zeros(groups * problems, dims, dtype=w.dtype, device=w.device)
        direction[active] = torch.zeros_like(flat_w).scatter_(1, ws, u - w_ws)
        direction = direction.reshape(w.shape)
        # Armijo: P(w + t d) <= P(w) + 0.01 t (g.d + ||w + d||_1 - ||w||_1), t = 1, 1/2, ...
        decrease = (grad * direction).sum(-1) + (w + direction).abs().sum(-1) - w.abs().sum(-1)
        dz = problem.scores(direction)
        t = torch.ones_like(obj)
        no_descent = ~done & (decrease >= 0)
        accepted = done | no_descent
        for _ in range(40):
            trial_w = w + t[..., None] * direction
            trial_obj = problem.smooth(z + t[..., None] * dz) + trial_w.abs().sum(-1)
            ok = (trial_obj <= obj + 0.01 * t * decrease) & ~accepted
            w = torch.where(ok[..., None], trial_w, w)
            z = torch.where(ok[..., None], z + t[..., None] * dz, z)
            obj = torch.where(ok, trial_obj, obj)
            accepted = accepted | ok
            if accepted.all():
                break
            t = torch.where(accepted, t, t / 2)
        # no step lowers the objective any more (the gap's floating-point floor): stop, not converged
        stalled = stalled | ~accepted | no_descent
        if (done | stalled).all():
            break
    return w, obj, gap, iteration


def _quadratic_l1(hessian: torch.Tensor, grad: torch.Tensor, w: torch.Tensor, target: torch.Tensor,
                  max_iter: int) -> torch.Tensor:
    """``argmin_u g.(u - w) + (u - w).H (u - w) / 2 + ||u||_1`` per row by FISTA with restart, until the KKT
    violation of every row is at most ``target`` (or ``max_iter``)."""
    v = torch.ones_like(w)
    for _ in range(30):
        v = torch.bmm(hessian, v[..., None])[..., 0]
        v = v / v.norm(dim=-1, keepdim=True).clamp(min=1e-300)
    lipschitz = 1.05 * (torch.bmm(hessian, v[..., None])[..., 0] * v).sum(-1, keepdim=True) + 1e-12
    u, y, momentum = w, w, torch.ones_like(lipschitz)
    for iteration in range(max_iter):
        g_y = grad + torch.bmm(hessian, (y - w)[..., None])[..., 0]
        v = y - g_y / lipschitz
        new_u = torch.sign(v) * torch.clamp(v.abs() - 1 / lipschitz, min=0)
        restart = ((y - new_u) * (new_u - u)).sum(-1, keepdim=True) > 0
        next_momentum = torch.where(restart, 1.0, (1 + torch.sqrt(1 + 4 * momentum**2)) / 2)
        beta = torch.where(restart, 0.0, (momentum - 1) / next_momentum)
        y = new_u + beta * (new_u - u)
        u, momentum = new_u, next_momentum
        if iteration % 10 == 9:
            g_u = grad + torch.bmm(hessian, (u - w)[..., None])[..., 0]
            if (_min_norm_subgradient(u, g_u).abs().amax(-1) <= target).all():
                break
    return u


# -- numpy: small problems on the CPU, few operations ---------------------------------------------------------------


@dataclass(frozen=True)
class NumpyFit:
    """:class:`LogisticFit` in numpy: ``coef`` ``(P, R, F)`` or ``(R, F)``, ``intercept`` without the last axis."""

    coef: np.ndarray
    intercept: np.ndarray
    objective: np.ndarray
    stop_value: np.ndarray
    converged: np.ndarray
    n_iter: int

    @property
    def all_converged(self) -> bool:
        return bool(np.all(self.converged))


def _softplus_sigmoid(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``log(1 + exp(u))`` and ``sigmoid(u)``, stable, from one ``exp``."""
    e = np.exp(-np.abs(u))
    soft = np.maximum(u, 0) + np.log1p(e)
    r = 1 / (1 + e)
    return soft, np.where(u > 0, r, e * r)


def _check_array(x, name: str = "features") -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ProbeInputError(f"{name} must have shape (n, F) with n, F > 0, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ProbeInputError(f"{name} contain non-finite values")
    return x


def l2_logistic_np(x, labels, C: float = 1.0, *, tol: float = L2_TOL, max_iter: int = 1000,
                   history_size: int = 10) -> NumpyFit:
    """:func:`multinomial_l2` (scikit-learn's ``LogisticRegression(C)`` objective, multinomial, or its binary form
    for two classes) in numpy, unit sample weights: L-BFGS with a backtracking (Armijo) line search on
    objective / (C n); converged when its largest absolute gradient entry is <= ``tol``. Each iteration is two
    ``(n, F) x (F, K)`` products and one softmax: on the CPU at a probe's size far less than scipy's or torch's
    L-BFGS cost per iteration.

    Returns ``coef`` ``(K, F)`` / ``(1, F)`` and ``intercept`` ``(K,)`` (summing to 0) / ``(1,)``."""
    x = _check_array(x)
    labels = np.asarray(labels).reshape(-1)
    n, num_features = x.shape
    if labels.shape != (n,) or labels.dtype.kind not in "iub":
        raise ProbeInputError(f"labels must be ({n},) integers, got {labels.shape} {labels.dtype}")
    labels = labels.astype(np.int64)
    if not C > 0:
        raise ProbeInputError(f"C must be > 0, got {C}")
    _check_settings(tol, max_iter)
    if labels.min() < 0:
        raise ProbeInputError("labels must be non-negative class indices")
    num_classes = int(labels.max()) + 1
    if num_classes < 2 or (np.bincount(labels, minlength=num_classes) == 0).any():
        raise ProbeInputError("labels must hold every class 0 ... K-1 and at least two classes")
    rows = 1 if num_classes == 2 else num_classes
    xa = np.hstack([x, np.ones((n, 1))])
    ridge = np.ones(num_features + 1) / (C * n)
    ridge[-1] = 0.0  # the intercept is not penalised
    if rows == 1:
        signs = np.where(labels == 1, 1.0, -1.0)

        def value_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
            soft, sig = _softplus_sigmoid(-signs * (xa @ theta[0]))
            grad = (-signs * sig) @ xa / n + ridge * theta[0]
            return float(soft.sum() / n + 0.5 * (ridge * theta[0] ** 2).sum()), grad[None]
    else:
        onehot = np.zeros((n, num_classes))
        onehot[np.arange(n), labels] = 1.0

        def value_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
            scores = xa @ theta.T
            scores -= scores.max(1, keepdims=True)
            exp = np.exp(scores)
            norm = exp.sum(1, keepdims=True)
            ce = np.log(norm[:, 0]) - scores[np.arange(n), labels]
            grad = (exp / norm - onehot).T @ xa / n + ridge * theta
            return float(ce.sum() / n + 0.5 * (ridge * theta**2).sum()), grad

    theta = np.zeros((rows, num_features + 1))
    value, grad = value_grad(theta)
    steps: list[tuple[np.ndarray, np.ndarray, float]] = []
    iteration = 0
    while np.abs(grad).max() > tol and iteration < max_iter:
        iteration += 1
        # two-loop recursion: direction = -H grad
        q = grad.copy()
        alphas = []
        for s, y, rho in reversed(steps):
            alpha = rho * (s * q).sum()
            q -= alpha * y
            alphas.append(alpha)
        if steps:
            s, y, _ = steps[-1]
            q *= (s * y).sum() / (y * y).sum()
        else:
            q /= max(1.0, np.abs(q).sum())
        for (s, y, rho), alpha in zip(steps, reversed(alphas)):
            q += (alpha - rho * (y * q).sum()) * s
        direction = -q
        slope = (grad * direction).sum()
        if slope >= 0:  # lost descent (round-off): restart from the gradient
            steps, direction, slope = [], -grad, -(grad**2).sum()
        t = 1.0
        for _ in range(50):
            new_value, new_grad = value_grad(theta + t * direction)
            if new_value <= value + 1e-4 * t * slope:
                break
            t /= 2
        else:
            break  # no decrease any more: the floating-point floor
        s, y = t * direction, new_grad - grad
        if (s * y).sum() > 1e-12 * np.sqrt((s * s).sum() * (y * y).sum()):
            steps = (steps + [(s, y, 1 / (s * y).sum())])[-history_size:]
        theta, value, grad = theta + s, new_value, new_grad
    grad_max = float(np.abs(grad).max())
    coef, intercept = theta[:, :num_features], theta[:, num_features].copy()
    if rows > 1:
        intercept -= intercept.mean()
    return NumpyFit(coef, intercept, np.asarray(value * C * n), np.asarray(grad_max), np.asarray(grad_max <= tol),
                    iteration)


def l1_logistic_np(x, targets, C, *, sample_weight=None, curvature_groups=None, tol: float = L1_TOL,
                   max_iter: int = 100, init: tuple[np.ndarray, np.ndarray] | None = None) -> NumpyFit:
    """:func:`l1_logistic` for ``P`` problems sharing one feature matrix, in numpy: liblinear's objective

        ``P_p(w, b) = sum_i C_p s_pi log(1 + exp(-t_pi (x_i @ w + b))) + ||w||_1 + |b|``,

    solved by proximal (quasi-)Newton: at each step the quadratic model ``g.d + d.H d / 2 + ||w + d||_1`` on a
    working set (:func:`_working_set`: the non-zero coordinates and the largest violators at zero) is minimised
    (:func:`_l1_quadratic_cd`: exact solves on a support with fixed signs, coordinate descent to find it) to a
    hundredth of the KKT violation, then an Armijo line search on ``P_p``. ``H`` is the exact Hessian
    ``X^T diag(C s p (1 - p)) X`` of each problem, or, for problems given the same ``curvature_groups`` label, the
    Hessian of their mean weights ``C s p (1 - p)``: one matrix per group instead of one per problem, on the union of
    its problems' working sets. Nearly equal problems (resamples of one data set, warm-started near their solution)
    keep a fast linear rate so; a problem whose step cut its KKT violation by less than
    :data:`SHARED_CURVATURE_RATE` gets its own exact Hessian from then on. A matrix is ``k x k`` for a working set of
    ``k`` coordinates, not ``F x F``: sparse solutions on wide features stay cheap. The line search keeps every step a
    descent, and the stopping rule, the relative duality gap of the module docstring ``<= tol`` over every
    coordinate, is exact per problem either way; converged problems leave the batch.

    Args:
        x: ``(n, F)`` features. targets: ``(P, n)`` booleans. C: a number or ``(P,)``.
        sample_weight: ``(P, n)`` or ``(n,)`` non-negative (0 drops a sample); default 1.
        curvature_groups: ``(P,)`` integer labels; default each problem its own (exact proximal Newton).
        tol: relative duality gap to stop at. max_iter: Newton steps at most. init: ``(coef (P, F), intercept (P,))``.

    Returns:
        :class:`NumpyFit`: ``coef`` ``(P, F)``, ``intercept`` ``(P,)``; ``stop_value`` the gap.
    """
    x = _check_array(x)
    n, num_features = x.shape
    targets = np.asarray(targets)
    if targets.ndim != 2 or targets.shape[1] != n:
        raise ProbeInputError(f"targets must have shape (P, n) with n = {n}, got {targets.shape}")
    if targets.dtype != bool:
        if targets.dtype.kind not in "iub" or ((targets != 0) & (targets != 1)).any():
            raise ProbeInputError("targets must be booleans (or 0/1)")
        targets = targets.astype(bool)
    problems = len(targets)
    _check_settings(tol, max_iter)
    try:
        C = np.broadcast_to(np.asarray(C, dtype=np.float64), (problems,))
        weight = np.ones((problems, n)) if sample_weight is None else np.broadcast_to(
            np.asarray(sample_weight, dtype=np.float64), (problems, n))
    except ValueError:
        raise ProbeInputError(f"C or sample_weight does not broadcast to {problems} problems of {n} samples") from None
    if not (C > 0).all() or not np.isfinite(C).all():
        raise ProbeInputError("C must be finite and > 0")
    if not np.isfinite(weight).all() or (weight < 0).any():
        raise ProbeInputError("sample_weight must be finite and non-negative")
    used = weight > 0
    if not ((targets & used).any(1).all() and (~targets & used).any(1).all()):
        raise ProbeInputError("every L1 problem needs both classes among its weighted samples")
    groups = np.arange(problems) if curvature_groups is None else np.asarray(curvature_groups).reshape(-1)
    if groups.shape != (problems,) or groups.dtype.kind not in "iu":
        raise ProbeInputError(f"curvature_groups must be {problems} integer labels")
    group_of = np.unique(groups, return_inverse=True)[1]
    own = np.bincount(group_of)[group_of] == 1  # a problem alone in its group
    last_violation = np.full(problems, np.inf)

    dims = num_features + 1
    xa = np.hstack([x, np.ones((n, 1))])
    usable = np.abs(xa).max(0) > 0  # an all-zero feature keeps weight 0
    xa_pad = np.hstack([xa, np.zeros((n, 1))])  # column dims: the working sets' padding
    cw = C[:, None] * weight
    signs = np.where(targets, 1.0, -1.0)
    w = np.zeros((problems, dims))
    if init is not None:
        try:
            w[:, :num_features] = np.broadcast_to(np.asarray(init[0], dtype=np.float64), (problems, num_features))
            w[:, num_features] = np.broadcast_to(np.asarray(init[1], dtype=np.float64), (problems,))
        except ValueError:
            raise ProbeInputError(f"init does not broadcast to coef ({problems}, {num_features}) and intercept "
                                  f"({problems},)") from None
    z = w @ xa.T
    soft, sig = _softplus_sigmoid(-signs * z)
    obj = (cw * soft).sum(1) + np.abs(w).sum(1)
    gap = np.full(problems, np.inf)
    done = np.zeros(problems, dtype=bool)
    iteration = 0
    while True:
        act = np.flatnonzero(~done)
        grad_a = (-cw[act] * signs[act] * sig[act]) @ xa
        # relative duality gap, dual point alpha_i = r C s_i sigmoid(-t_i z_i), r = min(1, 1 / ||grad||_inf)
        q = sig[act] / np.maximum(np.abs(grad_a).max(1), 1.0)[:, None]
        entropy = -(q * np.log(np.where(q > 0, q, 1)) + (1 - q) * np.log(np.where(q < 1, 1 - q, 1)))
        gap[act] = (obj[act] - (cw[act] * entropy).sum(1)) / obj[act]
        done[act] = gap[act] <= tol
        if done.all() or iteration >= max_iter:
            break
        iteration += 1
        keep = ~done[act]
        act, g_a = act[keep], grad_a[keep]
        w_a = w[act]
        shrunk = np.sign(g_a) * np.maximum(np.abs(g_a) - 1, 0)
        violation = np.abs(np.where(w_a != 0, g_a + np.sign(w_a), shrunk)).max(1)
        # curvature: one Hessian per group of the active problems, from the group's mean weights; a problem whose
        # last step on it did not cut its KKT violation threefold gets its own from then on
        own[act] |= violation > SHARED_CURVATURE_RATE * last_violation[act]
        last_violation[act] = violation
        curv = cw[act] * sig[act] * (1 - sig[act])
        direction = np.zeros_like(w_a)
        for part in (np.flatnonzero(~own[act]), np.flatnonzero(own[act])):  # shared (wide) and own working sets
            if len(part):
                keys = np.where(own[act[part]], part, group_of[act[part]])
                direction[part] = _newton_directions(xa_pad, w_a[part], g_a[part], curv[part], keys, usable,
                                                     0.01 * violation[part])
        decrease = (g_a * direction).sum(1) + np.abs(w_a + direction).sum(1) - np.abs(w_a).sum(1)
        dz = direction @ xa.T
        t = np.ones(len(act))
        accepted = decrease >= 0  # no descent left: the floating-point floor
        stalled = accepted.copy()
        z_a, sig_a, obj_a = z[act], sig[act], obj[act]
        for _ in range(30):
            rows = np.flatnonzero(~accepted)
            if len(rows) == 0:
                break
            trial_w = w_a[rows] + t[rows, None] * direction[rows]
            trial_z = z_a[rows] + t[rows, None] * dz[rows]
            trial_soft, trial_sig = _softplus_sigmoid(-signs[act[rows]] * trial_z)
            trial_obj = (cw[act[rows]] * trial_soft).sum(1) + np.abs(trial_w).sum(1)
            ok = trial_obj <= obj_a[rows] + 0.01 * t[rows] * decrease[rows]
            good = rows[ok]
            w_a[good], z_a[good], sig_a[good], obj_a[good] = trial_w[ok], trial_z[ok], trial_sig[ok], trial_obj[ok]
            accepted[good] = True
            t[rows[~ok]] /= 2
        stalled |= ~accepted
        w[act], z[act], sig[act], obj[act] = w_a, z_a, sig_a, obj_a
        done[act[stalled]] = True  # stops, not converged (gap > tol)
    return NumpyFit(w[:, :num_features], w[:, num_features], obj, gap, gap <= tol, iteration)


def _newton_directions(xa_pad: np.ndarray, w: np.ndarray, grad: np.ndarray, curv: np.ndarray, keys: np.ndarray,
                       usable: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The proximal Newton directions of :func:`l1_logistic_np` for problems with weights ``w`` and gradients ``grad``
    ``(p, dims)``: problems with the same ``keys`` share one Hessian ``X^T diag(mean curv) X`` on the union of their
    working sets (:func:`_working_set`; ``xa_pad`` is ``[x, 1, 0]``), and each problem's subproblem is solved on its
    own working set to KKT violation ``target`` (:func:`_l1_quadratic_cd`)."""
    problems, dims = w.shape
    key_ids, key_of = np.unique(keys, return_inverse=True)
    share = (key_of[None, :] == np.arange(len(key_ids))[:, None]).astype(np.float64)
    mean_curv = (share / share.sum(1, keepdims=True)) @ curv
    member = _working_set(w, grad, usable)
    union = np.zeros((len(key_ids), dims), dtype=bool)
    np.logical_or.at(union, key_of, member)
    idx, own_idx = _padded_indices(union), _padded_indices(member)  # padded with dims: the zero column
    n, k = len(xa_pad), idx.shape[1]
    hess = np.zeros((len(key_ids), k + 1, k + 1))  # slot k: the padding of the problems' own working sets
    chunk = max(1, HESSIAN_CHUNK_BYTES // (16 * n * k))  # keys per pass: the gathered columns and their scaled copy
    for start in range(0, len(key_ids), chunk):
        cols = xa_pad[:, idx[start : start + chunk]].transpose(1, 0, 2)  # (keys, n, k)
        hess[start : start + chunk, :k, :k] = (cols.transpose(0, 2, 1) * mean_curv[start : start + chunk, None]) @ cols
    hess[:, :k, :k] += (1e-12 * (1 + np.trace(hess, axis1=1, axis2=2))[:, None, None]
                        + (idx == dims)[:, :, None]) * np.eye(k)  # padding: a unit diagonal, zero gradient
    hess[:, k, k] = 1.0
    position = np.full((len(key_ids), dims + 1), k)
    position[np.arange(len(key_ids))[:, None], idx] = np.arange(k)
    position[:, dims] = k
    slots = position[key_of[:, None], own_idx]  # (problems, k_own): each own coordinate's slot in its key's Hessian
    h = hess[key_of[:, None, None], slots[:, :, None], slots[:, None, :]]
    g_k = np.take_along_axis(np.hstack([grad, np.zeros((problems, 1))]), own_idx, 1)
    w_k = np.take_along_axis(np.hstack([w, np.zeros((problems, 1))]), own_idx, 1)
    u = _l1_quadratic_cd(h, g_k, w_k, target)
    direction = np.zeros((problems, dims + 1))
    np.put_along_axis(direction, own_idx, u - w_k, 1)
    return direction[:, :dims]


#: Memory the Hessians of one Newton step of :func:`l1_logistic_np` gather their columns in, at most (bytes).
HESSIAN_CHUNK_BYTES = 256 * 2**20

#: A problem sharing a curvature group's Hessian gets its own once a step cuts its KKT violation by less than this
#: factor (:func:`l1_logistic_np`).
SHARED_CURVATURE_RATE = 1 / 3

#: Coordinates a working set may add per Newton step beyond the non-zero ones: the largest gradients, at least this
#: many, and as many as the non-zero coordinates.
WORKING_SET_GROWTH = 32


def _working_set(w: np.ndarray, grad: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """``(p, dims)`` booleans: each problem's working set for one Newton step of :func:`l1_logistic_np`: its non-zero
    coordinates, the intercept (last), and of the coordinates that violate optimality at zero (``|g_j| >= 1 - 1e-3``)
    the largest ``max(WORKING_SET_GROWTH, non-zeros)``. Features that are zero everywhere (not ``usable``) never
    enter. The stopping rule sees every coordinate, so a capped working set only delays a coordinate to a later
    step."""
    nonzero = (w != 0) & usable
    score = np.where(usable & (np.abs(grad) >= 1 - 1e-3) & ~nonzero, np.abs(grad), -np.inf)
    growth = np.maximum(WORKING_SET_GROWTH, nonzero.sum(1))
    rank = np.argsort(np.argsort(-score, axis=1, kind="stable"), axis=1, kind="stable")
    member = nonzero | ((rank < growth[:, None]) & np.isfinite(score))
    member[:, -1] = True
    return member


def _padded_indices(member: np.ndarray) -> np.ndarray:
    """``(rows, k)`` the column indices of each row's ``True`` entries, in order, padded with ``member.shape[1]``."""
    sizes = member.sum(1)
    order = np.argsort(~member, axis=1, kind="stable")[:, : sizes.max()]
    return np.where(np.arange(sizes.max())[None] < sizes[:, None], order, member.shape[1])


def _l1_quadratic_cd(hess: np.ndarray, grad: np.ndarray, w: np.ndarray, target: np.ndarray, rounds: int = 20,
                     sweeps: int = 4) -> np.ndarray:
    """``argmin_u g.(u - w) + (u - w).H (u - w) / 2 + ||u||_1`` per row (``H = hess[row]``, symmetric): rounds of an
    exact solve on a support with fixed signs, ``H_SS (u_S - w_S) = -(g + H_S,~S (0 - w_~S))_S - sign(u_S)``, kept up to
    the first sign change, each round after the first preceded by a few cyclic coordinate-descent sweeps (vectorised
    over the rows) that find the support and signs. The first round solves on the support and signs of ``w``, which a
    warm-started Newton step usually keeps. A row stops when its KKT violation is at most ``target``."""
    u = w.copy()
    rows = np.arange(len(w))
    h, g, w_r, u_r = hess, grad, w, u.copy()  # the rows still going
    for round_ in range(rounds):
        if round_ > 0:
            diag = np.diagonal(h, axis1=1, axis2=2)
            hd = (h @ (u_r - w_r)[..., None])[..., 0]  # H (u - w)
            for _ in range(sweeps):
                for j in range(u_r.shape[1]):
                    a = diag[:, j]
                    v = u_r[:, j] - (g[:, j] + hd[:, j]) / a
                    new = np.sign(v) * np.maximum(np.abs(v) - 1 / a, 0)
                    delta = new - u_r[:, j]
                    u_r[:, j] = new
                    hd += delta[:, None] * h[:, j]  # row j of H is its column j
        u_r = _l1_support_step(h, g, w_r, u_r)
        u[rows] = u_r
        g_u = g + (h @ (u_r - w_r)[..., None])[..., 0]
        shrunk = np.sign(g_u) * np.maximum(np.abs(g_u) - 1, 0)
        going = np.abs(np.where(u_r != 0, g_u + np.sign(u_r), shrunk)).max(1) > target[rows]
        if not going.any():
            break
        if not going.all():
            rows, h, g, w_r, u_r = rows[going], h[going], g[going], w_r[going], u_r[going]
    return u


def _l1_support_step(h: np.ndarray, grad: np.ndarray, w: np.ndarray, u: np.ndarray) -> np.ndarray:
    """From ``u``, toward the minimiser of the quadratic model of :func:`_l1_quadratic_cd` on the support of ``u``
    with its signs (``u = 0`` off the support), up to the first sign change on the support (that weight becomes 0),
    as in feature-sign search."""
    eye = np.eye(w.shape[1])
    support = u != 0
    sign = np.sign(u)
    both = support[:, :, None] & support[:, None, :]
    d_off = np.where(support, 0.0, -w)  # the fixed part of d = u - w off the support
    rhs = -(grad + (h @ d_off[..., None])[..., 0] + sign)
    system = np.where(both, h, eye)
    d_on = np.linalg.solve(system, np.where(support, rhs, 0.0)[..., None])[..., 0]
    polished = np.where(support, w + d_on, 0.0)
    step = polished - u
    crossing = support & (np.sign(polished) != sign)
    ratio = np.where(crossing, u / np.where(crossing, -step, 1.0), np.inf)
    alpha = np.minimum(ratio.min(1), 1.0)
    u = u + alpha[:, None] * step
    u[crossing & (ratio <= alpha[:, None])] = 0.0
    return u
