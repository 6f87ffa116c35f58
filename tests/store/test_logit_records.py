"""Top-k logit summaries (``record_logits topk:K``) and float16 logits: the record-level metrics of a 100-class run
recorded with ``topk:5`` equal those of the same run recorded in full."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import probe
from probe.data.base import Split, SpuriousDataset
from probe.errors import ProbeInputError
from probe.store.logit_records import (
    bytes_per_sample,
    encode_logits,
    full_logits_subset,
    parse_record_logits,
    summarize_logits,
)
from probe.train import TrainConfig, train

NUM_CLASSES = 100


def hundred_classes(seed: int = 0, n_train: int = 600, n_test: int = 300) -> SpuriousDataset:
    """100 Gaussian classes in 16 dimensions and a spurious bit (feature 16) that agrees with ``y % 2`` for 90% of the
    training samples and half of the test samples; BC iff ``a != y % 2``."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(NUM_CLASSES, 16, generator=g)
    splits, offset = {}, 0
    for name, n, rho in (("train", n_train, 0.9), ("test", n_test, 0.5)):
        y = torch.randint(0, NUM_CLASSES, (n,), generator=g)
        aligned = torch.rand(n, generator=g) < rho
        a = torch.where(aligned, y % 2, 1 - y % 2)
        x = torch.cat([means[y] + 0.7 * torch.randn(n, 16, generator=g), (2.0 * a - 1).float()[:, None]], dim=1)
        splits[name] = Split(name=name, x=x, y=y, a=a, is_bc=a != y % 2, index=torch.arange(n) + offset, num_attrs=2)
        offset += 1_000_000
    return SpuriousDataset(name="hundred-classes", num_classes=NUM_CLASSES, num_attrs=2, input_shape=(17,),
                           splits=splits, bc_rule="label_space", source="generated for the tests",
                           options=dict(seed=seed, n_train=n_train, n_test=n_test))


def run_of(cfg: TrainConfig, out) -> probe.Run:
    """Train ``cfg`` on :func:`hundred_classes` (given as a dataset object: nothing is registered)."""
    return probe.open_run(train(cfg, out, dataset=hundred_classes(**cfg.dataset_options)).run_dir)


def config(**overrides) -> TrainConfig:
    base = dict(dataset="hundred-classes", model="mlp", model_options={"width": 64}, lr=0.5, epochs=6,
                batch_size=50, device="cpu", seed=3)
    return TrainConfig(**{**base, **overrides})


@pytest.fixture(scope="module")
def full_and_topk(tmp_path_factory):
    root = tmp_path_factory.mktemp("topk")
    return (run_of(config(), root / "full"), run_of(config(record_logits="topk:5"), root / "topk"),
            run_of(config(logits_dtype="float16"), root / "half"))


#: the record-level analyses whose every metric the summary must reproduce.
RECORD_LEVEL = ["groups", "logits", "losses", "proposition"]


def test_topk_metrics_equal_the_full_logits_metrics(full_and_topk, tmp_path):
    full, topk, _ = full_and_topk
    assert np.array_equal(full.records("train", 6).loss, topk.records("train", 6).loss)  # the same training
    rec = topk.records("test", 6)
    assert rec.logits is None and rec.summary.k == 5 and rec.summary.num_classes == NUM_CLASSES
    tables = [probe.analyze(run.path, out=tmp_path / run.name, analyses=RECORD_LEVEL, model_epochs="none",
                            use_cache=False, progress=False).epochs for run in (full, topk)]
    a, b = (t.sort_values(["epoch", "split", "metric"]).reset_index(drop=True) for t in tables)
    assert list(a["metric"]) == list(b["metric"]) and list(a["split"]) == list(b["split"])
    metrics = set(a["metric"])
    for wanted in ("acc", "mean_group_acc", "wga", "acc_bc", "margin_mean", "margin_median", "margin_min_ba",
                   "max_softmax_mean", "logit_norm", "logit_norm_bc", "cmr@0.5", "cmr@0.9", "bc_loss_share",
                   "bc_ba_loss_ratio", "min_ba_margin", "turning_alpha"):
        assert any(m == wanted or m.startswith(wanted) for m in metrics), wanted
    np.testing.assert_allclose(a["value"].to_numpy(float), b["value"].to_numpy(float), rtol=1e-5, atol=1e-6,
                               equal_nan=True)
    confident = a[(a["metric"] == "cmr@0.5") & (a["value"] > 0)]
    assert len(confident), "the run should have confidently mispredicted BC samples for cmr to be tested"


