"""``probe export``: weights as safetensors (read back, and imported again to the same records), TensorBoard event
files read back with TensorBoard's own reader, an MLflow file store read back with MlflowClient; a missing extra is
one line, exit 2."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from probe.analyses.engine.engine import analyze
from probe.cli import main
from probe.store import open_run
from probe.train import TrainConfig
from probe.train.importer import import_checkpoints


def expected_scalars(run, metrics_json) -> dict[tuple[str, int], float]:
    """Every value the export must hold, computed here: finite analysis values from metrics.json, and the mean loss
    and accuracy of the stored records (and of the SGD minibatches) per epoch."""
    epochs = json.loads(metrics_json.read_text())["epochs"][run.name]
    out = {}
    for epoch, entry in epochs.items():
        for split, metrics in entry["metrics"].items():
            for metric, value in metrics.items():
                if value is not None and math.isfinite(value):
                    out[(f"{split}/{metric}", int(epoch))] = value
    for epoch in run.epochs:
        for split in run.splits:
            rec = run.records(split, epoch)
            out[(f"records/{split}/loss", epoch)] = float(np.mean(rec.loss, dtype=np.float64))
            out[(f"records/{split}/acc", epoch)] = float(np.mean(rec.logits.argmax(1) == rec.y))
        sgd = run.sgd_records(epoch)
        if len(sgd):
            out[("records/sgd/loss", epoch)] = float(np.mean(sgd.loss, dtype=np.float64))
    return out


@pytest.fixture(scope="module")
def analysed(tiny_parity_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("analysis")
    analyze(tiny_parity_run, out, analyses=["groups", "logits", "losses"], model_epochs="none", progress=False)
    return tiny_parity_run, out


def test_weights_export_reads_back_and_imports_to_the_same_records(tiny_parity_run, tmp_path):
    run = open_run(tiny_parity_run)
    out = tmp_path / "weights"
    assert main(["export", str(tiny_parity_run), "--weights", str(out)]) == 0
    files = sorted((out / run.name).iterdir())
    assert [f.name for f in files] == [f"epoch_{e:05d}.safetensors" for e in run.weight_epochs]
    for epoch, file in zip(run.weight_epochs, files):
        state = load_file(str(file))
        expected = run.state_dict(epoch)
        assert state.keys() == expected.keys()
        assert all(torch.equal(state[k], expected[k]) for k in state)
    assert main(["export", str(tiny_parity_run), "--weights", str(out)]) == 2  # files exist: refused

    again = tmp_path / "again"
    import_checkpoints(out / run.name, again, TrainConfig.from_json(run.config))
    reimported = open_run(again)
    assert reimported.epochs == run.epochs
    for epoch in run.epochs:
        assert reimported.step_of(epoch) == run.step_of(epoch)
        for split in run.splits:
            a, b = run.records(split, epoch), reimported.records(split, epoch)
            np.testing.assert_array_equal(a.index, b.index)
            np.testing.assert_allclose(a.logits, b.logits, rtol=1e-5, atol=1e-6)


def test_tensorboard_export_holds_every_scalar(analysed, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, analysis = analysed
    run = open_run(run_dir)
    out = tmp_path / "tb"
    assert main(["export", str(run_dir), "--to", "tensorboard", str(out), "--analysis", str(analysis),
                 "--quiet"]) == 0
    events = EventAccumulator(str(out / run.name), size_guidance={"scalars": 0})
    events.Reload()
    expected = expected_scalars(run, analysis / "metrics.json")
    assert ("records/sgd/loss", 1) in expected and ("train/wga", 3) in expected
    tags = set(events.Tags()["scalars"])
    assert tags == {tag for tag, _ in expected}
    for tag in tags:
        got = {e.step: e.value for e in events.Scalars(tag)}
        want = {epoch: value for (t, epoch), value in expected.items() if t == tag}
        assert got.keys() == want.keys(), tag
        for epoch, value in want.items():
            assert got[epoch] == pytest.approx(value, rel=1e-6, abs=1e-6), (tag, epoch)
    assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")


def test_mlflow_export_reads_back(analysed, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    from probe.store.export import mlflow_metric_name

    run_dir, analysis = analysed
    run = open_run(run_dir)
    out = tmp_path / "mlruns"
    assert main(["export", str(run_dir), "--to", "mlflow", str(out), "--analysis", str(analysis), "--quiet"]) == 0
    client = MlflowClient(tracking_uri=out.absolute().as_uri())
    experiment = client.get_experiment_by_name("probe")
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.info.run_name == run.name
    assert float(found.data.params["lr"]) == run.lr and found.data.params["dataset"] == "parity"
    assert found.data.params["dataset_options.n_train"] == str(run.config["dataset_options"]["n_train"])
    expected = expected_scalars(run, analysis / "metrics.json")
    names = {mlflow_metric_name(tag) for tag, _ in expected}
    assert set(found.data.metrics) == names
    assert mlflow_metric_name("train/cmr@0.9") == "train.cmr_at_0.9" and "train.cmr_at_0.9" in names
    for tag in ("train/wga", "test/acc", "records/train/loss", "records/sgd/loss", "model/param_norm"):
        history = {m.step: m.value for m in client.get_metric_history(found.info.run_id, mlflow_metric_name(tag))}
        want = {epoch: value for (t, epoch), value in expected.items() if t == tag}
        assert history.keys() == want.keys() and all(history[e] == pytest.approx(v) for e, v in want.items()), tag


def test_without_analysis_the_record_level_analyses_run_first(tiny_parity_run, tmp_path, monkeypatch, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.chdir(tmp_path)
    assert main(["export", str(tiny_parity_run), "--to", "tensorboard", "tb", "--quiet"]) == 0
    assert "running the record-level analyses" in capsys.readouterr().err
    metrics = tmp_path / "analyses" / tiny_parity_run.name / "metrics.json"
    assert metrics.is_file()
    events = EventAccumulator(str(tmp_path / "tb" / tiny_parity_run.name))
    events.Reload()
    assert {"train/wga", "train/margin_mean", "records/val/acc"} <= set(events.Tags()["scalars"])


def test_a_missing_extra_is_one_line_exit_2(tiny_parity_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow now raises ImportError
    out = tmp_path / "mlruns"
    assert main(["export", str(tiny_parity_run), "--to", "mlflow", str(out)]) == 2
    err = capsys.readouterr().err
    assert "probe[mlflow]" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    assert main(["export", str(tiny_parity_run)]) == 2
    assert main(["export", str(tiny_parity_run), "--to", "wandb", str(out)]) == 2
