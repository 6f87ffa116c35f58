"""A training split streamed from disk by worker processes forks them at the start of each data pass; the commit
thread then writes HDF5 files. A fork while that thread holds a lock (h5py's, logging's) hangs the trainer forever,
so every pass's loader must start with no commit in flight."""

from __future__ import annotations

import time

import pytest

from probe.cli import main
from probe.data import base as data_base
from probe.store.writer import RunWriter
from probe.train import trainer as trainer_module
from tests.data.probe_data_fixtures import write_waterbirds


@pytest.mark.slow(seconds=15)
def test_worker_loaders_start_only_while_no_commit_is_in_flight(tmp_path, monkeypatch):
    write_waterbirds(tmp_path / "data", segmentations=False)
    committers, starts = [], []
    real_init = trainer_module.BackgroundCommitter.__init__

    def init(self, writer):
        real_init(self, writer)
        committers.append(self)

    real_batches = data_base.Split.batches

    def batches(self, batch_size, *args, num_workers=0, **kwargs):
        if not self.in_memory and num_workers > 0 and committers:
            pending = committers[-1]._pending
            starts.append(pending is None or pending.done())
        return real_batches(self, batch_size, *args, num_workers=num_workers, **kwargs)

    real_commit = RunWriter.commit_epoch

    def slow_commit(self, *args, **kwargs):  # a commit still writing when the next pass would start
        time.sleep(0.3)
        return real_commit(self, *args, **kwargs)

    monkeypatch.setattr(RunWriter, "commit_epoch", slow_commit)
    monkeypatch.setattr(trainer_module.BackgroundCommitter, "__init__", init)
    monkeypatch.setattr(data_base.Split, "batches", batches)
    out = tmp_path / "run"
    assert main(["train", "--dataset", "waterbirds", "--data-root", str(tmp_path / "data"), "--image-size", "8",
                 "--model", "mlp", "--model-option", "width=8", "--lr", "0.1", "--epochs", "3", "--batch-size", "4",
                 "--workers", "1", "--quiet", "--out", str(out)]) == 0
    assert len(starts) >= 3 and all(starts)  # the training loader of each pass (and the serial evaluations)
