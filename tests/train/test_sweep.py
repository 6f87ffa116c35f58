"""Sweeps: one run per combination of the axes, a diverged run does not stop the others, the matched budget,
parallel workers; ``--resume`` continues only the sweep ``sweep.json`` describes; a live sweep is never overwritten
or joined; its worker processes die with it, and ``--resume`` then completes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

import probe
from probe.cli import main
from probe.store.lock import is_locked
from tests.conftest import PARITY_ARGS as PARITY
from tests.conftest import REPO, torch_threads
from tests.store.snapshot import tree_digest

DATA = ["--dataset", "parity", "--data-option", "n_train=64", "--data-option", "n_val=16", "--data-option",
        "n_test=16", "--model-option", "width=8"]
SWEEP = ["sweep", *DATA, "--lr", "0.1", "0.2", "--seeds", "0", "--epochs", "1", "--quiet"]


@pytest.fixture
def one_torch_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sweeps") / "small"
    with torch_threads(1):
        assert main([*SWEEP, "--out", str(out)]) == 0
    return out


def replace_option(args: list[str], flag: str, *values: str) -> list[str]:
    """``args`` with ``flag``'s values replaced (or the flag added)."""
    if flag not in args:
        return [*args, flag, *values]
    i = args.index(flag)
    j = i + 1
    while j < len(args) and not args[j].startswith("--"):
        j += 1
    return [*args[:i], flag, *values, *args[j:]]


@pytest.mark.parametrize(
    ("change", "listed"),
    [
        (["--dataset", "colored-mnist"], "dataset (sweep.json 'parity', asked 'colored-mnist')"),
        (["--data-option", "n_train=64", "--data-option", "n_val=16", "--data-option", "n_test=32"],
         "dataset_options"),
        (["--model", "cnn"], "model (sweep.json 'mlp', asked 'cnn')"),
        (["--model-option", "width=16"], "model_options"),
        (["--optimizer", "adamw"], "optimizer"),
        (["--epochs", "2"], "epochs (sweep.json 1, asked 2)"),
        (["--lr", "0.1", "0.3"], "axes"),
        (["--seeds", "0", "1"], "axes"),
        (["--momentum", "0.9"], "momentum"),
        (["--budget", "matched", "--steps", "4"], "budget (sweep.json 'fixed', asked 'matched')"),
    ],
)
def test_resume_with_other_options_exits_2_listing_them_and_changes_nothing(small_sweep, capsys, change, listed):
    args = [*SWEEP, "--out", str(small_sweep), "--resume"]
    flag = change[0]
    if flag == "--budget":
        args = [a for a in args if a not in ("--epochs", "1")]
    if flag == "--data-option":
        args = [a for a in args if not a.startswith("n_") and a != "--data-option"]
    args = replace_option(args, flag, *change[1:]) if flag != "--data-option" else [*args, *change]
    if flag == "--budget":
        args = replace_option(args, "--steps", change[-1])
    before = tree_digest(small_sweep)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("probe: error:") and err.count("\n") == 1
    assert "these options differ" in err and listed in err
    assert tree_digest(small_sweep) == before


def test_resume_alone_or_with_the_same_options_is_accepted(small_sweep, capsys, one_torch_thread):
    assert main([*SWEEP, "--out", str(small_sweep), "--resume", "--workers", "0", "--jobs", "1"]) == 0
    assert main(["sweep", "--resume", "--out", str(small_sweep), "--quiet"]) == 0
    assert main(["sweep", "--resume", "--out", str(small_sweep), "--lr", "0.5"]) == 2
    assert "give none of: --lr" in capsys.readouterr().err
    assert [r.status for r in probe.open_sweep(small_sweep).runs] == ["complete", "complete"]


def test_a_fixed_sweep_given_its_steps_apart_or_in_the_base_config_is_the_same_sweep():
    """``run_sweep(base with steps=S)`` and the command line's ``--steps S`` (``steps=S``) plan the same runs, so
    either resumes the other; other steps, or a matched budget, differ."""
    from probe.train import TrainConfig
    from probe.train.sweep import plan_sweep, sweep_differences, sweep_record

    base = TrainConfig(dataset="parity", model="mlp", lr=0.1, steps=40)
    axes = {"lr": [0.1, 0.3]}

    def record(cfg, budget="fixed", steps=None):
        return sweep_record(cfg, "s", axes, budget=budget, steps=steps,
                            plan=plan_sweep(cfg, axes, budget=budget, steps=steps, n_train=128))

    in_base, apart = record(base), record(base, steps=40)
    assert in_base["budget_steps"] is None and apart["budget_steps"] == 40
    assert sweep_differences(in_base, apart) == sweep_differences(apart, in_base) == []
    assert [cfg.steps for _, cfg, _ in plan_sweep(base, axes, n_train=128)] == [40, 40]
    longer = record(replace(base, steps=80), steps=80)
    assert any(d.startswith("budget_steps") for d in sweep_differences(in_base, longer))
    assert any(d.startswith("budget ") for d in sweep_differences(in_base, record(base, "matched", 40)))


