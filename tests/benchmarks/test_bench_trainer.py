"""benchmarks/bench_trainer.py: its hand-written loops train what the probe trainer trains, and the fair loop keeps
what it says it keeps."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

import probe
from probe.data import build_dataset
from probe.train import TrainConfig, train

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_trainer.py"
DATA_OPTIONS = {"n_train": 200, "n_val": 64, "n_test": 64, "dim": 12}


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_trainer", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bare_and_fair_loops_train_the_trainers_weights(tmp_path):
    bench = load_bench()
    dataset = build_dataset("parity", **DATA_OPTIONS)
    cfg = TrainConfig(dataset="parity", dataset_options=DATA_OPTIONS, model="mlp", lr=0.1, epochs=3, batch_size=32,
                      seed=4)
    train(cfg, tmp_path / "run", dataset=dataset)
    expected = probe.open_run(tmp_path / "run").state_dict(3)

    _, bare = bench.hand_loop(dataset, "mlp", 3, 32, 0.1, 4)
    (tmp_path / "fair").mkdir()
    _, fair = bench.hand_loop(dataset, "mlp", 3, 32, 0.1, 4, record=[0, 1, 2, 3], out=tmp_path / "fair")
    for model in (bare, fair):
        got = model.state_dict()
        assert set(got) == set(expected)
        for k in expected:  # same initial weights and batches; only the loss's reduction order may differ
            torch.testing.assert_close(got[k], torch.as_tensor(expected[k]), rtol=1e-5, atol=1e-6)
    # a different seed gives other weights, so the comparison above can fail
    _, other = bench.hand_loop(dataset, "mlp", 3, 32, 0.1, 5)
    assert not torch.allclose(other.state_dict()["head.weight"], bare.state_dict()["head.weight"])

    saved = sorted(p.name for p in (tmp_path / "fair").glob("*.pt"))
    assert saved == [f"epoch_{e}.pt" for e in range(4)]
    last = torch.load(tmp_path / "fair" / "epoch_3.pt", weights_only=True)
    assert last["epoch"] == 3 and set(last) == {"epoch", "model", "optimizer"}
    for k, v in fair.state_dict().items():
        assert torch.equal(last["model"][k], v)


def test_cnn_loops_run_channels_last_like_the_trainer(tmp_path):
    bench = load_bench()
    dataset = build_dataset("colored-mnist", n_train=96, max_eval_digits=20)
    _, model = bench.hand_loop(dataset, "cnn", 1, 32, 0.1, 0)
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not conv.weight.is_contiguous()