def test_summary_against_numpy_on_known_logits():
    z = torch.tensor([[1.0, 3.0, 2.0, 3.0], [0.5, -1.0, 0.0, 4.0], [2.0, 1.0, 0.0, -1.0]])
    y = torch.tensor([1, 2, 0])
    s = summarize_logits(z, y, 2)
    zz = z.double().numpy()
    assert s.pred.tolist() == zz.argmax(axis=1).tolist() == [1, 3, 0]  # a tie goes to the lower class, as numpy
    assert np.allclose(s.margins(y.numpy()), [0.0, -4.0, 1.0])
    lse = np.log(np.exp(zz).sum(axis=1))
    assert np.allclose(s.max_softmax(), np.exp(zz.max(axis=1) - lse))
    assert np.allclose(s.norms(), np.linalg.norm(zz, axis=1))


def test_float16_logits_read_back_as_float32(full_and_topk):
    full, _, half = full_and_topk
    a, b = full.records("test", 6).logits, half.records("test", 6).logits
    assert b.dtype == np.float32
    np.testing.assert_allclose(b, a.astype(np.float16).astype(np.float32), rtol=0, atol=0)
    assert half.summary()["bytes_per_epoch"] < full.summary()["bytes_per_epoch"]


def test_the_subset_keeps_every_group_in_proportion():
    group = np.repeat([0, 1, 2, 3], [900, 90, 9, 1])
    positions = full_logits_subset(group, 100)
    counts = np.bincount(group[positions], minlength=4)
    assert counts.tolist() == [90, 9, 1, 1] and np.all(np.diff(positions) > 0)
    assert full_logits_subset(group, 5000).tolist() == list(range(1000))


def test_a_topk_run_with_a_small_subset_runs_the_proposition_on_it(tmp_path):
    run = run_of(config(record_logits="topk:3", full_logits_subset=64, epochs=2), tmp_path / "run")
    rec = run.records("train", 2)
    sub = rec.with_full_logits()
    assert len(sub) < len(rec) and sub.logits.shape == (len(sub), NUM_CLASSES)
    assert np.array_equal(sub.index, rec.index[rec.full_positions])
    z = torch.from_numpy(sub.logits).double()
    assert np.allclose(torch.logsumexp(z, 1).numpy() - z[torch.arange(len(sub)), sub.y].numpy(), sub.loss,
                       atol=1e-4)  # the subset's logits are the samples' own
    table = probe.analyze(run.path, out=tmp_path / "analysis", analyses=["proposition"], model_epochs="none",
                          use_cache=False, progress=False).epochs
    assert len(table) and (table["split"] == "train").all()
    with pytest.raises(ProbeInputError, match="top-k"):
        run.dynamics("train").logits  # noqa: B018


def test_encoded_bytes_per_sample():
    logits, y = torch.randn(10, 1000), torch.randint(0, 1000, (10,))
    fields = encode_logits(logits, y, np.zeros(10, np.int64), topk=5, dtype="float32", subset=False)
    assert sum(v.nbytes for v in fields.values()) == 10 * bytes_per_sample(1000, topk=5) == 10 * 52
    assert bytes_per_sample(1000, topk=None) == 4000 and bytes_per_sample(1000, topk=None, dtype="float16") == 2000


@pytest.mark.parametrize("spec", ["topk:1", "topk", "top:5", "topk:-2", "all"])
def test_bad_record_logits_is_a_one_line_error(spec):
    with pytest.raises(ProbeInputError, match="record_logits"):
        parse_record_logits(spec)
    with pytest.raises(ProbeInputError):
        config(record_logits=spec).validate()


@pytest.mark.parametrize("field, value, match", [("logits_dtype", "float64", "logits dtype"),
                                                  ("full_logits_subset", 0, "full_logits_subset"),
                                                  ("keep_weights", "every:0", "keep_weights"),
                                                  ("keep_weights", "some", "keep_weights")])
def test_bad_storage_options_are_refused(field, value, match):
    with pytest.raises(ProbeInputError, match=match):
        config(**{field: value}).validate()
