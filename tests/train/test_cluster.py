"""Planned sweeps on a cluster: ``--plan-only`` writes ``sweep.json`` and trains nothing; ``probe sweep run SWEEP
--index I`` trains one planned run (resuming it, or saying a finished one has nothing to do); separate processes, a
submitit job array with a preempted and requeued job, and a run taken over from a stale job all end bit-identical to
a serial sweep; the run lock refuses a second writer of a run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

import probe
from probe.cli import main
from tests.conftest import REPO, torch_threads
from tests.store.snapshot import tree_digest
from tests.store.test_commit_and_crash import assert_runs_identical
from tests.train.pace import PACE_ENV

PLUGIN = "tests.train.cluster_plugin"
DATA = ["--plugin", PLUGIN, "--dataset", "parity", "--data-option", "n_train=64", "--data-option", "n_val=16",
        "--data-option", "n_test=16", "--model", "paced-mlp", "--batch-size", "32"]
SWEEP = ["sweep", *DATA, "--lr", "0.1", "0.3", "--seeds", "0", "1", "--epochs", "6", "--threads", "1", "--quiet"]
NAMES = ["lr0.1_seed0", "lr0.1_seed1", "lr0.3_seed0", "lr0.3_seed1"]


@pytest.fixture(autouse=True, scope="module")
def models_registry_restored():
    """The in-process ``--plugin`` registers ``paced-mlp``: this module's tests (and fixtures) register it into a copy
    of the model registry, and the other test modules' registry never holds it."""
    from probe import models

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(models, "_MODELS", dict(models._MODELS))
        patch.delitem(sys.modules, PLUGIN, raising=False)
        yield
    sys.modules.pop(PLUGIN, None)


@pytest.fixture(scope="module")
def serial(tmp_path_factory) -> Path:
    """The sweep trained serially in this process: the reference every other way of training it must equal."""
    out = tmp_path_factory.mktemp("serial") / "sweep"
    with torch_threads(1):
        assert main([*SWEEP, "--out", str(out)]) == 0
    return out


def plan(out: Path) -> Path:
    with torch_threads(1):
        assert main([*SWEEP, "--out", str(out), "--plan-only"]) == 0
    return out


def env(**extra: str) -> dict[str, str]:
    """The environment of a fresh process that imports this checkout's probe and the test plugin."""
    return {**os.environ, "PYTHONPATH": str(REPO), **extra}


