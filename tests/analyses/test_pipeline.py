"""The analyze pipeline on tiny runs: tables, metrics.json, caching, failed runs, the control, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score

from probe.analyses.base import EPOCH_ANALYSES, EpochAnalysis
from probe.analyses.claims import CLAIMS
from probe.analyses.pipeline import (
    EPOCH_COLUMNS,
    RUN_COLUMNS,
    analyze,
    default_model_epochs,
    early_epoch,
    load_analyses,
)
from probe.errors import ProbeInputError
from probe.store import open_run, open_sweep
from probe.train import run_sweep
from tests.conftest import tiny_parity_config


def _strict_json(path: Path):
    def refuse(token):
        raise ValueError(f"non-standard JSON constant {token}")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture(scope="module")
def colored_result(tiny_colored_sweep, tmp_path_factory):
    out = tmp_path_factory.mktemp("analysis") / "colored"
    return analyze(tiny_colored_sweep, out=out, model_epochs="last", progress=False,
                   options={"dfr_retrains": 2})


def test_epoch_choices_on_constructed_steps():
    epochs, steps = [0, 1, 2, 4, 8, 16], [0, 10, 20, 40, 80, 160]
    assert early_epoch(epochs, steps, total_steps=160) == 2  # 10% of 160 = 16 -> step 20 (closer than 10)
    assert early_epoch(epochs, steps, total_steps=150) == 1  # 15 is as close to 10 as to 20: the earlier epoch
    assert early_epoch([0], [0], total_steps=100) == 0
    assert early_epoch([0, 5], [0, 50], total_steps=50) == 5  # epoch 0 is never "early" when a trained one exists
    assert default_model_epochs(epochs, steps) == [0, 4, 8, 16]  # 25/50/75% of 160 -> steps 40, 80, 120 (-> 80|160)
    assert default_model_epochs([], []) == []


def test_sweep_tables_and_metrics_json(colored_result, tiny_colored_sweep):
    result = colored_result
    assert result.errors == [], result.errors
    sweep = open_sweep(tiny_colored_sweep)
    assert len(result.runs) == len(sweep.runs) == 4
    assert list(result.epochs.columns) == EPOCH_COLUMNS
    assert set(RUN_COLUMNS) <= set(result.runs.columns)
    assert set(result.epochs["epoch"]) == {0, 1, 2}
    assert set(result.epochs["analysis"]) >= {"groups", "logits", "losses", "proposition"}
    for run in sweep.runs:  # the collapse rule, recomputed: final training accuracy below 1.5x chance
        train = run.records("train", run.epochs[-1])
        acc = accuracy_score(train.y, train.logits.argmax(1))
        expected = "collapsed" if acc < 1.5 / run.num_classes else "ok"
        assert result.runs.set_index("run").loc[run.name, "status"] == expected
    # model analyses ran on the last epoch only
    heavy = {n for n, a in EPOCH_ANALYSES.items() if a.needs_model}
    assert set(result.epochs.loc[result.epochs["analysis"].isin(heavy), "epoch"]) == {2}

    run = sweep.runs[-1]
    row = result.runs.set_index("run").loc[run.name]
    test = run.records("test", 2)
    assert row["final:test/acc"] == pytest.approx(accuracy_score(test.y, test.logits.argmax(1)))
    # 2 epochs of 15 steps: 10% of 30 steps is step 3, nearest trained epoch is 1
    assert row["early_epoch"] == 1 and row["early_step"] == run.step_of(1)
    train1 = run.records("train", 1)
    assert row["early:train/logit_norm"] == pytest.approx(np.linalg.norm(train1.logits.astype(np.float64),
                                                                         axis=1).mean(), rel=1e-6)
    train2 = run.records("train", 2)
    assert row["final_train_acc"] == pytest.approx(accuracy_score(train2.y, train2.logits.argmax(1)))

    assert set(result.claims["claim"]) == {c.name for c in CLAIMS}
    assert set(result.claims["budget"]) == {"fixed"}
    for name in ("epochs.csv", "runs.csv", "claims.csv", "metrics.json", "report.html"):
        assert (result.out / name).is_file(), name
    on_disk = pd.read_csv(result.out / "runs.csv")
    assert list(on_disk["run"]) == list(result.runs["run"])

    payload = _strict_json(result.out / "metrics.json")
    assert set(payload) >= {"config", "statuses", "runs", "claims", "failures", "proposition", "epochs", "errors"}
    assert payload["errors"] == []
    assert payload["statuses"] == dict(zip(result.runs["run"], result.runs["status"]))
    nested = payload["epochs"][run.name]["2"]["metrics"]["test"]
    assert nested["acc"] == pytest.approx(row["final:test/acc"])
    assert len(result.proposition) == 4 * 3  # the proposition runs on every epoch of every run


@pytest.fixture
def counting(monkeypatch):
    """A registered record-level analysis that counts its calls (removed after the test)."""
    calls = []

    def fn(ctx, epoch):
        calls.append((ctx.run.name, epoch))
        return {"train": {"n_records": float(len(ctx.run.records("train", epoch)))}}

    load_analyses()
    monkeypatch.setitem(EPOCH_ANALYSES, "count", EpochAnalysis("count", fn, False))
    return calls


def test_rerun_reuses_cache_keyed_by_epoch_sha(tiny_parity_run, tmp_path, counting):
    out = tmp_path / "a"
    first = analyze(tiny_parity_run, out=out, analyses=["count", "groups"], progress=False, report=False)
    epochs = open_run(tiny_parity_run).epochs
    assert sorted(counting) == [("parity_lr0.1", e) for e in epochs]
    assert not first.timings["cached"].any()
    second = analyze(tiny_parity_run, out=out, analyses=["count", "groups"], progress=False, report=False)
    assert len(counting) == len(epochs)  # nothing recomputed
    assert second.timings["cached"].all()
    pd.testing.assert_frame_equal(first.epochs, second.epochs)
    # an entry whose sha256 no longer matches the epoch file is recomputed
    entry = out / "cache" / "parity_lr0.1" / "metrics" / "parity_lr0.1" / "epoch_00001.json"
    data = json.loads(entry.read_text())
    data["count"]["epoch_sha256"] = "0" * 64
    entry.write_text(json.dumps(data))
    analyze(tiny_parity_run, out=out, analyses=["count", "groups"], progress=False, report=False)
    assert counting[len(epochs):] == [("parity_lr0.1", 1)]
    # other options: recomputed
    analyze(tiny_parity_run, out=out, analyses=["count"], progress=False, report=False, options={"x": 1})
    assert len(counting) == 2 * len(epochs) + 1


def test_failing_analysis_is_recorded_not_fatal(tiny_parity_run, tmp_path, monkeypatch, capsys):
    def broken(ctx, epoch):
        raise RuntimeError("boom at epoch %d" % epoch)

    load_analyses()
    monkeypatch.setitem(EPOCH_ANALYSES, "broken", EpochAnalysis("broken", broken, False))
    result = analyze(tiny_parity_run, out=tmp_path / "b", analyses=["broken", "groups"], progress=False)
    n = len(open_run(tiny_parity_run).epochs)
    assert len(result.errors) == n and all("boom" in e["error"] for e in result.errors)
    assert "ERROR in analysis 'broken'" in capsys.readouterr().err
    assert (result.epochs["analysis"] == "groups").any()
    assert len(_strict_json(result.out / "metrics.json")["errors"]) == n
    assert "boom at epoch" in (result.out / "report.html").read_text()
    with pytest.raises(RuntimeError, match="boom"):
        analyze(tiny_parity_run, out=tmp_path / "c", analyses=["broken"], progress=False, strict=True)


@pytest.fixture(scope="module")
def failing_sweep(tmp_path_factory):
    """Parity runs at lr 1e-7 (stays at chance: collapsed), 0.3 and 1 (ok) and 1e12 (non-finite loss)."""
    out = tmp_path_factory.mktemp("sweeps") / "edges"
    base = tiny_parity_config(epochs=3)
    results = run_sweep(base, out, {"lr": [1e-7, 0.3, 1.0, 1e12]})
    assert [status for _, status, _ in results] == ["complete", "complete", "complete", "diverged"]
    return out


@pytest.mark.slow
def test_diverged_and_collapsed_runs_listed_and_left_out(failing_sweep, tmp_path):
    result = analyze(failing_sweep, out=tmp_path / "e", analyses=["groups", "logits", "losses"], progress=False)
    assert result.errors == []
    status = dict(zip(result.runs["lr"], result.runs["status"]))
    assert status == {1e-7: "collapsed", 0.3: "ok", 1.0: "ok", 1e12: "diverged"}
    failures = result.failures.set_index("lr")
    assert set(failures.index) == {1e-7, 1e12}
    div = open_run(failing_sweep / "lr1e+12").diverged
    assert failures.loc[1e12, "diverged_epoch"] == div["epoch"]
    assert failures.loc[1e12, "diverged_step"] == div["step"]
    assert (result.claims["n_excluded"] == 2).all()
    measured = result.claims[result.claims["verdict"] != "not measured"]
    assert (measured["n_runs"] == 2).all()  # only the two ok runs enter the correlations
    html = (result.out / "report.html").read_text()
    assert "diverged" in html and "collapsed" in html and "lr 1e+12" in html


@pytest.mark.slow
def test_control_sweep_and_parent_folder(tmp_path):
    base = tiny_parity_config(steps=16, epochs=None, record="all")
    parent = tmp_path / "pair"
    run_sweep(base, parent / "fixed", {"lr": [0.03, 0.1, 0.3]})
    run_sweep(base, parent / "matched", {"lr": [0.1, 0.3]}, budget="matched", steps=8)
    analyses = ["groups", "logits", "losses"]
    with_control = analyze(parent / "fixed", control=parent / "matched", out=tmp_path / "o1", analyses=analyses,
                           progress=False, report=False)
    assert set(with_control.claims["budget"]) == {"fixed", "matched"}
    assert "survives_control" in with_control.claims.columns
    steps = dict(zip(with_control.runs["run"], with_control.runs["steps"]))
    assert steps == {"fixed/lr0.03": 16, "fixed/lr0.1": 16, "fixed/lr0.3": 16, "matched/lr0.1": 24,
                     "matched/lr0.3": 8}
    together = analyze(parent, out=tmp_path / "o2", analyses=analyses, progress=False, report=False)
    pd.testing.assert_frame_equal(together.claims, with_control.claims)
    with pytest.raises(ProbeInputError, match="matched-budget"):
        analyze(parent / "matched", control=parent / "fixed", out=tmp_path / "o3", progress=False)


def test_cli_analyze_and_bad_input(tiny_parity_run, tmp_path, capsys):
    from probe.cli import main

    out = tmp_path / "cli"
    code = main(["analyze", str(tiny_parity_run), "--out", str(out), "--analyses", "groups", "losses", "--quiet",
                 "--no-report"])
    assert code == 0
    assert (out / "runs.csv").is_file() and not (out / "report.html").exists()
    assert "unbiased_acc_up" in capsys.readouterr().out
    assert main(["analyze", str(tiny_parity_run), "--out", str(out), "--analyses", "nope", "--quiet"]) == 2
    assert "unknown analysis 'nope'" in capsys.readouterr().err
    assert main(["analyze", str(tmp_path / "missing"), "--quiet"]) == 2
    assert main(["analyze", str(tiny_parity_run), "--epochs", "first", "--quiet"]) == 2


def test_collapse_is_judged_from_sgd_minibatches_when_train_is_not_recorded(tmp_path):
    """Without train records the collapse rule uses the accuracy on the minibatches SGD saw in the last epoch;
    with neither kept, nothing says the run collapsed."""
    from probe.train import train

    for name, sgd_logits, expected in (("sgd", True, "collapsed"), ("none", False, "ok")):
        out = tmp_path / name
        train(tiny_parity_config(lr=1e-7, epochs=1, record_splits=["test"], sgd_logits=sgd_logits), out)
        result = analyze(out, out=tmp_path / f"an_{name}", model_epochs="none", progress=False, report=False)
        assert result.runs["status"].tolist() == [expected], name


# --- damaged runs, the cache, unwritable output --------------------------------------------------------------------


@pytest.fixture(scope="module")
def parity_sweep(tmp_path_factory):
    """Four parity runs (lr 0.03, 0.1, 0.3, 1), epochs 0..2; tests damage copies of it."""
    out = tmp_path_factory.mktemp("sweeps") / "parity"
    run_sweep(tiny_parity_config(epochs=2), out, {"lr": [0.03, 0.1, 0.3, 1.0]})
    return out


def _copy(sweep: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(sweep, tmp_path / "sweep", ignore=shutil.ignore_patterns(".lock")))


def _flip_bit_in_place(path: Path, offset: int) -> None:
    """Flip one bit of ``path`` keeping its size and its modification time (bit rot, as a disk shows it)."""
    import os

    st = path.stat()
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns


@pytest.mark.slow
def test_damaged_runs_are_listed_and_the_others_analysed(parity_sweep, tmp_path, capsys):
    """A truncated last epoch, a truncated run.json and a bit flip in an epoch each put their run in the failures
    table with the file and the reason; the healthy run is analysed; the command says so and exits 1."""
    from probe.cli import main

    sweep = _copy(parity_sweep, tmp_path)
    last = sweep / "lr0.03" / "epoch_00002.h5"
    last.write_bytes(last.read_bytes()[:-200])
    run_json = sweep / "lr0.1" / "run.json"
    run_json.write_bytes(run_json.read_bytes()[:40])
    _flip_bit_in_place(sweep / "lr0.3" / "epoch_00001.h5", 5000)

    out = tmp_path / "analysis"
    code = main(["analyze", str(sweep), "--out", str(out), "--analyses", "groups", "losses", "--quiet"])
    captured = capsys.readouterr()
    assert code == 1, captured.err
    assert "3 damaged run(s)" in captured.err and "Traceback" not in captured.err

    failures = pd.read_csv(out / "failures.csv").set_index("run")
    assert set(failures.index) == {"lr0.03", "lr0.1", "lr0.3"}
    assert (failures["status"] == "damaged").all()
    assert failures.loc["lr0.03", "damaged_file"] == str(last)
    assert "truncated" in failures.loc["lr0.03", "damage_reason"]
    assert failures.loc["lr0.1", "damaged_file"] == str(run_json)
    assert failures.loc["lr0.1", "lr"] == 0.1  # from sweep.json: run.json cannot be read
    assert failures.loc["lr0.3", "damaged_file"] == str(sweep / "lr0.3" / "epoch_00001.h5")
    assert "sha256" in failures.loc["lr0.3", "damage_reason"]

    epochs = pd.read_csv(out / "epochs.csv")
    assert set(epochs["run"]) == {"lr1"}  # nothing of a damaged run is reported as a measurement
    healthy = open_run(sweep / "lr1")
    test = healthy.records("test", 2)
    acc = epochs[(epochs["epoch"] == 2) & (epochs["split"] == "test") & (epochs["metric"] == "acc")]["value"]
    assert acc.tolist() == [pytest.approx(accuracy_score(test.y, test.logits.argmax(1)))]
    runs = pd.read_csv(out / "runs.csv").set_index("run")
    assert runs.loc["lr1", "status"] == "ok" and len(runs) == 4
    html = (out / "report.html").read_text()
    assert "damaged" in html and "epoch_00001.h5" in html
    assert _strict_json(out / "metrics.json")["statuses"]["lr0.3"] == "damaged"


def test_cache_never_answers_for_a_damaged_epoch(parity_sweep, tmp_path, counting):
    """Bit rot in an analysed epoch, with its size and mtime unchanged: the second analyze into the same --out
    re-hashes the file and lists the run as damaged instead of answering from the cache."""
    sweep = _copy(parity_sweep, tmp_path)
    out = tmp_path / "analysis"
    first = analyze(sweep, out=out, analyses=["count"], progress=False, report=False)
    assert first.damaged.empty and len(counting) == 4 * 3
    _flip_bit_in_place(sweep / "lr0.1" / "epoch_00002.h5", 3000)
    second = analyze(sweep, out=out, analyses=["count"], progress=False, report=False)
    assert len(counting) == 4 * 3  # the three healthy runs come from the cache
    assert second.timings["cached"].all()
    assert second.damaged["run"].tolist() == ["lr0.1"]
    assert second.failures.set_index("run").loc["lr0.1", "damaged_file"] == str(sweep / "lr0.1" / "epoch_00002.h5")
    assert "lr0.1" not in set(second.epochs["run"])
    assert set(second.epochs["run"]) == {"lr0.03", "lr0.3", "lr1"}


def test_unwritable_out_is_refused_before_any_analysis(tiny_parity_run, tmp_path, capsys, counting):
    from probe.cli import main
    from tests.mounts import tmpfs

    for out in ("/proc/probe-analysis", "/proc/self/analysis"):
        assert main(["analyze", str(tiny_parity_run), "--out", out, "--analyses", "count", "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"probe: error: --out {out}: cannot write there"), err
    with tmpfs(tmp_path / "ro", "64k", read_only=True) as ro:
        for out in (ro, ro / "sub"):
            assert main(["analyze", str(tiny_parity_run), "--out", str(out), "--analyses", "count", "--quiet"]) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and "Read-only file system" in err, err
    assert counting == []  # refused before any analysis ran
