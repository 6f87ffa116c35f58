"""``analyze`` on tiny runs: tables, metrics.json, failing analyses, failed runs, the control, resolved options."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score

from probe.analyses.base import EPOCH_ANALYSES, EpochAnalysis, load_analyses
from probe.analyses.claims import CLAIMS
from probe.analyses.engine import analyze
from probe.analyses.engine.result import EPOCH_COLUMNS, RUN_COLUMNS
from probe.errors import ProbeInputError
from probe.report import write_report
from probe.store import open_run, open_sweep
from probe.train import run_sweep
from tests.analyses.engine.helpers import strict_json
from tests.conftest import tiny_parity_config


@pytest.fixture(scope="module")
def colored_result(tiny_colored_sweep, tmp_path_factory):
    out = tmp_path_factory.mktemp("analysis") / "colored"
    return analyze(tiny_colored_sweep, out=out, model_epochs="last", progress=False,
                   options={"dfr_retrains": 0})  # DFR: tests/analyses/test_probes.py


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
    for name in ("epochs.csv", "runs.csv", "claims.csv", "metrics.json"):
        assert (result.out / name).is_file(), name
    assert not (result.out / "report.html").exists()  # analyze writes no report
    on_disk = pd.read_csv(result.out / "runs.csv")
    assert list(on_disk["run"]) == list(result.runs["run"])

    payload = strict_json(result.out / "metrics.json")
    assert set(payload) >= {"config", "statuses", "runs", "claims", "failures", "proposition", "epochs", "errors"}
    assert payload["errors"] == []
    assert payload["statuses"] == dict(zip(result.runs["run"], result.runs["status"]))
    nested = payload["epochs"][run.name]["2"]["metrics"]["test"]
    assert nested["acc"] == pytest.approx(row["final:test/acc"])
    assert len(result.proposition) == 4 * 3  # the proposition runs on every epoch of every run


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
    assert len(strict_json(result.out / "metrics.json")["errors"]) == n
    assert "boom at epoch" in write_report(result).read_text()
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
    measured = result.claims[result.claims["n_runs"] > 0]  # claims whose metric has a value in some ok run
    assert len(measured) and (measured["n_runs"] == 2).all()  # only the two ok runs enter the correlations
    html = write_report(result).read_text()
    assert "diverged" in html and "collapsed" in html and "lr 1e+12" in html


@pytest.mark.slow
def test_control_sweep_and_parent_folder(tmp_path):
    base = tiny_parity_config(steps=16, epochs=None, record="all")
    parent = tmp_path / "pair"
    run_sweep(base, parent / "fixed", {"lr": [0.03, 0.1, 0.3]})
    run_sweep(base, parent / "matched", {"lr": [0.1, 0.3]}, budget="matched", steps=8)
    analyses = ["groups", "logits", "losses"]
    with_control = analyze(parent / "fixed", control=parent / "matched", out=tmp_path / "o1", analyses=analyses,
                           progress=False)
    assert set(with_control.claims["budget"]) == {"fixed", "matched"}
    assert "survives_control" in with_control.claims.columns
    steps = dict(zip(with_control.runs["run"], with_control.runs["steps"]))
    assert steps == {"fixed/lr0.03": 16, "fixed/lr0.1": 16, "fixed/lr0.3": 16, "matched/lr0.1": 24,
                     "matched/lr0.3": 8}
    together = analyze(parent, out=tmp_path / "o2", analyses=analyses, progress=False)
    pd.testing.assert_frame_equal(together.claims, with_control.claims)
    with pytest.raises(ProbeInputError, match="matched-budget"):
        analyze(parent / "matched", control=parent / "fixed", out=tmp_path / "o3", progress=False)


def test_collapse_is_judged_from_sgd_minibatches_when_train_is_not_recorded(tmp_path):
    """Without train records the collapse rule uses the accuracy on the minibatches SGD saw in the last epoch;
    with neither kept, nothing says the run collapsed."""
    from probe.train import train

    for name, sgd_logits, expected in (("sgd", True, "collapsed"), ("none", False, "ok")):
        out = tmp_path / name
        train(tiny_parity_config(lr=1e-7, epochs=1, record_splits=["test"], sgd_logits=sgd_logits), out)
        result = analyze(out, out=tmp_path / f"an_{name}", model_epochs="none", progress=False)
        assert result.runs["status"].tolist() == [expected], name




# --- declared options ----------------------------------------------------------------------------------------------


def test_unknown_or_ill_typed_option_is_refused_before_anything_runs(tiny_parity_run, tmp_path, counting):
    out = tmp_path / "never"
    with pytest.raises(ProbeInputError, match="unknown analysis option 'atr_methods'.*attr_methods"):
        analyze(tiny_parity_run, out=out, analyses=["count"], progress=False, options={"atr_methods": "ig"})
    with pytest.raises(ProbeInputError, match="attr_n takes int"):
        analyze(tiny_parity_run, out=out, analyses=["count"], progress=False, options={"attr_n": "many"})
    assert counting == [] and not out.exists()


def test_options_are_resolved_and_recorded(tiny_parity_run, tmp_path, counting):
    result = analyze(tiny_parity_run, out=tmp_path / "o", analyses=["count", "proposition"], progress=False,
                     options={"count_offset": "1000", "alphas": "0.5,1,2"})
    assert result.config["options"] == {"count_offset": 1000, "alphas": [0.5, 1.0, 2.0]}  # only the selected ones
    counted = result.metric("n_records", "train")["value"]
    assert (counted == 256 + 1000).all()  # parity n_train 256, plus the resolved integer option
    assert sorted(result.ratio_curves["alpha"].unique()) == [0.5, 1.0, 2.0]  # R(alpha) on the declared grid


def test_auto_device_is_resolved(tiny_parity_run, tmp_path):
    import torch

    result = analyze(tiny_parity_run, out=tmp_path / "a", analyses=["groups"], progress=False, device="auto")
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert result.config["device"] == expected
    with pytest.raises(ProbeInputError, match="unknown device"):
        analyze(tiny_parity_run, out=tmp_path / "b", analyses=["groups"], progress=False, device="tpu9")
