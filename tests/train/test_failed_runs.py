"""A run that stops with an error after its directory exists is marked ``failed`` (with the error), an interrupted one
``interrupted``; neither is left ``running``. Both can be resumed or overwritten."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time

import pytest

import probe
from probe.cli import main
from probe.errors import DataFormatError
from tests.data.probe_data_fixtures import write_waterbirds


@pytest.fixture
def waterbirds_with_a_truncated_jpeg(tmp_path):
    """A Waterbirds release whose third training image is cut short (its header still reads)."""
    release = write_waterbirds(tmp_path / "data", segmentations=False)
    bad = release["folder"] / release["rows"][2][1]
    intact = bad.read_bytes()
    bad.write_bytes(intact[: len(intact) * 2 // 3])
    return tmp_path / "data", bad, intact


def waterbirds_args(root, out):
    return ["train", "--dataset", "waterbirds", "--data-root", str(root), "--image-size", "8", "--model", "mlp",
            "--model-option", "width=8", "--lr", "0.1", "--epochs", "1", "--batch-size", "4", "--workers", "0",
            "--quiet", "--out", str(out)]


def test_a_bad_image_met_during_training_marks_the_run_failed(waterbirds_with_a_truncated_jpeg, tmp_path, capsys):
    root, bad, intact = waterbirds_with_a_truncated_jpeg
    out = tmp_path / "run"
    assert main(waterbirds_args(root, out)) == 2
    err = capsys.readouterr().err
    assert err.startswith("probe: error:") and bad.name in err and err.count("\n") == 1
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "failed"
    assert info["error"].startswith("DataFormatError: ") and bad.name in info["error"] and "\n" not in info["error"]
    assert probe.open_run(out).status == "failed"
    assert main(["info", str(out)]) == 0
    assert "failed" in capsys.readouterr().out

    # the same command again says what happened and what to do
    before = sorted(p.name for p in out.iterdir())
    assert main(waterbirds_args(root, out)) == 2
    err = capsys.readouterr().err
    assert "its run failed (DataFormatError:" in err and "--resume" in err and "--overwrite" in err
    assert sorted(p.name for p in out.iterdir()) == before

    # once the image is repaired, both --resume and --overwrite finish the run
    bad.write_bytes(intact)
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    assert main([*waterbirds_args(root, out), "--resume"]) == 0
    assert main([*waterbirds_args(root, copy), "--overwrite"]) == 0
    for run in (probe.open_run(out), probe.open_run(copy)):
        assert run.status == "complete" and run.epochs == [0, 1] and "error" not in run.info_json


def test_the_python_api_marks_the_run_failed_before_the_error_propagates(waterbirds_with_a_truncated_jpeg, tmp_path):
    from probe.train import TrainConfig, train

    root, bad, _ = waterbirds_with_a_truncated_jpeg
    cfg = TrainConfig(dataset="waterbirds", dataset_options={"data_root": str(root), "image_size": 8}, model="mlp",
                      model_options={"width": 8}, lr=0.1, epochs=1, batch_size=4, workers=0)
    with pytest.raises(DataFormatError, match=bad.name):
        train(cfg, tmp_path / "run")
    run = probe.open_run(tmp_path / "run")
    assert run.status == "failed" and bad.name in run.info_json["error"]


@pytest.fixture
def one_torch_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_ctrl_c_marks_the_run_interrupted_and_resume_completes_it(tmp_path, capsys, one_torch_thread, monkeypatch):
    """A real SIGINT once epoch 0 is committed: ``run.json`` says ``interrupted`` (written, not inferred). The signal
    is sent mid-training, as the run reaches its next recorded epoch with epoch 0's file on disk (the commits are
    written in the background: a watcher of the file alone can see it only once the run has ended)."""
    from probe.train.trainer import Trainer

    out = tmp_path / "run"
    args = ["train", "--dataset", "parity", "--data-option", "n_train=1024", "--data-option", "n_val=64",
            "--data-option", "n_test=64", "--model-option", "width=16", "--lr", "0.05", "--epochs", "10",
            "--batch-size", "32", "--record", "every:5", "--quiet", "--out", str(out)]
    commit = Trainer._commit

    def press_ctrl_c_after_epoch_0(self, *args, epoch, **kwargs):
        if epoch > 0:
            deadline = time.monotonic() + 60
            while not (out / "epoch_00000.h5").exists() and time.monotonic() < deadline:
                time.sleep(0.005)
            os.kill(os.getpid(), signal.SIGINT)
        return commit(self, *args, epoch=epoch, **kwargs)

    monkeypatch.setattr(Trainer, "_commit", press_ctrl_c_after_epoch_0)
    # Python's own SIGINT handler, as in a terminal (a test worker may have inherited or been left SIGINT ignored)
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        assert main(args) == 130
    finally:
        signal.signal(signal.SIGINT, handler)
    monkeypatch.setattr(Trainer, "_commit", commit)
    assert "interrupted" in capsys.readouterr().err
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    assert probe.open_run(out).epochs[0] == 0
    assert main(["train", "--resume", "--out", str(out), "--epochs", "2"]) == 2  # would be ignored: refused
    assert "give none of: --epochs" in capsys.readouterr().err
    assert main(["train", "--resume", "--out", str(out), "--quiet", "--workers", "0"]) == 0
    run = probe.open_run(out)
    assert run.status == "complete" and run.epochs == [0, 5, 10]
