"""metrics.json's per-epoch part against a plain loop; CSV tables rewritten only when their content changed."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from probe.analyses.engine.result import (
    EPOCH_COLUMNS,
    TABLE_DIGESTS,
    AnalysisResult,
    _per_epoch,
    frame_digest,
    write_tables,
)


def _epochs(rng: np.random.Generator, n: int = 400) -> pd.DataFrame:
    runs = rng.choice(["b/run1", "a/run0", "a/run2"], n)
    epoch = rng.integers(0, 5, n)
    frame = pd.DataFrame({"run": runs, "sweep": "s", "lr": 0.1, "seed": 0, "budget": "fixed", "epoch": epoch,
                          "step": epoch * 10, "analysis": "x", "split": rng.choice(["train", "test"], n),
                          "metric": rng.choice(["m1", "m2", "m3"], n), "value": rng.normal(size=n)})
    frame.loc[rng.choice(n, 20, replace=False), "value"] = np.nan
    frame.loc[rng.choice(n, 5, replace=False), "value"] = np.inf
    return frame[EPOCH_COLUMNS]


def _loop(epochs: pd.DataFrame) -> dict:
    """The per-epoch part as the groupby loop wrote it before."""
    out: dict = {}
    for (run, epoch, step), part in epochs.groupby(["run", "epoch", "step"], sort=True):
        nested: dict = {}
        for split, metric, value in zip(part["split"], part["metric"], part["value"]):
            nested.setdefault(split, {}).setdefault(metric, None if not math.isfinite(value) else float(value))
        out.setdefault(run, {})[str(epoch)] = {"step": int(step), "metrics": nested}
    return out


def test_per_epoch_equals_the_groupby_loop_key_order_included():
    epochs = _epochs(np.random.default_rng(0))
    fast, slow = _per_epoch(epochs), _loop(epochs)
    assert json.dumps(fast) == json.dumps(slow)  # same keys, values and order
    assert _per_epoch(epochs.iloc[:0]) == {}


def _result(out, epochs: pd.DataFrame) -> AnalysisResult:
    empty = pd.DataFrame()
    return AnalysisResult(out=out, epochs=epochs, runs=pd.DataFrame({"run": ["a/run0"], "status": ["ok"]}),
                          claims=empty, failures=empty, ratio_curves=empty)


def test_an_unchanged_table_is_not_rewritten_a_changed_or_altered_one_is(tmp_path):
    (tmp_path / "cache").mkdir()
    epochs = _epochs(np.random.default_rng(1))
    write_tables(_result(tmp_path, epochs))
    path = tmp_path / "epochs.csv"
    assert path.read_bytes() == epochs.to_csv(index=False).encode()
    stamp = path.stat().st_mtime_ns
    path.touch()  # a rewrite would change the time stamp back to "now"
    touched = path.stat().st_mtime_ns
    write_tables(_result(tmp_path, epochs.copy()))
    assert path.stat().st_mtime_ns == touched >= stamp
    recorded = json.loads((tmp_path / TABLE_DIGESTS).read_text())
    assert recorded["epochs.csv"]["frame"] == frame_digest(epochs)

    changed = epochs.copy()
    changed.loc[3, "value"] = -changed.loc[3, "value"]
    write_tables(_result(tmp_path, changed))
    assert path.read_bytes() == changed.to_csv(index=False).encode()

    path.write_bytes(path.read_bytes().replace(b"train", b"trian", 1))  # altered by hand: rewritten
    write_tables(_result(tmp_path, changed))
    assert path.read_bytes() == changed.to_csv(index=False).encode()


def test_the_frame_digest_sees_every_change_that_changes_the_csv():
    base = pd.DataFrame({"x": [0.0, 1.5], "s": ["a", None], "i": [1, 2]})
    variants = [
        base.assign(x=[-0.0, 1.5]),  # -0.0 is written as -0.0
        base.assign(s=["a", ""]),
        base.assign(i=[1.0, 2.0]),  # float column: written 1.0
        base.assign(s=["a", 1]),
        base.rename(columns={"x": "y"}),
        base[["s", "x", "i"]],
        base.iloc[:1],
    ]
    digests = {frame_digest(base), *(frame_digest(v) for v in variants)}
    assert len(digests) == len(variants) + 1  # finer than the CSV (a missing value and "" both write an empty cell)
    assert frame_digest(base.copy()) == frame_digest(base)