def sweep_run(out: Path, index: int | None, **extra_env: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "probe.cli", "sweep", "run", str(out), "--threads", "1", "--quiet"]
    if index is not None:
        args += ["--index", str(index)]
    return subprocess.Popen(args, cwd=REPO, env=env(**extra_env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def assert_same_as_serial(out: Path, serial: Path) -> None:
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == NAMES
    for name in NAMES:
        run = probe.open_run(out / name)
        assert run.status == "complete", name
        assert_runs_identical(run, probe.open_run(serial / name))


def committed_epochs(run_dir: Path) -> list[int]:
    try:
        return probe.open_run(run_dir).epochs
    except probe.errors.ProbeError:
        return []


def wait_for_epoch(run_dir: Path, epoch: int, proc: subprocess.Popen | None = None, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while epoch not in committed_epochs(run_dir):
        assert proc is None or proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{run_dir}: epoch {epoch} never committed"
        time.sleep(0.05)


def sweep_json(out: Path) -> dict:
    return json.loads((out / "sweep.json").read_text())


def test_plan_only_writes_the_whole_plan_and_trains_nothing(serial, tmp_path, capsys):
    out = plan(tmp_path / "planned")
    assert sorted(os.listdir(out)) == [".lock", "sweep.json"]
    planned, trained = sweep_json(out), sweep_json(serial)
    assert [r["name"] for r in planned["runs"]] == NAMES
    planned.pop("created"), trained.pop("created")
    planned["name"] = trained["name"]
    assert planned == trained  # the same runs, steps and early record steps as the sweep that trained them
    printed = capsys.readouterr().out
    assert f"probe sweep run {out} --index I" in printed
    assert f"sbatch --array=0-3 --wrap 'probe sweep run {out} --index $SLURM_ARRAY_TASK_ID'" in printed


@pytest.mark.parametrize("args, message", [
    (["--index", "4"], "--index 4: the sweep {out} plans 4 runs (indices 0 to 3)"),
    (["--index", "-1"], "--index -1: the sweep {out} plans 4 runs"),
    ([], "--index is required"),
    (["--index", "x"], "invalid int value"),
])
def test_a_bad_index_exits_2_on_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    out = plan(tmp_path / "planned")
    before = tree_digest(tmp_path)
    capsys.readouterr()
    assert main(["sweep", "run", str(out), *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert message.format(out=out) in lines[-1]
    assert len(lines) == 1 or lines[0].startswith("usage: probe sweep run")  # argparse's own: usage, then the error
    assert tree_digest(tmp_path) == before


@pytest.mark.parametrize("make", ["missing", "empty", "run-like"])
def test_a_missing_plan_exits_2_on_one_line_and_writes_nothing(tmp_path, capsys, make):
    target = tmp_path / "nothing"
    if make != "missing":
        target.mkdir()
    if make == "run-like":
        (target / "notes.txt").write_text("not a sweep")
    before = tree_digest(tmp_path)
    assert main(["sweep", "run", str(target), "--index", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("probe: error: ") and err.count("\n") == 1 and "no sweep.json" in err
    assert tree_digest(tmp_path) == before


def test_plan_only_refuses_a_launcher_and_cluster_options_need_one(tmp_path, capsys):
    for extra in (["--plan-only", "--launcher", "submitit"], ["--gpus", "1"], ["--then-analyze"],
                  ["--launcher", "submitit", "--time", "0"]):
        assert main([*SWEEP, "--out", str(tmp_path / "s"), *extra]) == 2
        assert not (tmp_path / "s").exists()
    assert "need --launcher submitit" in capsys.readouterr().err


def test_a_missing_submitit_is_one_line_exit_2_before_anything_is_written(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit raises ImportError
    assert main([*SWEEP, "--out", str(tmp_path / "s"), "--launcher", "submitit"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'probe[slurm]'" in err and err.count("\n") == 1
    assert not (tmp_path / "s").exists()


@pytest.mark.slow(seconds=40)
def test_an_array_of_plain_processes_equals_the_serial_sweep(serial, tmp_path):
    """Four ``probe sweep run`` processes, two at a time (one takes its index from ``SLURM_ARRAY_TASK_ID``), train
    the runs of a serial sweep bit for bit; a finished index again changes nothing and says so."""
    out = plan(tmp_path / "array")
    for pair in ((0, 1), (2, 3)):
        procs = [sweep_run(out, i) if i != 3 else sweep_run(out, None, SLURM_ARRAY_TASK_ID="3") for i in pair]
        for i, proc in zip(pair, procs):
            stdout, stderr = proc.communicate(timeout=300)
            assert proc.returncode == 0, stderr
            assert stdout.strip() == f"{out / NAMES[i]}: complete"
    assert_same_as_serial(out, serial)
    before = tree_digest(out)
    proc = sweep_run(out, 2)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert stdout.strip() == f"{out / NAMES[2]}: already complete (nothing to do)"
    assert tree_digest(out) == before


@pytest.mark.slow(seconds=30)
def test_the_run_lock_keeps_a_requeued_job_from_writing_beside_a_stale_one(serial, tmp_path, capsys):
    """A stale job still holds run 0 (frozen mid-run): the requeued one exits 2 and writes nothing. Once the stale
    one is gone (SIGKILL), the requeued one resumes from the last committed epoch (the committed epoch files stay as
    they are) and ends bit-identical to the serial sweep's run."""
    out = plan(tmp_path / "locked")
    run_dir = out / NAMES[0]
    stale = sweep_run(out, 0, **{PACE_ENV: "0.2"})
    try:
        wait_for_epoch(run_dir, 2, stale)
        os.kill(stale.pid, signal.SIGSTOP)
        before = tree_digest(out)
        capsys.readouterr()
        assert main(["sweep", "run", str(out), "--index", "0"]) == 2
        assert "another process is writing this run" in capsys.readouterr().err
        assert tree_digest(out) == before
    finally:
        stale.kill()
        stale.communicate()
    kept = {name: entry for name, entry in tree_digest(run_dir).items() if name.startswith("epoch_")}
    committed = set(probe.open_run(run_dir).epochs)
    with torch_threads(1):
        assert main(["sweep", "run", str(out), "--index", "0", "--quiet"]) == 0
    assert_runs_identical(probe.open_run(run_dir), probe.open_run(serial / NAMES[0]))
    after = tree_digest(run_dir)
    for name, entry in kept.items():
        if int(name[6:11]) in committed:
            assert after[name] == entry, name


@pytest.mark.slow(seconds=60)
def test_a_submitit_job_array_with_a_preempted_job_equals_the_serial_sweep(serial, tmp_path, monkeypatch):
    """The plan runs as a job array on submitit's local executor. One job is preempted mid-run (SIGUSR2, the signal
    submitit's executors send before a time limit or a preemption): its checkpoint() resubmits it, the executor
    requeues it, and it resumes from its last committed epoch. All four runs end equal to the serial sweep's, and
    ``sweep.json`` records the job ids."""
    from probe.train.cluster import submit_sweep
    from probe.train.cluster_job import PlannedRunJob

    monkeypatch.setenv(PACE_ENV, "0.15")  # the jobs inherit it: about 2 s of training per run
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    out = plan(tmp_path / "submitit")
    submission = submit_sweep(out, resources={"time": 10, "cpus": 1}, cluster="local", threads=1)
    record, jobs = submission.record, submission.jobs
    assert [(r["index"], r["name"]) for r in record["runs"]] == list(enumerate(NAMES))
    assert sweep_json(out)["jobs"] == [record]
    run_dir = out / NAMES[1]
    wait_for_epoch(run_dir, 2)
    committed = set(probe.open_run(run_dir).epochs)
    writer_pid = int((run_dir / ".lock").read_text())
    os.kill(writer_pid, signal.SIGUSR2)  # preempted: the job checkpoints and exits; the executor requeues it
    for job in jobs:
        assert job.result() == (str(out.resolve() / NAMES[jobs.index(job)]), "complete")
    assert_same_as_serial(out, serial)
    log = jobs[1].stdout()
    assert f"Requeued job {record['runs'][1]['job_id']}" in log  # submitit requeued it: no one restarted it by hand
    assert log.count("Starting with JobEnvironment") == 2
    assert int((run_dir / ".lock").read_text()) != writer_pid  # a second process finished the run ...
    assert committed and max(committed) < max(probe.open_run(run_dir).epochs)  # ... from where the first stopped
    assert isinstance(jobs[0].submission().function, PlannedRunJob)


class FakeSlurmExecutor:
    """Records what :func:`submit_sweep` asks of a submitit executor on Slurm; job ids ``77_<i>`` (one array)."""

    cluster = "slurm"

    def __init__(self):
        self.parameters: dict = {}
        self.updates: list[dict] = []
        self.submitted: list[tuple] = []
        self.in_batch = False

    def update_parameters(self, **params):
        self.updates.append(params)
        self.parameters.update(params)

    @contextmanager
    def batch(self):
        self.in_batch = True
        yield
        self.in_batch = False

    def submit(self, function, *args):
        job_id = f"77_{len(self.submitted)}" if self.in_batch else "78"
        self.submitted.append((function, args, dict(self.parameters), self.in_batch))
        return type("Job", (), {"job_id": job_id})()


def test_submitit_resources_map_to_executor_parameters_and_the_analysis_waits_for_the_array(tmp_path):
    """Each resource option sets its submitit parameter (names submitit itself accepts); every planned run is one job
    of one array, a Checkpointable whose checkpoint() resubmits itself; the analysis job depends on the array
    (afterok); sweep.json records the job ids."""
    import submitit

    from probe.cli.sweep import analyze_job
    from probe.train.cluster import executor_parameters, submit_sweep
    from probe.train.cluster_job import PlannedRunJob

    resources = {"gpus": 1, "cpus": 4, "mem-gb": 16, "time": 90, "partition": "gpu"}
    params = executor_parameters(resources)
    assert params == {"gpus_per_node": 1, "cpus_per_task": 4, "mem_gb": 16.0, "timeout_min": 90,
                      "slurm_partition": "gpu"}
    submitit.AutoExecutor(folder=tmp_path / "logs", cluster="local").update_parameters(
        **params, slurm_dependency="afterok:1")  # submitit validates every name, also the other cluster's
    out = plan(tmp_path / "slurm")
    executor = FakeSlurmExecutor()
    submission = submit_sweep(out, resources=resources, threads=2, then=(analyze_job, (str(out),)),
                              executor=executor)
    runs, (then_fn, then_args, then_params, then_in_batch) = executor.submitted[:4], executor.submitted[4]
    assert all(in_batch and params.items() <= p.items() for _, _, p, in_batch in runs)
    jobs = [fn for fn, _, _, _ in runs]
    assert [(j.sweep, j.index, j.threads) for j in jobs] == [(str(out.resolve()), i, 2) for i in range(4)]
    assert all(isinstance(j, PlannedRunJob) and isinstance(j, submitit.helpers.Checkpointable) for j in jobs)
    again = jobs[1].checkpoint()
    assert isinstance(again, submitit.helpers.DelayedSubmission) and again.function is jobs[1]
    assert (then_fn, then_args, then_in_batch) == (analyze_job, (str(out),), False)
    assert then_params["slurm_dependency"] == "afterok:77"
    assert sweep_json(out)["jobs"] == [submission.record]
    assert [r["job_id"] for r in submission.record["runs"]] == ["77_0", "77_1", "77_2", "77_3"]
    assert submission.record["then_job_id"] == "78" and submission.record["resources"] == params


def test_submitting_again_submits_only_the_unfinished_runs(serial, tmp_path):
    import shutil

    from probe.train.cluster import submit_sweep

    out = plan(tmp_path / "again")
    shutil.copytree(serial / NAMES[2], out / NAMES[2])
    executor = FakeSlurmExecutor()
    record = submit_sweep(out, executor=executor).record
    assert [r["index"] for r in record["runs"]] == [0, 1, 3]
    assert "slurm_dependency" not in executor.parameters


def test_probe_sweep_launcher_submitit_plans_submits_and_prints_the_job_ids(tmp_path, monkeypatch, capsys):
    import submitit

    made = []

    def auto_executor(folder, cluster=None):
        made.append((Path(folder), cluster))
        executor = FakeSlurmExecutor()
        made.append(executor)
        return executor

    monkeypatch.setattr(submitit, "AutoExecutor", auto_executor)
    out = tmp_path / "cli"
    with torch_threads(1):
        assert main([*SWEEP, "--out", str(out), "--launcher", "submitit", "--partition", "gpu", "--time", "30",
                     "--then-analyze"]) == 0
    assert made[0] == (tmp_path / "cli.submitit", None)
    assert made[1].updates[0] == {"name": "probe-cli", "timeout_min": 30, "slurm_partition": "gpu"}
    printed = capsys.readouterr().out
    for i, name in enumerate(NAMES):
        assert f"{out}/{name}: job 77_{i}" in printed
    assert f"probe analyze {out}: job 78" in printed
    assert [r["name"] for r in sweep_json(out)["runs"]] == NAMES and len(sweep_json(out)["jobs"]) == 1
    assert sorted(os.listdir(out)) == [".lock", "sweep.json"]  # nothing trained here
    assert main(["sweep", "--resume", "--out", str(out), "--launcher", "submitit", "--quiet"]) == 0  # again
    assert [len(s["runs"]) for s in sweep_json(out)["jobs"]] == [4, 4]  # nothing finished: every run again
