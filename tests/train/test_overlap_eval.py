"""Evaluating recorded splits on a copy of the weights while training goes on gives the same run as evaluating
between steps: the same records, minibatch records, weights and resume state, bit for bit (CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import probe
from probe.train.trainer import Trainer, overlap_evaluation
from tests.conftest import tiny_parity_config
from tests.store.test_resume_file import assert_same_run


def train_with(cfg, out, overlap: bool) -> probe.Run:
    trainer = Trainer(cfg, out, overlap_eval=overlap)
    trainer.fit()
    assert trainer.overlap_eval is overlap
    return probe.open_run(out)


@pytest.mark.parametrize("cfg", [
    tiny_parity_config(momentum=0.9, epochs=4, record_steps=(3, 13)),
    tiny_parity_config(dataset="colored-mnist", dataset_options={"n_train": 256}, model="cnn", model_options={},
                       epochs=2, keep_weights="every:2"),
], ids=["mlp-records-inside-passes", "cnn-channels-last"])
def test_overlapped_evaluation_gives_the_same_run(tmp_path, cfg):
    serial = train_with(cfg, tmp_path / "serial", overlap=False)
    overlapped = train_with(cfg, tmp_path / "overlapped", overlap=True)
    assert_same_run(overlapped, serial)
    a, b = serial.resume_state(), overlapped.resume_state()
    assert all(torch.equal(a.rng[k], b.rng[k]) for k in a.rng)
    assert all(torch.equal(a.model_state[k], b.model_state[k]) for k in a.model_state)
    for split in serial.splits:
        assert np.array_equal(serial.records(split, 0).logits, overlapped.records(split, 0).logits)


def test_overlap_is_chosen_where_evaluation_gets_cores_of_its_own(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    assert overlap_evaluation(torch.device("cpu"))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 5)
    assert not overlap_evaluation(torch.device("cpu"))
    assert overlap_evaluation(torch.device("cuda")) and not overlap_evaluation(torch.device("mps"))
