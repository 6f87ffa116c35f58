"""The sample counts reach metrics.json and the run table through analyze, like every other metric."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import probe
from probe.analyses.engine import analyze
from probe.analyses.probes import balanced_probe_split

MODEL_ANALYSES = ["groups", "probes", "geometry", "sparsity", "pruning"]


def test_counts_reach_metrics_json(tiny_parity_run, tmp_path):
    run = probe.open_run(tiny_parity_run)
    last = run.epochs[-1]
    test = run.dataset().split("test")
    sizes = np.bincount(test.group.numpy(), minlength=run.num_classes * run.num_attrs)
    m = int(np.sort(sizes[sizes > 0])[-1])  # only the largest test group(s) reach it: some used, some excluded
    result = analyze(tiny_parity_run, out=tmp_path / "an", epochs="last", model_epochs="last", progress=False,
                     analyses=MODEL_ANALYSES, use_cache=False,
                     options={"min_group_size": m, "dfr_retrains": 2, "prune_sparsities": [0, 0.9]})
    assert result.errors == []
    payload = json.loads((tmp_path / "an" / "metrics.json").read_text())
    at_last = payload["epochs"][run.name][str(last)]["metrics"]

    for split in run.splits:
        rec = run.records(split, last)
        got = at_last[split]
        groups = rec.y * run.num_attrs + rec.a
        counts = np.bincount(groups, minlength=len(sizes))
        assert (got["n"], got["n_ba"], got["n_bc"]) == (len(rec.y), int(np.sum(~rec.is_bc)), int(np.sum(rec.is_bc)))
        assert [got[f"n_group/{g}"] for g in range(len(sizes))] == counts.tolist()
        used = counts >= m
        assert got["wga_groups_used"] == int(used.sum())
        assert got["wga_groups_excluded"] == int(((counts > 0) & ~used).sum())
        if used.any():
            pred = rec.logits.argmax(axis=1)
            worst = min(np.mean(pred[groups == g] == rec.y[groups == g]) for g in np.flatnonzero(used))
            assert got["wga"] == pytest.approx(worst)
            assert got["wga_min_group_n"] == counts[used].min()
        else:  # NaN is written as null
            assert got["wga"] is None and got["wga_min_group_n"] is None

    val = run.dataset().split("val")
    _, score_idx = balanced_probe_split(val.y.numpy(), val.a.numpy(), 0)
    assert at_last["val"]["n_probe_eval"] == len(score_idx)
    assert at_last["test"]["dfr_min_group_n"] == sizes.max()
    assert at_last["test"]["dfr_groups_excluded"] == int(((sizes > 0) & (sizes < m)).sum()) > 0
    assert 0 <= at_last["test"]["dfr_wga"] <= 1
    assert at_last["test"]["n_sparsity"] == at_last["test"]["n_pruning"] == len(test)
    assert 0 < at_last["test"]["n_features"] <= len(test)
    # the run table's summary columns carry them too
    row = result.runs.iloc[0]
    assert row["final:test/n"] == len(test) and row["final:test/n_pruning"] == len(test)
    assert math.isfinite(row["final:test/wga_groups_used"])
