"""The rolling resume file and the weights schedule (schema 2): epoch files hold weights and records only, resume reads
the optimizer and RNG states from one resume file, ``keep_weights`` thins the weights, and runs of schema 1 stay
readable and resumable."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

import probe
from probe.models import build_model
from probe.store.atomic import sha256_file
from probe.store.epoch_file import EpochPayload, ResumePayload, epoch_file_image, resume_file_image
from probe.store.writer import RunWriter
from probe.train import train
from tests.conftest import tiny_parity_config


def momentum_config(**overrides):
    return tiny_parity_config(momentum=0.9, epochs=5, **overrides)


def fail_after_commit(monkeypatch, epoch: int) -> None:
    """Make the writer raise right after committing ``epoch`` (as a full disk would on the next write)."""
    commit = RunWriter.commit_epoch

    def commit_then_fail(self, payload, resume=None):
        entry = commit(self, payload, resume)
        if payload.epoch == epoch:
            raise OSError("injected: the disk went away")
        return entry

    monkeypatch.setattr(RunWriter, "commit_epoch", commit_then_fail)


def assert_same_run(a: probe.Run, b: probe.Run) -> None:
    assert a.epochs == b.epochs and a.weight_epochs == b.weight_epochs
    for epoch in a.epochs:
        for split in a.splits:
            ra, rb = a.records(split, epoch), b.records(split, epoch)
            assert np.array_equal(ra.logits, rb.logits) and np.array_equal(ra.loss, rb.loss), (epoch, split)
        assert np.array_equal(a.sgd_records(epoch).loss, b.sgd_records(epoch).loss)
    for epoch in a.weight_epochs:
        sa, sb = a.state_dict(epoch), b.state_dict(epoch)
        assert all(torch.equal(sa[k], sb[k]) for k in sa), epoch


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "run"
    return probe.open_run(train(momentum_config(keep_weights="every:2"), out).run_dir)


def test_epoch_files_hold_weights_and_records_and_one_resume_file_the_rest(reference):
    run = reference
    assert run.epochs == [0, 1, 2, 3, 4, 5] and run.weight_epochs == [0, 2, 4, 5]
    for epoch in run.epochs:
        with h5py.File(run.epoch_path(epoch), "r") as f:
            assert set(f) <= {"model", "records", "sgd"} and ("model" in f) == (epoch in run.weight_epochs)
    manifest = run.manifest
    assert manifest["schema_version"] == "2.0" and manifest["resume"]["epoch"] == 5
    assert sorted(p.name for p in run.path.glob("resume_*")) == ["resume_00005.h5"]
    resume_file = run.path / "resume_00005.h5"
    assert sha256_file(resume_file) == manifest["resume"]["sha256"]
    with h5py.File(resume_file, "r") as f:
        assert set(f) == {"optimizer", "rng"}  # epoch 5 keeps its weights in its own file
    state = run.resume_state()
    momentum = state.optimizer_state["state"]
    assert momentum and all("momentum_buffer" in v for v in momentum.values())
    with pytest.raises(probe.errors.ProbeInputError, match=r"epoch 3 keeps no weights.*0, 2, 4, 5"):
        run.state_dict(3)
    assert run.model() is not None and run.summary()["epochs_with_weights"] == 4


def test_resume_when_the_last_epoch_and_earlier_ones_hold_no_optimizer_state(reference, tmp_path, monkeypatch):
    """Interrupted after epoch 3, whose file keeps no weights: the resume file holds them with the optimizer's
    momentum, and the resumed run equals the uninterrupted one."""
    out = tmp_path / "run"
    fail_after_commit(monkeypatch, 3)
    with pytest.raises(OSError, match="injected"):
        train(momentum_config(keep_weights="every:2"), out)
    monkeypatch.undo()
    stopped = probe.open_run(out)
    assert stopped.epochs == [0, 1, 2, 3] and stopped.status == "failed"
    with h5py.File(out / "resume_00003.h5", "r") as f:
        assert set(f) == {"model", "optimizer", "rng"}
    train(None, out, resume=True)
    resumed = probe.open_run(out)
    assert resumed.status == "complete" and sorted(p.name for p in out.glob("resume_*")) == ["resume_00005.h5"]
    assert_same_run(resumed, reference)
    final_a, final_b = resumed.resume_state(), reference.resume_state()
    for pid, entry in final_a.optimizer_state["state"].items():
        assert torch.equal(entry["momentum_buffer"], final_b.optimizer_state["state"][pid]["momentum_buffer"])


def downgrade_to_schema_1(run_dir) -> None:
    """Rewrite a run as probe wrote it with schema 1: every epoch file with the model, the optimizer and RNG states
    (taken from the resume file; only the last epoch's are ever read), no resume file."""
    run = probe.open_run(run_dir)
    state = run.resume_state()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    for entry in manifest["epochs"]:
        path = run_dir / entry["file"]
        with h5py.File(run_dir / manifest["resume"]["file"], "r") as src, h5py.File(path, "r+") as f:
            f.attrs["schema_version"] = "1.0"
            for group in ("optimizer", "rng"):
                src.copy(src[group], f, group)
            assert "model" in f or entry["epoch"] == state.epoch
            if "model" not in f:
                g = f.create_group("model")
                for name, tensor in state.model_state.items():
                    g.create_dataset(name, data=tensor.numpy())
        entry.pop("weights", None)
        entry["size"], entry["sha256"] = path.stat().st_size, sha256_file(path)
    (run_dir / manifest.pop("resume")["file"]).unlink()
    manifest["schema_version"] = "1.0"
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    info = json.loads((run_dir / "run.json").read_text())
    info["schema_version"] = "1.0"
    for key in ("keep_weights", "record_logits", "logits_dtype", "full_logits_subset"):
        info["config"].pop(key)
    (run_dir / "run.json").write_text(json.dumps(info))


def test_a_schema_1_run_is_read_and_resumed_into_schema_2(tmp_path, monkeypatch):
    reference = probe.open_run(train(momentum_config(), tmp_path / "reference").run_dir)
    out = tmp_path / "run"
    fail_after_commit(monkeypatch, 2)
    with pytest.raises(OSError):
        train(momentum_config(), out)
    monkeypatch.undo()
    downgrade_to_schema_1(out)
    old = probe.open_run(out)
    assert old.weight_epochs == [0, 1, 2] and old.resume_state().epoch == 2
    assert probe.store.verify_run(out).ok
    train(None, out, resume=True)
    resumed = probe.open_run(out)
    assert resumed.status == "complete" and resumed.manifest["schema_version"] == "2.0"
    assert resumed.info_json["schema_version"] == "2.0"
    with h5py.File(out / "epoch_00001.h5", "r") as f:  # the old files stay as they were
        assert f.attrs["schema_version"] == "1.0" and "optimizer" in f
    assert_same_run(resumed, reference)
    assert probe.store.verify_run(out).ok


@pytest.mark.parametrize("keep, expected", [("all", [0, 1, 2, 3, 4, 5]), ("every:3", [0, 3, 5]),
                                            ("log:2", [0, 1, 5]), ("none", [])])
def test_keep_weights_schedules(tmp_path, keep, expected):
    run = probe.open_run(train(tiny_parity_config(keep_weights=keep, epochs=5), tmp_path / "run").run_dir)
    assert run.weight_epochs == expected
    if not expected:
        with pytest.raises(probe.errors.ProbeInputError, match="no committed epoch keeps weights"):
            run.model()


def test_resnet50_epoch_file_is_its_weights_plus_records():
    """Bytes of a ResNet-50 epoch file <= 1.05 x (float32 weights + records)."""
    model = build_model("resnet50", (3, 224, 224), 2)
    state = {k: v.float() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    n = 4795  # Waterbirds' training split
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, n)
    records = {"train": {"index": np.arange(n), "y": y, "a": y, "group": 3 * y, "is_bc": np.zeros(n, bool),
                         "logits": rng.normal(size=(n, 2)).astype(np.float32),
                         "loss": rng.random(n).astype(np.float32)}}
    image = epoch_file_image(EpochPayload(epoch=1, global_step=10, lr=0.1, model_state=state, records=records))
    payload_bytes = sum(v.numel() * v.element_size() for v in state.values())
    payload_bytes += sum(arr.nbytes for fields in records.values() for arr in fields.values())
    assert len(image) <= 1.05 * payload_bytes
    sgd = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    resume = resume_file_image(ResumePayload(epoch=1, global_step=10, optimizer_state=sgd.state_dict(),
                                             rng_states={"shuffle": torch.Generator().get_state(),
                                                         "torch_cpu": torch.get_rng_state()}))
    assert len(resume) < 100_000  # no momentum yet, no weights: the resume file is small
