"""Regularisers of the training objective against known answers: the penalties' gradients, focal loss against a
per-sample loop, label smoothing against torch and the hand formula, SAM and ASAM against a hand-computed step on a
quadratic; in the trainer: one step against a hand-computed one, the recorded loss stays cross-entropy, a SAM run
resumes bit-identically, old run.json files without these fields still load."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import probe
from probe.errors import ProbeInputError
from probe.train import TrainConfig, train
from probe.train.regularisers import (
    ASAM_ETA,
    SAM,
    Objective,
    batchnorm_stats_frozen,
    focal_loss,
    penalised_weights,
    weight_penalty,
)
from tests.conftest import tiny_parity_config


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)
        self.bn = nn.BatchNorm2d(3)
        self.frozen = nn.Linear(3, 3)
        self.frozen.requires_grad_(False)
        self.fc = nn.Linear(3, 4)
        self.ln = nn.LayerNorm(4)

    def forward(self, x):
        f = self.bn(self.conv(x)).mean(dim=(2, 3))
        return self.ln(self.fc(self.frozen(f)))


def test_penalty_gradient_is_l1_sign_plus_l2_w_on_linear_and_conv_weights_and_zero_elsewhere():
    torch.manual_seed(0)
    net = _Net()
    with torch.no_grad():
        net.fc.weight[0, 0] = 0.0  # sign(0) = 0: the L1 term's gradient there is 0
        for p in net.parameters():
            p.add_(0.1)  # BatchNorm/LayerNorm start at 1 and 0; move them so that a gradient would show
        net.fc.weight[0, 0] = 0.0
    l1, l2 = 0.3, 0.7
    weights = penalised_weights(net)
    assert {id(w) for w in weights} == {id(net.conv.weight), id(net.fc.weight)}
    weight_penalty(weights, l1, l2).backward()
    for name, p in net.named_parameters():
        if not p.requires_grad:
            assert p.grad is None, name
        elif name in ("conv.weight", "fc.weight"):
            w = p.detach().double().numpy()
            assert np.allclose(p.grad.double().numpy(), l1 * np.sign(w) + l2 * w, atol=1e-7), name
        else:  # biases, BatchNorm and LayerNorm parameters: not in the graph
            assert p.grad is None, name
    assert net.fc.weight.grad[0, 0] == 0.0
    w = [t.detach().double().numpy() for t in weights]
    value = sum(l1 * np.abs(a).sum() + 0.5 * l2 * (a ** 2).sum() for a in w)
    assert math.isclose(float(weight_penalty(weights, l1, l2).detach()), value, rel_tol=1e-6)
    plain = Objective(tiny_parity_config())
    assert plain.penalty(weights) is None and float(weight_penalty(weights)) == 0.0


def _focal_loop(logits: np.ndarray, y: np.ndarray, gamma: float, s: float) -> list[float]:
    """-sum_k q_k (1 - p_k)^gamma log p_k, one sample and one class at a time, in float64."""
    out = []
    for z, label in zip(logits.astype(np.float64), y):
        k = len(z)
        total = sum(math.exp(v - max(z)) for v in z)
        loss = 0.0
        for c in range(k):
            p = math.exp(z[c] - max(z)) / total
            q = (1 - s) * (c == label) + s / k
            loss -= q * (1 - p) ** gamma * math.log(p)
        out.append(loss)
    return out


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 5.0])
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.6])
def test_focal_loss_with_smoothing_matches_a_per_sample_loop(gamma, smoothing):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(17, 5, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, 5, (17,), generator=g)
    got = focal_loss(logits, y, gamma, smoothing).numpy()
    assert np.allclose(got, _focal_loop(logits.numpy(), y.numpy(), gamma, smoothing), rtol=1e-10, atol=1e-12)


def test_focal_loss_at_gamma_zero_is_cross_entropy_and_label_smoothing_is_torchs():
    g = torch.Generator().manual_seed(2)
    logits, y = torch.randn(32, 7, generator=g), torch.randint(0, 7, (32,), generator=g)
    assert torch.equal(focal_loss(logits, y, 0.0), F.cross_entropy(logits, y, reduction="none"))
    for s in (0.05, 0.3):
        assert torch.allclose(focal_loss(logits, y, 0.0, s),
                              F.cross_entropy(logits, y, reduction="none", label_smoothing=s))
        log_p = F.log_softmax(logits.double(), dim=1)  # the hand formula: (1 - s) CE + s * mean_k(-log p_k)
        hand = -(1 - s) * log_p.gather(1, y[:, None])[:, 0] - s * log_p.mean(dim=1)
        assert torch.allclose(focal_loss(logits, y, 0.0, s).double(), hand, atol=1e-6)
        # the general path with gamma -> 0 gives the same numbers
        assert torch.allclose(focal_loss(logits.double(), y, 1e-12, s), hand, atol=1e-9)


def test_focal_loss_gradients_stay_finite_for_a_certain_sample_and_small_gamma():
    logits = torch.tensor([[200.0, -200.0], [0.0, 1.0]], requires_grad=True)
    focal_loss(logits, torch.tensor([0, 1]), 0.5).sum().backward()
    assert torch.isfinite(logits.grad).all()


def _quadratic():
    a = np.array([[3.0, 1.0, 0.0], [1.0, 2.0, 0.5], [0.0, 0.5, 1.0]])
    w0 = np.array([0.5, -1.0, 2.0])
    return a, w0


@pytest.mark.parametrize("adaptive", [False, True])
def test_sam_and_asam_step_on_a_quadratic_matches_the_hand_computed_step(adaptive):
    """f(w) = 1/2 w^T A w: g = A w; e = rho g / ||g|| (ASAM: rho T^2 g / ||T g||, T = |w| + eta); the SGD step is
    w - lr * A (w + e)."""
    a_np, w0 = _quadratic()
    rho, lr = 0.2, 0.1
    g = a_np @ w0
    if adaptive:
        t = np.abs(w0) + ASAM_ETA
        e = rho * t ** 2 * g / np.linalg.norm(t * g)
    else:
        e = rho * g / np.linalg.norm(g)
    expected = w0 - lr * (a_np @ (w0 + e))

    a = torch.tensor(a_np)
    w = nn.Parameter(torch.tensor(w0))
    opt = torch.optim.SGD([w], lr=lr)
    sam = SAM([w], rho, adaptive=adaptive)

    def f():
        return 0.5 * w @ a @ w

    opt.zero_grad()
    f().backward()
    assert np.allclose(dict((id(p), d) for p, d in sam.perturbation())[id(w)].numpy(), e, rtol=0, atol=1e-12)
    sam.ascend()
    assert np.allclose(w.detach().numpy(), w0 + e, rtol=0, atol=1e-12)
    opt.zero_grad()
    f().backward()
    sam.descend()
    assert np.array_equal(w.detach().numpy(), w0)  # restored bit for bit
    assert np.allclose(w.grad.numpy(), a_np @ (w0 + e), rtol=0, atol=1e-12)  # the gradient at w + e
    opt.step()
    assert np.allclose(w.detach().numpy(), expected, rtol=0, atol=1e-12)


def test_sam_perturbation_spans_all_parameters_and_is_zero_for_a_zero_gradient():
    p, q = nn.Parameter(torch.tensor([3.0])), nn.Parameter(torch.tensor([0.0, 0.0]))
    p.grad, q.grad = torch.tensor([3.0]), torch.tensor([0.0, 4.0])
    got = {id(t): e for t, e in SAM([p, q], 0.5).perturbation()}
    assert torch.allclose(got[id(p)], torch.tensor([0.3])) and torch.allclose(got[id(q)], torch.tensor([0.0, 0.4]))
    q.grad, p.grad = torch.zeros(2), torch.zeros(1)
    assert all(torch.equal(e, torch.zeros_like(e)) for _, e in SAM([p, q], 0.5).perturbation())


def test_batchnorm_running_statistics_are_kept_inside_the_frozen_block():
    bn = nn.BatchNorm1d(3).train()
    x = torch.randn(8, 3) * 2 + 1
    bn(x)
    mean, var, tracked = bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone()
    with batchnorm_stats_frozen(bn):
        out = bn(x + 5)
    assert torch.equal(bn.running_mean, mean) and torch.equal(bn.running_var, var)
    assert torch.equal(bn.num_batches_tracked, tracked) and bn.momentum == 0.1
    assert torch.allclose(out, F.batch_norm(x + 5, None, None, bn.weight, bn.bias, training=True))  # batch stats


def test_the_default_objective_is_plain_and_any_option_is_not():
    assert Objective(tiny_parity_config()).plain
    for change in (dict(l1=1e-4), dict(l2=1e-4), dict(focal_gamma=1.0), dict(label_smoothing=0.1),
                   dict(sam_rho=0.05)):
        assert not Objective(tiny_parity_config(**change)).plain, change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(l1=-1e-3), "l1 (--l1) must be a number >= 0"),
        (dict(l2=-1.0), "l2 (--l2) must be a number >= 0"),
        (dict(l1=float("nan")), "l1 (--l1)"),
        (dict(focal_gamma=-0.5), "focal_gamma (--focal-gamma) must be a number >= 0"),
        (dict(label_smoothing=1.0), "label_smoothing (--label-smoothing) must lie in [0, 1)"),
        (dict(label_smoothing=-0.1), "label_smoothing (--label-smoothing)"),
        (dict(sam_rho=0.0), "sam_rho (--sam-rho) must be a number > 0"),
        (dict(sam_rho=-0.1), "sam_rho (--sam-rho)"),
        (dict(sam_adaptive=True), "sam_adaptive (--sam-adaptive) needs sam_rho"),
    ],
)
def test_bad_regulariser_values_are_refused_naming_the_field(change, message):
    with pytest.raises(ProbeInputError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        tiny_parity_config(**change).validate()


def _hand_step(run, cfg: TrainConfig, *, sam: bool) -> dict[str, torch.Tensor]:
    """One full-batch step of ``cfg`` from ``run``'s epoch 0 weights, in float64, written out by hand: focal loss with
    smoothed targets as the per-sample formula, the penalty over the two-dimensional weights of the Linear layers,
    SAM's perturbation from the data term's gradient."""
    ds = probe.data.build_dataset(cfg.dataset, **cfg.dataset_options)
    x, y = ds.train.x.double(), ds.train.y
    model = run.model(0).double().train()
    params = dict(model.named_parameters())
    weights = [p for name, p in params.items() if name.endswith("weight") and p.dim() == 2]

    def data_loss():
        p = torch.softmax(model(x), dim=1)
        k = p.shape[1]
        q = torch.full_like(p, cfg.label_smoothing / k)
        q[torch.arange(len(y)), y] += 1 - cfg.label_smoothing
        return -(q * (1 - p) ** cfg.focal_gamma * torch.log(p)).sum(dim=1).mean()

    grads = torch.autograd.grad(data_loss(), list(params.values()))
    if sam:
        norm = torch.sqrt(sum((g ** 2).sum() for g in grads))
        saved = {n: p.detach().clone() for n, p in params.items()}
        with torch.no_grad():
            for p, g in zip(params.values(), grads):
                p.add_(cfg.sam_rho * g / norm)
        grads = torch.autograd.grad(data_loss(), list(params.values()))
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(saved[n])
    with torch.no_grad():
        for p, g in zip(params.values(), grads):
            extra = cfg.l1 * torch.sign(p) + cfg.l2 * p if any(p is w for w in weights) else 0.0
            p.sub_(cfg.lr * (g + extra))
    return {n: p.detach().float() for n, p in params.items()}


@pytest.mark.parametrize("sam", [False, True])
def test_one_training_step_is_the_hand_computed_step_and_the_recorded_loss_stays_cross_entropy(tmp_path, sam):
    cfg = tiny_parity_config(steps=1, epochs=None, batch_size=256, lr=0.5, l1=1e-3, l2=0.05, focal_gamma=2.0,
                             label_smoothing=0.1, sam_rho=0.1 if sam else None)
    train(cfg, tmp_path / "run")
    run = probe.open_run(tmp_path / "run")
    expected = _hand_step(run, cfg, sam=sam)
    got = run.state_dict(1)
    for name, value in expected.items():
        assert torch.allclose(got[name], value, atol=2e-6), name
    assert not torch.allclose(run.state_dict(0)["head.weight"], got["head.weight"], atol=1e-3)  # it did move
    sgd = run.sgd_records(1)  # the minibatch loss kept is the plain cross-entropy of the logits at w
    ce = F.cross_entropy(torch.from_numpy(sgd.logits), torch.from_numpy(sgd.y), reduction="none")
    assert np.allclose(sgd.loss, ce.numpy(), atol=1e-6)
    assert run.config["focal_gamma"] == 2.0 and run.config["sam_rho"] == (0.1 if sam else None)


def test_a_sam_run_with_penalties_resumes_bit_identically(tmp_path):
    opt = dict(sam_rho=0.05, sam_adaptive=True, l2=1e-3, focal_gamma=1.0, momentum=0.9)
    full, part = tmp_path / "full", tmp_path / "part"
    train(tiny_parity_config(epochs=3, **opt), full)
    train(tiny_parity_config(epochs=1, **opt), part)
    (part / "run.json").write_text((part / "run.json").read_text().replace('"epochs": 1', '"epochs": 3'))
    train(tiny_parity_config(epochs=3, **opt), part, resume=True)
    a, b = probe.open_run(full), probe.open_run(part)
    assert a.epochs == b.epochs == [0, 1, 2, 3]
    for e in a.epochs:
        for k, v in a.state_dict(e).items():
            assert torch.equal(v, b.state_dict(e)[k]), (e, k)
        assert np.array_equal(a.sgd_records(e).loss, b.sgd_records(e).loss)


def test_a_run_json_without_the_regulariser_fields_loads_and_resumes_with_their_defaults(tmp_path):
    out = tmp_path / "old"
    train(tiny_parity_config(epochs=1), out)
    info = json.loads((out / "run.json").read_text())
    for name in ("l1", "l2", "focal_gamma", "label_smoothing", "sam_rho", "sam_adaptive"):
        assert name in info["config"]
        del info["config"][name]
    info["config"]["epochs"] = 2
    (out / "run.json").write_text(json.dumps(info))
    cfg = TrainConfig.from_json(probe.open_run(out).config)
    assert (cfg.l1, cfg.l2, cfg.focal_gamma, cfg.label_smoothing, cfg.sam_rho, cfg.sam_adaptive) == \
        (0.0, 0.0, 0.0, 0.0, None, False)
    assert train(cfg, out, resume=True).status == "complete"
    fresh = tmp_path / "fresh"
    train(tiny_parity_config(epochs=2), fresh)
    for k, v in probe.open_run(fresh).state_dict(2).items():
        assert torch.equal(v, probe.open_run(out).state_dict(2)[k]), k
