"""Epoch commits survive SIGKILL at every phase; resume after a crash is bit-identical to an uninterrupted run."""

from __future__ import annotations

import signal

import numpy as np
import pytest

import probe
from probe.store.writer import FAULT_ENV
from tests.conftest import run_cli

PARITY_ARGS = ["train", "--dataset", "parity", "--data-option", "n_train=256", "--data-option", "n_val=64",
               "--data-option", "n_test=64", "--data-option", "dim=12", "--model", "mlp", "--model-option",
               "width=32", "--lr", "0.1", "--momentum", "0.9", "--batch-size", "32", "--epochs", "4", "--quiet"]


def assert_runs_identical(a: probe.Run, b: probe.Run) -> None:
    assert a.epochs == b.epochs
    for epoch in a.epochs:
        for name, tensor in a.state_dict(epoch).items():
            assert np.array_equal(tensor.numpy(), b.state_dict(epoch)[name].numpy()), (epoch, name)
        for split in a.splits:
            ra, rb = a.records(split, epoch), b.records(split, epoch)
            assert np.array_equal(ra.logits, rb.logits) and np.array_equal(ra.loss, rb.loss), (epoch, split)
            assert np.array_equal(ra.index, rb.index)
        sa, sb = a.sgd_records(epoch), b.sgd_records(epoch)
        assert np.array_equal(sa.index, sb.index) and np.array_equal(sa.loss, sb.loss)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    res = run_cli(*PARITY_ARGS, "--out", str(out))
    assert res.returncode == 0, res.stderr
    return probe.open_run(out)


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["before-temp", "mid-write", "after-rename", "after-resume"])
def test_sigkill_during_commit_keeps_committed_epochs_and_resumes_bit_identically(tmp_path, phase, uninterrupted):
    out = tmp_path / "run"
    res = run_cli(*PARITY_ARGS, "--out", str(out), env={FAULT_ENV: f"{phase}:2"})
    assert res.returncode == -signal.SIGKILL
    run = probe.open_run(out)
    assert run.epochs == [0, 1]  # epoch 2 was never committed
    assert run.status == "interrupted"
    for epoch in run.epochs:  # every committed epoch is still readable and verified
        assert len(run.records("test", epoch)) == 64
    leftovers = sorted(p.name for p in out.iterdir() if p.name not in {"run.json", "manifest.json", ".lock"})
    if phase in ("after-rename", "after-resume"):
        assert "epoch_00002.h5" in leftovers  # published but not in the manifest: invisible to readers
    assert ("resume_00002.h5" in leftovers) == (phase == "after-resume")
    assert "resume_00001.h5" in leftovers and run.resume_state().epoch == 1  # the manifest's resume file
    res = run_cli("train", "--resume", "--out", str(out), "--quiet")
    assert res.returncode == 0, res.stderr
    resumed = probe.open_run(out)
    assert resumed.status == "complete"
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]
    assert sorted(p.name for p in out.glob("resume_*")) == ["resume_00004.h5"]  # one rolling resume file
    assert_runs_identical(resumed, uninterrupted)

