"""Records inside a data pass (``record_steps``): validation, what is committed where, and bit-identical resume from
a record inside a pass."""

from __future__ import annotations

import numpy as np
import pytest

import probe
from probe.cli import main
from probe.errors import ProbeInputError
from probe.store.writer import RunWriter
from probe.train import TrainConfig, train
from tests.conftest import PARITY_ARGS as PARITY
from tests.conftest import tiny_parity_config
from tests.store.test_commit_and_crash import assert_runs_identical


def cfg(**kw):
    return TrainConfig(dataset="parity", model="mlp", lr=0.1, **{"steps": 20, **kw})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (dict(record_steps=(0, 5)), "record_steps must be >= 1"),
        (dict(record_steps=(5, 5)), "strictly increasing"),
        (dict(record_steps=(9, 5)), "strictly increasing"),
        (dict(record_steps=(5, 21)), r"must lie in \[1, 20\]"),
        (dict(record_steps=(2.5,)), "integer steps"),
        (dict(record_steps=(True,)), "integer steps"),
        (dict(distance_budget=0.0), "distance_budget"),
        (dict(distance_budget=float("inf")), "distance_budget"),
        (dict(early_fractions=(0.1, 0.01)), "strictly increasing"),
        (dict(early_fractions=(0.0, 0.1)), r"fractions in \(0, 1\]"),
        (dict(early_fractions=(0.5, 1.5)), r"fractions in \(0, 1\]"),
    ],
)
def test_bad_record_steps_and_budget_fields_are_refused(fields, message):
    with pytest.raises(ProbeInputError, match=message):
        cfg(**fields).validate()


def test_good_fields_validate_and_round_trip_through_json():
    good = cfg(record_steps=(1, 5, 20), distance_budget=2.0, early_fractions=(0.01, 0.5))
    assert TrainConfig.from_json(good.validate().to_json()) == good


def test_record_steps_beyond_an_epoch_counted_run_are_refused_before_writing(tmp_path):
    # 256 samples, batch 32: 8 steps per pass, 3 passes = 24 steps
    with pytest.raises(ProbeInputError, match=r"\[1, 24\]"):
        train(tiny_parity_config(record_steps=(5, 25)), tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("steps", "message"),
    [("5,x", "--record-steps must be comma-separated"), ("0,5", "record_steps must be >= 1"),
     ("5,100", r"must lie in [1, 4]")],
)
def test_cli_refuses_bad_record_steps_on_one_line(tmp_path, capsys, steps, message):
    out = tmp_path / "run"  # 128 samples, batch 64: 2 steps per pass, 2 passes
    assert main(["train", *PARITY, "--lr", "0.1", "--epochs", "2", "--record-steps", steps,
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("probe: error:") and message in err and "\n" not in err
    assert not out.exists()


@pytest.fixture(scope="module")
def plain_and_pointed(tmp_path_factory):
    """The same run without and with records inside passes (8 steps per pass, 3 passes)."""
    root = tmp_path_factory.mktemp("points")
    train(tiny_parity_config(), root / "plain")
    train(tiny_parity_config(record_steps=(5, 13, 16)), root / "pointed")
    return probe.open_run(root / "plain"), probe.open_run(root / "pointed")


def test_records_inside_passes_are_numbered_points_with_their_pass(plain_and_pointed):
    plain, pointed = plain_and_pointed
    assert plain.epochs == [0, 1, 2, 3] and [plain.data_pass_of(e) for e in plain.epochs] == [
        (0, True), (1, True), (2, True), (3, True)]
    assert [pointed.step_of(e) for e in pointed.epochs] == [0, 5, 8, 13, 16, 24]
    assert [pointed.data_pass_of(e) for e in pointed.epochs] == [
        (0, True), (1, False), (1, True), (2, False), (2, True), (3, True)]  # step 16 ends pass 2: one record
    assert pointed.info_json["plan"] == {"steps_per_pass": 8, "passes": 3, "total_steps": 24, "final_epoch": 5,
                                         "distance_budget": pytest.approx(0.1 * 24),
                                         "early_fractions": [0.01, 0.03, 0.1]}
    assert pointed.planned_steps == 24 and pointed.distance_budget == pytest.approx(2.4)
    # each record's /sgd holds the minibatches of its pass since the previous record: steps are 0-based
    sgd_steps = [sorted(set(pointed.sgd_records(e).step.tolist())) for e in pointed.epochs[1:]]
    assert sgd_steps == [[0, 1, 2, 3, 4], [5, 6, 7], [8, 9, 10, 11, 12], [13, 14, 15], list(range(16, 24))]


def test_records_inside_passes_leave_training_unchanged(plain_and_pointed):
    """Committing inside a pass changes nothing of training: the pass ends equal the plain run's, and the /sgd
    records of a pass, joined over its records, are the plain run's."""
    plain, pointed = plain_and_pointed
    for pass_epoch, point_epochs in ((1, [1, 2]), (2, [3, 4]), (3, [5])):
        end = point_epochs[-1]
        for name, tensor in plain.state_dict(pass_epoch).items():
            assert np.array_equal(tensor.numpy(), pointed.state_dict(end)[name].numpy()), (pass_epoch, name)
        assert np.array_equal(plain.records("test", pass_epoch).logits, pointed.records("test", end).logits)
        joined = np.concatenate([pointed.sgd_records(e).loss for e in point_epochs])
        assert np.array_equal(plain.sgd_records(pass_epoch).loss, joined)


def test_resume_from_a_record_inside_a_pass_is_bit_identical(plain_and_pointed, tmp_path, monkeypatch):
    """The writer fails right after committing the record at step 13 (inside pass 2); resuming from it regenerates
    the pass's permutation, skips its 5 batches done and ends identical to the uninterrupted run."""
    _, reference = plain_and_pointed
    out = tmp_path / "run"
    commit = RunWriter.commit_epoch

    def commit_then_fail(self, payload, resume=None):
        entry = commit(self, payload, resume)
        if payload.global_step == 13:
            raise OSError("injected: the disk went away")
        return entry

    monkeypatch.setattr(RunWriter, "commit_epoch", commit_then_fail)
    with pytest.raises(OSError, match="injected"):
        train(tiny_parity_config(record_steps=(5, 13, 16)), out)
    monkeypatch.setattr(RunWriter, "commit_epoch", commit)
    stopped = probe.open_run(out)
    assert stopped.status == "failed" and stopped.epochs == [0, 1, 2, 3]
    assert stopped.data_pass_of(3) == (2, False) and stopped.step_of(3) == 13
    assert "shuffle_pass_start" in stopped.resume_state().rng
    train(None, out, resume=True)
    resumed = probe.open_run(out)
    assert resumed.status == "complete"
    assert_runs_identical(resumed, reference)
    for e in reference.epochs:
        assert np.array_equal(resumed.sgd_records(e).step, reference.sgd_records(e).step)
        assert resumed.data_pass_of(e) == reference.data_pass_of(e)
