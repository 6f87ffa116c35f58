"""Which runs and epochs ``analyze`` reads: early and model epochs on constructed steps, sources of a folder."""

from __future__ import annotations

import shutil

import pytest

from probe.analyses.engine.plan import default_model_epochs, early_epoch, plan_run, resolve_sources, select_epochs
from probe.errors import ProbeInputError, RunDirectoryError
from probe.store import open_run


def test_epoch_choices_on_constructed_steps():
    epochs, steps = [0, 1, 2, 4, 8, 16], [0, 10, 20, 40, 80, 160]
    assert early_epoch(epochs, steps, total_steps=160) == 2  # 10% of 160 = 16 -> step 20 (closer than 10)
    assert early_epoch(epochs, steps, total_steps=150) == 1  # 15 is as close to 10 as to 20: the earlier epoch
    assert early_epoch([0], [0], total_steps=100) == 0
    assert early_epoch([0, 5], [0, 50], total_steps=50) == 5  # epoch 0 is never "early" when a trained one exists
    assert default_model_epochs(epochs, steps) == [0, 4, 8, 16]  # 25/50/75% of 160 -> steps 40, 80, 120 (-> 80|160)
    assert default_model_epochs([], []) == []


def test_select_epochs_words_and_numbers():
    committed, steps = [0, 1, 2, 3], [0, 5, 10, 15]
    assert select_epochs(None, committed, steps, default=[0, 3]) == [0, 3]
    assert select_epochs("all", committed, steps, default=[]) == committed
    assert select_epochs("last", committed, steps, default=[]) == [3]
    assert select_epochs("none", committed, steps, default=[0]) == []
    assert select_epochs([3, 1, 7], committed, steps, default=[]) == [1, 3]  # uncommitted 7 is dropped
    with pytest.raises(ProbeInputError, match="epochs must be numbers"):
        select_epochs("first", committed, steps, default=[])


def test_plan_of_a_run(tiny_parity_run):
    name, sources = resolve_sources(tiny_parity_run)
    assert name == tiny_parity_run.name and [s.kind for s in sources] == ["run"]
    run = open_run(tiny_parity_run)
    plan = plan_run(sources[0], run, epochs="last", model_epochs="none")
    assert plan.committed == run.epochs and plan.heavy == []
    assert plan.cheap == sorted({plan.early, run.epochs[-1]})  # the early and last epochs are always added
    assert plan.step_of == {e: run.step_of(e) for e in run.epochs}
    assert plan.analyses_at(run.epochs[-1], ["groups"], ["probes"]) == ["groups"]
    assert plan.tasks(["groups", "losses"], ["probes"]) == 2 * len(plan.cheap)
    assert set(plan.sha256) == set(run.epochs) and all(len(h) == 64 for h in plan.sha256.values())


def test_folder_without_runs_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDirectoryError, match="no run"):
        resolve_sources(tmp_path / "empty")


def test_early_epoch_is_a_fraction_of_the_distance_budget(tiny_parity_run, tmp_path):
    """lr 0.1, steps 0/8/16/24: the early epoch is the one whose lr x step is nearest 0.1 x run.json's distance
    budget; a run written before the budget was stored falls back to lr x its planned steps (the old rule)."""
    import json
    import shutil

    from probe.analyses.engine.status import identity, run_row

    path = tmp_path / "run"
    shutil.copytree(tiny_parity_run, path, ignore=shutil.ignore_patterns(".lock"))
    info = json.loads((path / "run.json").read_text())
    assert info["plan"]["distance_budget"] == pytest.approx(0.1 * 24) and info["plan"]["total_steps"] == 24

    def plan_with(plan_json):
        info_now = {**info, "plan": plan_json} if plan_json is not None else {
            k: v for k, v in info.items() if k != "plan"}
        (path / "run.json").write_text(json.dumps(info_now))
        _, (source,) = resolve_sources(path)
        return plan_run(source, source.runs[0])

    for budget, early in ((16.0, 2), (24.0, 3), (12.0, 1), (2.4, 1)):  # 0.1 x 12 / 0.1 = 12: tie of 8 and 16
        plan = plan_with({**info["plan"], "distance_budget": budget})
        assert (plan.early, plan.distance_budget) == (early, budget)
        row = run_row(plan, identity(plan.source, "run", 0.1, 0, False))
        assert row["distance_budget"] == budget and row["early_distance"] == pytest.approx(0.1 * 8 * early)
    old = plan_with(None)
    assert old.total_steps == 24 and old.distance_budget == pytest.approx(2.4) and old.early == 1


def test_a_source_given_through_dot_dot_is_labelled_by_its_own_folder(tiny_parity_run, tmp_path):
    """The label names the source's cache folders: a path such as ``run/sub/..`` must not make it ``..``."""
    run = tmp_path / "run"
    shutil.copytree(tiny_parity_run, run)
    (run / "sub").mkdir()
    for path in (run / ".", run / "sub" / ".."):
        _, sources = resolve_sources(str(path))
        assert [s.label for s in sources] == ["run"]
