"""The reader API over a finished run and while a writer is training."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import probe
from probe.errors import RunDirectoryError, RunLockedError
from probe.store.lock import RunLock
from probe.train import train
from tests.conftest import REPO, tiny_parity_config


def test_run_api(tiny_parity_run):
    run = probe.open_run(tiny_parity_run)
    assert run.epochs == [0, 1, 2, 3]
    assert run.status == "complete" and run.diverged is None
    assert run.lr == 0.1 and run.num_classes == 2 and run.num_attrs == 2
    assert set(run.splits) == {"train", "val", "test"}
    dyn = run.dynamics("test")
    assert dyn.logits.shape == (4, 128, 2) and dyn.loss.shape == (4, 128)
    assert list(dyn.steps) == [0, 8, 16, 24]  # 256 samples / batch 32 = 8 steps per epoch
    rec = run.records("test", 3)
    assert np.array_equal(rec.group, rec.y * 2 + rec.a)
    assert np.array_equal(rec.is_bc, rec.a != rec.y)


def test_stored_records_match_a_fresh_forward_pass(tiny_parity_run):
    run = probe.open_run(tiny_parity_run)
    ds = run.dataset()
    model = run.model(2)
    with torch.no_grad():
        logits = model(ds.split("test").x)
        loss = F.cross_entropy(logits, ds.split("test").y, reduction="none")
    rec = run.records("test", 2)
    np.testing.assert_allclose(rec.logits, logits.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rec.loss, loss.numpy(), rtol=1e-5, atol=1e-6)


def test_sgd_records_are_the_losses_of_each_minibatch_before_its_step(tiny_parity_run):
    """The first minibatch of epoch 1 was seen by the epoch-0 model: its stored losses equal that model's CE."""
    run = probe.open_run(tiny_parity_run)
    sgd = run.sgd_records(1)
    assert len(sgd) == 256 and sorted(sgd.index.tolist()) == sorted(run.records("train", 0).index.tolist())
    first = sgd.step == 0
    ds = run.dataset()
    pos = {int(i): p for p, i in enumerate(ds.train.index.tolist())}
    rows = torch.tensor([pos[int(i)] for i in sgd.index[first]])
    with torch.no_grad():
        ce = F.cross_entropy(run.model(0)(ds.train.x[rows]), ds.train.y[rows], reduction="none")
    np.testing.assert_allclose(sgd.loss[first], ce.numpy(), rtol=1e-5, atol=1e-6)
    assert len(run.sgd_records(0)) == 0


def test_second_writer_is_refused(tiny_parity_run, tmp_path):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(tiny_parity_run, out)
    with RunLock(out):  # a writer is active
        with pytest.raises(RunLockedError, match="another process"):
            train(tiny_parity_config(), out, resume=True)
        with pytest.raises(RunDirectoryError, match="another process"):
            train(tiny_parity_config(), out, overwrite=True)
    assert probe.open_run(out).epochs == [0, 1, 2, 3]  # untouched


@pytest.mark.slow
def test_reader_in_another_process_sees_only_complete_epochs(tmp_path):
    out = tmp_path / "live"
    script = (
        "from probe.train import TrainConfig, train;"
        "train(TrainConfig(dataset='parity', dataset_options={'n_train': 1024, 'n_val': 256, 'n_test': 256},"
        " model='mlp', model_options={'width': 64}, lr=0.05, epochs=10, batch_size=32), %r)" % str(out)
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=dict(os.environ))
    seen: set[int] = set()
    reads = 0
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            done = proc.poll() is not None
            if (out / "manifest.json").exists():
                run = probe.open_run(out)
                for epoch in run.epochs:
                    rec = run.records("test", epoch)  # verified against the manifest: complete or an error
                    assert rec.logits.shape == (256, 2) and np.isfinite(rec.logits).all()
                    seen.add(epoch)
                    reads += 1
            if done:
                break
            time.sleep(0.05)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == 0
    assert seen == set(range(11))
    assert reads > 11  # it really read while training went on


def test_reading_epoch_verifies_once_and_reads_the_same_arrays(tiny_parity_run, monkeypatch):
    """Inside ``reading_epoch`` every read of that epoch comes from one verified open of its file; the arrays equal
    those of separate reads, and other epochs are still verified on each read."""
    import probe.store.reader as reader

    run = probe.open_run(tiny_parity_run)
    epoch, other = run.epochs[-1], run.epochs[0]
    alone = {s: run.records(s, epoch) for s in run.splits}
    calls = []
    verified = reader.read_verified
    monkeypatch.setattr(reader, "read_verified", lambda *a, **k: calls.append(a[0]) or verified(*a, **k))
    with run.reading_epoch(epoch):
        together = {s: run.records(s, epoch) for s in run.splits}
        state = run.state_dict(epoch)
        run.records(run.splits[0], other)
        run.records(run.splits[0], other)
    assert [p.name for p in calls].count(f"epoch_{epoch:05d}.h5") == 1
    assert [p.name for p in calls].count(f"epoch_{other:05d}.h5") == 2
    for split in run.splits:
        np.testing.assert_array_equal(together[split].logits, alone[split].logits)
        np.testing.assert_array_equal(together[split].y, alone[split].y)
    run.records(run.splits[0], epoch)  # after the block: verified again
    assert [p.name for p in calls].count(f"epoch_{epoch:05d}.h5") == 2
    assert set(state) == set(run.state_dict(epoch))
