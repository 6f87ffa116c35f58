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


def test_config_validation_names_the_field():
    with pytest.raises(ProbeInputError, match="nesterov needs momentum"):
        cfg(nesterov=True).validate()
    with pytest.raises(ProbeInputError, match="exactly one of epochs or steps"):
        TrainConfig(dataset="parity", model="mlp", lr=0.1, epochs=2, steps=5).validate()
    with pytest.raises(ProbeInputError, match="unknown optimizer"):
        cfg(optimizer="lbfgs").validate()


def test_adamw_and_momentum_runs_resume_bit_identically(tmp_path):
    """Optimiser state (AdamW moments, SGD momentum buffers) is restored exactly on resume."""
    import numpy as np

    import probe
    from probe.train import train
    from tests.conftest import tiny_parity_config

    for opt in (dict(optimizer="adamw", lr=0.01), dict(momentum=0.9, nesterov=True, weight_decay=1e-3)):
        full, part = tmp_path / f"full_{opt.get('optimizer', 'sgd')}", tmp_path / f"part_{opt.get('optimizer', 'sgd')}"
        train(tiny_parity_config(epochs=4, **opt), full)
        train(tiny_parity_config(epochs=2, **opt), part)
        # extend the finished 2-epoch run to 4 epochs: same config except the length
        info = (part / "run.json").read_text().replace('"epochs": 2', '"epochs": 4')
        (part / "run.json").write_text(info)
        train(tiny_parity_config(epochs=4, **opt), part, resume=True)
        a, b = probe.open_run(full), probe.open_run(part)
        for e in a.epochs:
            for k, v in a.state_dict(e).items():
                assert np.array_equal(v.numpy(), b.state_dict(e)[k].numpy()), (opt, e, k)
