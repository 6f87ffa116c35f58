"""The trainer: divergence, training length, recording schedules and splits, optimiser state on resume."""

from __future__ import annotations

import json

import pytest

import probe
from probe.cli import main
from probe.train import EXIT_DIVERGED
from tests.conftest import PARITY_ARGS as PARITY


def test_train_exits_with_its_own_code_on_divergence(tmp_path):
    out = tmp_path / "run"
    assert main(["train", *PARITY, "--lr", "1e12", "--epochs", "2", "--out", str(out)]) == EXIT_DIVERGED
    assert json.loads((out / "diverged.json").read_text())["epoch"] >= 1

def test_training_length_in_steps_ends_inside_an_epoch(tmp_path):
    out = tmp_path / "run"
    assert main(["train", *PARITY, "--lr", "0.1", "--steps", "10", "--batch-size", "32", "--out", str(out)]) == 0
    run = probe.open_run(out)
    assert run.epochs == [0, 1, 2, 3] and run.step_of(3) == 10  # 4 steps per epoch, the last epoch has 2

def test_record_schedule_every_k_keeps_the_last_epoch(tmp_path):
    out = tmp_path / "run"
    assert main(["train", *PARITY, "--lr", "0.1", "--epochs", "7", "--record", "every:3", "--out", str(out)]) == 0
    assert probe.open_run(out).epochs == [0, 3, 6, 7]

def test_record_splits_and_no_sgd_logits_shrink_the_epoch_files(tmp_path):
    full, lean = tmp_path / "full", tmp_path / "lean"
    assert main(["train", *PARITY, "--lr", "0.1", "--epochs", "2", "--out", str(full)]) == 0
    assert main(["train", *PARITY, "--lr", "0.1", "--epochs", "2", "--record-splits", "test",
                 "--no-sgd-logits", "--out", str(lean)]) == 0
    a, b = probe.open_run(full), probe.open_run(lean)
    assert b.splits == ["test"]
    with pytest.raises(probe.errors.ProbeInputError, match="not recorded"):
        b.records("train", 1)
    assert b.sgd_records(1).logits.shape == (128, 0)
    import numpy as np

    assert np.array_equal(a.sgd_records(1).loss, b.sgd_records(1).loss)  # training itself is unchanged
    assert np.array_equal(a.records("test", 2).logits, b.records("test", 2).logits)
    assert b.summary()["bytes"] < a.summary()["bytes"]

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
