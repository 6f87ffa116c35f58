"""Learning-rate schedules and recorded epochs."""

from __future__ import annotations

import math

import pytest

from probe.errors import ProbeInputError
from probe.train import TrainConfig
from probe.train.schedule import lr_at, recorded_epochs


def cfg(**kw):
    return TrainConfig(dataset="parity", model="mlp", lr=1.0, epochs=1, **kw)


def test_constant_cosine_step_and_warmup():
    assert [lr_at(s, 10, cfg()) for s in (0, 5, 9)] == [1.0, 1.0, 1.0]
    cos = cfg(schedule="cosine")
    assert lr_at(0, 10, cos) == 1.0
    assert lr_at(5, 10, cos) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    step = cfg(schedule="step", milestones=(0.5,), gamma=0.1)
    assert lr_at(4, 10, step) == 1.0 and lr_at(5, 10, step) == pytest.approx(0.1)
    warm = cfg(warmup_steps=4)
    assert [lr_at(s, 10, warm) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]


def test_recorded_epochs():
    assert recorded_epochs(3, "all") == [0, 1, 2, 3]
    assert recorded_epochs(10, "every:4") == [0, 4, 8, 10]
    log = recorded_epochs(1000, "log:10")
    assert log[0] == 0 and log[-1] == 1000 and len(log) <= 11
    assert all(b / a > 1.5 for a, b in zip(log[1:], log[2:]))  # log-spaced
    with pytest.raises(ProbeInputError):
        recorded_epochs(10, "every:0")
