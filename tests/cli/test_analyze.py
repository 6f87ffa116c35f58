"""``probe analyze``: the command's output and exit codes, bad input refused in one line, declared options,
damaged runs, an unwritable ``--out``."""

from __future__ import annotations

import pandas as pd
import pytest
from sklearn.metrics import accuracy_score

from probe.cli import main
from probe.store import open_run
from tests.analyses.engine import helpers
from tests.analyses.engine.helpers import copy_sweep, flip_bit_in_place, strict_json

counting = helpers.counting  # fixtures shared with tests/analyses/engine
parity_sweep = helpers.parity_sweep


def test_cli_analyze_and_bad_input(tiny_parity_run, tmp_path, capsys):
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


@pytest.mark.slow
def test_damaged_runs_are_listed_and_the_others_analysed(parity_sweep, tmp_path, capsys):
    """A truncated last epoch, a truncated run.json and a bit flip in an epoch each put their run in the failures
    table with the file and the reason; the healthy run is analysed; the command says so and exits 1."""
    sweep = copy_sweep(parity_sweep, tmp_path)
    last = sweep / "lr0.03" / "epoch_00002.h5"
    last.write_bytes(last.read_bytes()[:-200])
    run_json = sweep / "lr0.1" / "run.json"
    run_json.write_bytes(run_json.read_bytes()[:40])
    flip_bit_in_place(sweep / "lr0.3" / "epoch_00001.h5", 5000)

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
    assert strict_json(out / "metrics.json")["statuses"]["lr0.3"] == "damaged"


def test_unwritable_out_is_refused_before_any_analysis(tiny_parity_run, tmp_path, capsys, counting):
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


def test_list_option_computes_every_method(tmp_path, capsys):
    """``--option attr_methods=ig,saliency`` is a list of two methods (not the letters of a string): the attribution
    analysis measures both on a dataset with masks."""
    from probe.train import TrainConfig, train

    run = tmp_path / "dm"
    train(TrainConfig(dataset="double-mnist", model="mlp", model_options={"width": 16}, lr=0.1, steps=4,
                      batch_size=64, seed=0), run)
    out = tmp_path / "an"
    code = main(["analyze", str(run), "--out", str(out), "--analyses", "attribution", "--model-epochs", "last",
                 "--option", "attr_methods=ig,saliency", "--option", "attr_n=8", "--quiet", "--no-report"])
    assert code == 0, capsys.readouterr().err
    metrics = set(pd.read_csv(out / "epochs.csv")["metric"])
    assert {"core_attr_share@ig", "core_attr_share@saliency"} <= metrics
    assert strict_json(out / "metrics.json")["config"]["options"]["attr_methods"] == ["ig", "saliency"]


@pytest.mark.parametrize(("option", "named"), [("atr_methods=ig", "attr_methods"), ("attr_n=many", "attr_n takes int"),
                                               ("attr_methods=ig,nope", "attr_methods takes list[str]")])
def test_unknown_or_ill_typed_option_exits_2_naming_the_known_ones(tiny_parity_run, tmp_path, capsys, option, named):
    out = tmp_path / "never"
    assert main(["analyze", str(tiny_parity_run), "--out", str(out), "--option", option, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("probe: error: ") and named in err, err
    assert not out.exists()  # refused before the output folder is made


def test_bad_device_exits_2(tiny_parity_run, tmp_path, capsys):
    assert main(["analyze", str(tiny_parity_run), "--out", str(tmp_path / "d"), "--device", "tpu9", "--quiet"]) == 2
    assert "unknown device 'tpu9'" in capsys.readouterr().err