def children_of(pid: int) -> set[int]:
    kids: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            kids |= {int(k) for k in (task / "children").read_text().split()}
        except OSError:
            pass
    return kids


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_a_live_sweep_is_protected_and_its_workers_die_with_it(tmp_path, capsys, one_torch_thread):
    """``probe sweep --jobs 2`` trains in two worker processes. Once both runs have started, the workers are frozen
    (SIGSTOP), so the sweep is surely still live: a second sweep into its folder, its ``--resume`` and its
    ``--overwrite`` exit 2 and delete nothing. Then SIGKILL of the parent (and SIGCONT, so that a worker still
    starting up runs on to its parent check) ends every worker within seconds, the locks are free, and ``--resume``
    completes the sweep."""
    out = tmp_path / "sweep"
    args = ["sweep", *DATA, "--data-option", "n_train=1024", "--lr", "0.05", "0.1", "--epochs", "12", "--batch-size",
            "32", "--record", "every:6", "--threads", "1", "--quiet", "--out", str(out)]
    parent = subprocess.Popen([sys.executable, "-m", "probe.cli", *args, "--jobs", "2"], cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        runs = [out / "lr0.05_seed0", out / "lr0.1_seed0"]
        while not all((r / "epoch_00000.h5").exists() for r in runs):
            assert parent.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        workers = children_of(parent.pid)
        for pid in workers:
            os.kill(pid, signal.SIGSTOP)
        assert len(workers) >= 2 and parent.poll() is None and is_locked(out)

        kept = {p for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")}
        for extra in (["--overwrite"], ["--resume"], []):
            assert main([*args[:-2], "--out", str(out), *extra]) == 2
            err = capsys.readouterr().err
            assert ("another process is writing this sweep" in err) if extra else ("already exists" in err)
        assert all(p.exists() for p in kept)

        parent.send_signal(signal.SIGKILL)
        parent.wait()
        for pid in workers:
            os.kill(pid, signal.SIGCONT)
        deadline = time.monotonic() + 20
        while any(alive(pid) for pid in workers):
            assert time.monotonic() < deadline, "sweep workers outlived their parent"
            time.sleep(0.05)
    finally:
        parent.kill()
        parent.wait()
        for pid in workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert not is_locked(out) and not any(is_locked(r) for r in runs)
    assert main(["sweep", "--resume", "--out", str(out), "--quiet"]) == 0
    sweep = probe.open_sweep(out)
    for run in sweep.runs:  # the passes of the schedule (every:6 of 12) and the early points of the budget
        assert run.status == "complete"
        passes = [run.data_pass_of(e) for e in run.epochs]
        assert [p for p, complete in passes if complete] == [0, 6, 12]
        assert set(run.config["record_steps"]) <= {run.step_of(e) for e in run.epochs}


ORPHANS = (
    "import os, time\n"
    "import probe.train.sweep as sweep\n"
    "pid = os.fork()\n"
    "if pid == 0:  # its parent already died before the worker got going\n"
    "    sweep.die_with_parent(os.getppid() + 1_000_000)\n"
    "    os._exit(0)\n"
    "print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)\n"
    "sweep._set_parent_death_signal = lambda signum: False  # as where prctl is missing\n"
    "middle = os.fork()\n"
    "if middle == 0:\n"
    "    parent = os.getpid()  # taken before the fork, as a sweep passes it: the middle may be gone already\n"
    "    worker = os.fork()\n"
    "    if worker == 0:\n"
    "        sweep.die_with_parent(parent)\n"
    "        time.sleep(60)\n"
    "        os._exit(0)\n"
    "    print(worker, flush=True)\n"
    "    os._exit(0)\n"
    "os.waitpid(middle, 0)\n"
)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_a_worker_whose_parent_is_gone_exits_even_without_prctl():
    """The parent check closes the race with a parent that died first; without ``prctl`` a thread polls the parent
    pid and the worker exits within about a second of its parent."""
    res = subprocess.run([sys.executable, "-c", ORPHANS], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    exit_code, worker = (int(line) for line in res.stdout.split())
    assert exit_code == 1
    deadline = time.monotonic() + 5
    while alive(worker):
        assert time.monotonic() < deadline, "an orphaned worker kept running"
        time.sleep(0.05)


@pytest.mark.slow
def test_acceptance_sweep_colored_mnist_cnn(tmp_path, capsys):
    out = tmp_path / "sweep"
    code = main(["sweep", "--dataset", "colored-mnist", "--data-option", "n_train=960", "--model", "cnn",
                 "--lr", "0.01", "0.1", "--epochs", "3", "--out", str(out), "--quiet"])
    assert code == 0
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "lr0.01_seed0" in text and "lr0.1_seed0" in text and "complete" in text
    sweep = probe.open_sweep(out)
    assert [r.lr for r in sweep.runs] == [0.01, 0.1]
    n_test = len(sweep.runs[0].records("test", 0))
    for run in sweep.runs:
        assert run.dynamics("test").logits.shape == (len(run.epochs), n_test, 10)
        assert [p for p, complete in map(run.data_pass_of, run.epochs) if complete] == [0, 1, 2, 3]

def test_divergence_is_recorded_and_the_sweep_goes_on(tmp_path, capsys):
    out = tmp_path / "sweep"
    code = main(["sweep", *PARITY, "--lr", "0.1", "1e12", "--epochs", "3", "--out", str(out)])
    assert code == 0
    sweep = probe.open_sweep(out)
    ok, bad = sweep.runs
    # 2 steps per pass; B = 0.1 x 6 = 0.6: lr 0.1 records at round(f x 6) -> step 1 (kept >= 1) besides pass ends
    assert ok.status == "complete" and [ok.step_of(e) for e in ok.epochs] == [0, 1, 2, 4, 6]
    assert bad.status == "diverged"
    d = bad.diverged
    assert set(d) >= {"step", "epoch", "loss", "lr"} and d["lr"] == 1e12
    assert d["loss"] in ("nan", "inf")
    assert bad.epochs == list(range(d["last_committed_epoch"] + 1))
    assert bad.records("test", bad.epochs[-1]).logits.shape == (32, 2)  # still analysable
    assert (out / bad.name / "diverged.json").is_file()
    main(["info", str(out)])
    assert "diverged" in capsys.readouterr().out

def test_matched_budget_sweep_holds_rate_times_steps(tmp_path):
    out = tmp_path / "sweep"
    assert main(["sweep", *PARITY, "--lr", "0.05", "0.1", "0.2", "--budget", "matched", "--steps", "6",
                 "--out", str(out)]) == 0
    sweep = probe.open_sweep(out)
    assert sweep.budget == "matched"
    steps = {r.lr: r.step_of(r.epochs[-1]) for r in sweep.runs}
    assert steps == {0.05: 24, 0.1: 12, 0.2: 6}

@pytest.mark.slow
def test_parallel_jobs_and_extra_axes_give_the_same_runs_as_one_at_a_time(tmp_path):
    """--jobs 2 trains in separate processes; batch size is swept as its own axis; results equal a serial sweep."""
    import numpy as np

    common = [*PARITY, "--lr", "0.05", "0.2", "--batch-size", "16", "32", "--epochs", "2"]
    assert main(["sweep", *common, "--jobs", "2", "--out", str(tmp_path / "par")]) == 0
    assert main(["sweep", *common, "--out", str(tmp_path / "ser")]) == 0
    par, ser = probe.open_sweep(tmp_path / "par"), probe.open_sweep(tmp_path / "ser")
    assert par.axes["batch_size"] == [16, 32]
    assert sorted(r.name for r in par.runs) == sorted(
        f"lr{lr}_seed0_bs{bs}" for lr in ("0.05", "0.2") for bs in (16, 32))
    for a, b in zip(par.runs, ser.runs):
        assert a.name == b.name and a.config["batch_size"] == b.config["batch_size"]
        assert np.array_equal(a.records("test", 2).logits, b.records("test", 2).logits)


def _recorded_steps(run) -> list[int]:
    return [run.step_of(e) for e in run.epochs]


def _check_early_points(out, budget: float) -> None:
    """Every rate has a recorded step at each early fraction f of the budget (|lr x step - f x B| <= lr / 2), and the
    plan's early epoch lies at lr x step = 0.1 B for every rate, within one step's rounding."""
    from probe.analyses.engine.plan import plan_run, resolve_sources
    from probe.analyses.engine.status import identity, run_row

    sweep = probe.open_sweep(out)
    assert sweep.config["distance_budget"] == pytest.approx(budget)
    assert sweep.config["early_fractions"] == [0.01, 0.03, 0.1]
    for run in sweep.runs:
        assert run.distance_budget == pytest.approx(budget) and run.config["distance_budget"] == pytest.approx(budget)
        steps = _recorded_steps(run)
        for f in (0.01, 0.03, 0.1):
            assert min(abs(run.lr * s - f * budget) for s in steps) <= run.lr / 2 + 1e-12, (run.name, f, steps)
    _, (source,) = resolve_sources(out)
    distances = []
    for run in source.runs:
        plan = plan_run(source, run)
        row = run_row(plan, identity(source, run.name, run.lr, run.seed, False))
        assert row["distance_budget"] == pytest.approx(budget)
        assert row["early_distance"] == pytest.approx(run.lr * plan.step_of[plan.early])
        assert abs(row["early_distance"] - 0.1 * budget) <= run.lr / 2 + 1e-12
        assert plan.total_steps == run.planned_steps
        distances.append(row["early_distance"])
    assert max(distances) - min(distances) <= max(r.lr for r in source.runs)


def test_matched_sweep_records_every_rate_at_the_same_distances(tmp_path):
    """lr x steps budget B = 0.3 x 100 = 30: every rate records at 0.3, 0.9 and 3 (1%, 3%, 10% of B), inside passes
    (15 steps per pass) and between the every:1000 pass records, and analyze's early epoch sits at lr x step = 3."""
    from probe.train import TrainConfig, run_sweep

    base = TrainConfig(dataset="colored-mnist", dataset_options={"n_train": 960},
                       model="mlp", model_options={"width": 32}, lr=0.1, steps=100,
                       batch_size=64, record="every:1000", record_splits=["test"])
    out = tmp_path / "matched"
    with torch_threads(1):
        run_sweep(base, out, {"lr": [0.03, 0.1, 0.3]}, budget="matched", steps=100)
    runs = {r.lr: r for r in probe.open_sweep(out).runs}
    assert {lr: r.config["record_steps"] for lr, r in runs.items()} == {
        0.03: [10, 30, 100], 0.1: [3, 9, 30], 0.3: [1, 3, 10]}
    assert _recorded_steps(runs[0.03]) == [0, 10, 30, 100, 1000]  # pass 67 ends at 1000: the last step
    assert [runs[0.03].data_pass_of(e) for e in runs[0.03].epochs] == [
        (0, True), (1, False), (2, True), (7, False), (67, True)]  # 30 = 2 x 15 ends pass 2
    _check_early_points(out, 30.0)


def test_fixed_sweep_budget_is_the_distance_every_rate_reaches(tmp_path):
    """Fixed length (14 passes of 15 steps = 210 steps each): B = min lr x 210 = 0.05 x 210 = 10.5."""
    from probe.train import TrainConfig, run_sweep

    base = TrainConfig(dataset="colored-mnist", dataset_options={"n_train": 960},
                       model="mlp", model_options={"width": 32}, lr=0.1, epochs=14,
                       batch_size=64, record="every:1000", record_splits=["test"])
    out = tmp_path / "fixed"
    with torch_threads(1):
        run_sweep(base, out, {"lr": [0.05, 0.1, 0.2]})
    runs = {r.lr: r for r in probe.open_sweep(out).runs}
    assert runs[0.2].config["record_steps"] == [1, 2, 5]  # 0.105 / 0.2 = 0.53, 0.315 / 0.2 = 1.6, 1.05 / 0.2 = 5.25
    assert all(r.planned_steps == 210 for r in runs.values())
    _check_early_points(out, 10.5)


def test_plan_sweep_sets_the_distance_budget_and_early_steps_of_every_run():
    """Planned without training: the budget is max(lr) x S (matched) or min over runs of lr x total steps (fixed;
    runs in epochs count ceil(n_train / batch) steps per pass); early steps are round(f x B / lr), in [1, steps],
    without repeats; empty early fractions record nothing extra."""
    from probe.train import TrainConfig
    from probe.train.sweep import plan_sweep

    base = TrainConfig(dataset="parity", model="mlp", lr=0.1, steps=50)
    matched = plan_sweep(base, {"lr": [0.07, 0.2]}, budget="matched", steps=60)  # B = 12
    assert [(c.steps, c.distance_budget, c.record_steps) for _, c, _ in matched] == [
        (171, pytest.approx(12.0), (2, 5, 17)),  # 0.12 / 0.07 = 1.7, 0.36 / 0.07 = 5.1, 1.2 / 0.07 = 17.1
        (60, pytest.approx(12.0), (1, 2, 6))]  # 0.12 / 0.2 = 0.6, 0.36 / 0.2 = 1.8, 1.2 / 0.2 = 6
    by_epochs = plan_sweep(replace(base, steps=None, epochs=3), {"lr": [0.05, 0.2], "batch_size": [10, 25]},
                           n_train=100)
    totals = {(c.lr, c.batch_size): 3 * -(-100 // c.batch_size) for _, c, _ in by_epochs}  # 30 or 12 steps
    budget = min(lr * total for (lr, _), total in totals.items())
    assert budget == pytest.approx(0.05 * 12)
    for _, c, _ in by_epochs:
        assert c.distance_budget == pytest.approx(budget)
        expected = sorted({min(totals[c.lr, c.batch_size], max(1, round(f * budget / c.lr)))
                           for f in (0.01, 0.03, 0.1)})
        assert list(c.record_steps) == expected
    quiet = plan_sweep(replace(base, early_fractions=()), {"lr": [0.05, 0.2]})
    assert all(c.record_steps == () and c.distance_budget == pytest.approx(2.5) for _, c, _ in quiet)


def test_a_planned_run_started_meanwhile_by_another_job_is_resumed_not_replaced(tmp_path, monkeypatch,
                                                                               one_torch_thread):
    """Two jobs of one planned run: the second saw no ``run.json``, then built its dataset while the first trained
    the run to the end. Starting afresh would clear that complete run; the second job resumes it instead and every
    file is left as it was."""
    from probe.errors import RunStartedError
    from probe.train import sweep as sweep_module
    from probe.train.sweep import _train_one

    cfg = probe.TrainConfig(dataset="parity", model="mlp", lr=0.1, epochs=1,
                            dataset_options={"n_train": 64, "n_val": 16, "n_test": 16}, model_options={"width": 8})
    run_dir = tmp_path / "run"
    assert probe.train(cfg, run_dir).status == "complete"
    before = tree_digest(run_dir)
    with pytest.raises(RunStartedError):  # the fresh start refuses under the run's lock
        probe.train(cfg, run_dir, overwrite="unstarted")
    assert tree_digest(run_dir) == before

    real_path = sweep_module.Path

    class NoRunJsonYet(type(real_path())):  # the first look, before the other job wrote run.json
        def is_file(self):
            return False if self.name == "run.json" else super().is_file()

    monkeypatch.setattr(sweep_module, "Path", NoRunJsonYet)
    assert _train_one((cfg, str(run_dir), True, False, None))[1] == "complete"
    assert tree_digest(run_dir) == before


def test_a_leftover_without_run_json_is_replaced_by_a_fresh_start(tmp_path, one_torch_thread):
    cfg = probe.TrainConfig(dataset="parity", model="mlp", lr=0.1, epochs=1,
                            dataset_options={"n_train": 64, "n_val": 16, "n_test": 16}, model_options={"width": 8})
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ".lock").touch()  # a start killed before it wrote run.json
    assert probe.train(cfg, run_dir, overwrite="unstarted").status == "complete"


def test_parallel_jobs_share_the_cores_out_as_torch_threads(tmp_path, monkeypatch):
    """Each of ``jobs`` runs gets cores // jobs torch threads (at least 1) unless ``threads`` is given: jobs left at
    one thread per core each oversubscribe the cores."""
    from concurrent.futures import Future

    from probe.train import sweep as sweep_module
    from probe.train.sweep import threads_per_job

    assert [threads_per_job(j, cores=2) for j in (1, 2, 3)] == [2, 1, 1]
    assert threads_per_job(4, cores=16) == 4
    seen = []

    class Inline:  # the process pool, run in this process: records each task's threads
        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def submit(self, fn, task):
            seen.append(task[-1])
            future = Future()
            future.set_result((task[1], "complete", None))
            return future

    monkeypatch.setattr(sweep_module, "ProcessPoolExecutor", Inline)
    monkeypatch.setattr(sweep_module.os, "cpu_count", lambda: 8)
    cfg = probe.TrainConfig(dataset="parity", model="mlp", lr=0.1, epochs=1)
    plan = [("a", cfg, {}), ("b", cfg, {})]
    sweep_module._train_all(tmp_path, plan, resume=False, jobs=2, progress=False, threads=None)
    sweep_module._train_all(tmp_path, plan, resume=False, jobs=2, progress=False, threads=3)
    assert seen == [4, 4, 3, 3]
