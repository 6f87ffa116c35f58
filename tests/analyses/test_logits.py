"""Logit norms, margins, confidence and parameter norms against brute-force loops, scipy and torch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import softmax
from torch import nn

import probe
from probe.analyses.base import AnalysisContext
from probe.analyses.logits import logit_metrics, logits_epoch, margins, max_softmax, param_norms
from probe.errors import ProbeInputError


def _data(n=40, k=4, seed=0, scale=3.0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k)) * scale
    y = rng.integers(0, k, n)
    is_bc = rng.random(n) < 0.3
    return logits, y, is_bc


def test_margins_brute_force():
    logits, y, _ = _data()
    expected = [row[t] - max(v for j, v in enumerate(row) if j != t) for row, t in zip(logits.tolist(), y)]
    np.testing.assert_allclose(margins(logits, y), expected)
    assert margins([[1.0, 1.0]], [0])[0] == 0.0  # a tie has margin 0


def test_max_softmax_against_scipy_and_large_logits():
    logits, _, _ = _data()
    np.testing.assert_allclose(max_softmax(logits), softmax(logits, axis=1).max(axis=1))
    big = np.array([[1000.0, 0.0, -1000.0], [500.0, 500.0, 0.0]])
    np.testing.assert_allclose(max_softmax(big), [1.0, 0.5])


def test_logit_metrics_brute_force():
    logits, y, is_bc = _data()
    m = logit_metrics(logits, y, is_bc)
    norms = [math.sqrt(sum(v * v for v in row)) for row in logits.tolist()]
    marg = margins(logits, y)
    assert m["logit_norm"] == pytest.approx(sum(norms) / len(norms))
    assert m["logit_norm_ba"] == pytest.approx(np.mean([v for v, b in zip(norms, is_bc) if not b]))
    assert m["logit_norm_bc"] == pytest.approx(np.mean([v for v, b in zip(norms, is_bc) if b]))
    assert m["margin_mean"] == pytest.approx(marg.mean())
    ordered = sorted(marg)  # 40 samples: the median is the mean of the 20th and 21st
    assert m["margin_median"] == pytest.approx((ordered[19] + ordered[20]) / 2)
    assert m["margin_min_ba"] == pytest.approx(min(v for v, b in zip(marg, is_bc) if not b))
    assert m["max_softmax_mean"] == pytest.approx(softmax(logits, axis=1).max(axis=1).mean())


def test_logit_metrics_without_bc():
    logits, y, _ = _data(n=6)
    m = logit_metrics(logits, y, np.zeros(6, bool))
    assert np.isnan(m["logit_norm_bc"]) and np.isfinite(m["logit_norm_ba"])


@pytest.mark.parametrize(
    "logits, y",
    [(np.zeros(4), [0]), (np.zeros((2, 1)), [0, 0]), (np.zeros((2, 3)), [0, 3]), (np.zeros((2, 3)), [0])],
)
def test_bad_input(logits, y):
    with pytest.raises(ProbeInputError):
        margins(logits, y)


def test_param_norms_excludes_batchnorm_statistics():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    model.train()
    model(torch.randn(16, 5))  # moves the running statistics away from their defaults
    state = model.state_dict()
    out = param_norms(state)
    params = dict(model.named_parameters())
    expected_total = torch.sqrt(sum((p.detach().double() ** 2).sum() for p in params.values()))
    assert out["param_norm"] == pytest.approx(float(expected_total))
    assert {k for k in out if k != "param_norm"} == {f"param_norm/{name}" for name in params}
    for name, p in params.items():
        assert out[f"param_norm/{name}"] == pytest.approx(float(torch.linalg.vector_norm(p.detach().double())))
    # numpy arrays work the same
    assert param_norms({k: v.numpy() for k, v in state.items()}) == pytest.approx(out)


def test_param_norms_rejects_non_mapping():
    with pytest.raises(ProbeInputError):
        param_norms([torch.zeros(3)])


def test_logits_epoch_on_tiny_run(tiny_parity_run):
    run = probe.open_run(tiny_parity_run)
    out = logits_epoch(AnalysisContext(run), 2)
    assert set(out) == {*run.splits, "model"}
    rec = run.records("test", 2)
    assert out["test"] == pytest.approx(logit_metrics(rec.logits, rec.y, rec.is_bc), nan_ok=True)
    model = run.model(2)
    total = torch.sqrt(sum((p.detach().double() ** 2).sum() for p in model.parameters()))
    assert out["model"]["param_norm"] == pytest.approx(float(total))
