"""Planned sweeps on a cluster: every run of ``sweep.json`` as one job of a submitit job array (Slurm, or submitit's
local executor), each job checkpointable, so that preemption or a time limit requeues it and it resumes the run from
its last committed epoch.

submitit is an optional dependency (``pip install 'probe[slurm]'``), imported only here and only when a sweep is
submitted. A plain Slurm job array needs none of this: ``probe sweep run SWEEP --index $SLURM_ARRAY_TASK_ID``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probe.errors import ProbeError, ProbeInputError
from probe.store.atomic import atomic_write_json, read_json


@dataclass
class Submission:
    """What :func:`submit_sweep` submitted: its entry in ``sweep.json``'s ``jobs`` (``record``), the submitit job of
    each run (``jobs``, in ``record["runs"]`` order) and the job submitted after them (``then``) or None."""

    record: dict[str, Any]
    jobs: list[Any]
    then: Any = None


@dataclass(frozen=True)
class Resource:
    """A job resource: its command-line option ``--<flag>``, the submitit executor parameter it sets
    (``executor.update_parameters``), its type, its help."""

    flag: str
    parameter: str
    type: type
    help: str


#: The resources of each job, declared once: the options of ``probe sweep --launcher submitit`` and the submitit
#: (AutoExecutor) parameters they map to. ``slurm_``-prefixed ones apply on Slurm only.
RESOURCES = (
    Resource("gpus", "gpus_per_node", int, "GPUs per job"),
    Resource("cpus", "cpus_per_task", int, "CPU cores per job"),
    Resource("mem-gb", "mem_gb", float, "memory per job, in GB"),
    Resource("time", "timeout_min", int, "time limit per job, in minutes (near it the job checkpoints and is "
                                         "requeued; it resumes from its last committed epoch)"),
    Resource("partition", "slurm_partition", str, "Slurm partition"),
)


def executor_parameters(values: dict[str, Any]) -> dict[str, Any]:
    """The submitit parameters of the resources given in ``values`` (keyed by :attr:`Resource.flag`; None: not
    given). Numbers must be > 0."""
    unknown = sorted(set(values) - {r.flag for r in RESOURCES})
    if unknown:
        raise ProbeInputError(f"unknown job resource {unknown[0]!r}; known: {', '.join(r.flag for r in RESOURCES)}")
    params: dict[str, Any] = {}
    for r in RESOURCES:
        value = values.get(r.flag)
        if value is None:
            continue
        if r.type in (int, float) and not value > 0:
            raise ProbeInputError(f"--{r.flag} must be > 0, got {value}")
        params[r.parameter] = r.type(value)
    return params


def import_submitit():
    """The submitit module, or a one-line :class:`ProbeInputError` saying how to install it."""
    try:
        import submitit
    except ImportError:
        raise ProbeInputError("--launcher submitit needs the submitit package: pip install 'probe[slurm]' "
                              "(or run the plan as a plain job array: probe sweep run SWEEP --index I)") from None
    return submitit


def default_log_folder(sweep: str | Path) -> Path:
    """submitit's folder of a sweep's jobs (their pickled submissions, stdout, stderr): ``<sweep>.submitit`` beside
    the sweep directory, which holds only probe's own files."""
    sweep = Path(sweep)
    return sweep.parent / f"{sweep.name}.submitit"


def unfinished_indices(sweep: str | Path) -> list[int]:
    """Indices of the planned runs of ``sweep`` that are neither complete nor diverged."""
    from probe.store.reader import RUN_JSON, Run
    from probe.train.sweep import stored_plan

    sweep = Path(sweep)
    indices = []
    for i, (name, _, _) in enumerate(stored_plan(sweep)):
        run_dir = sweep / name
        if not (run_dir / RUN_JSON).is_file() or Run(run_dir).status not in ("complete", "diverged"):
            indices.append(i)
    return indices


def submit_sweep(sweep: str | Path, *, resources: dict[str, Any] | None = None, cluster: str | None = None,
                 folder: str | Path | None = None, indices: Sequence[int] | None = None,
                 threads: int | None = None, then: tuple[Callable[..., Any], tuple[Any, ...]] | None = None,
                 executor: Any = None) -> Submission:
    """Submit the runs ``indices`` (default: every unfinished one) of the sweep planned in ``sweep`` as one submitit
    job array; return the :class:`Submission`, whose ``record`` (job ids, folder, cluster, resources) is appended to
    ``sweep.json``'s ``jobs`` list.

    ``cluster`` is submitit's (``slurm``, ``local``, ``debug``; None: Slurm where ``sbatch`` exists, else local);
    ``resources`` maps :data:`RESOURCES` flags to values. Each job is a
    :class:`~probe.train.cluster_job.PlannedRunJob`, checkpointable: a preempted or timed-out job is requeued and
    resumes its run. ``then = (function, args)`` is submitted after the array, on Slurm as a job depending on it
    (``afterok``); executors without dependencies (local, debug) wait for the array's jobs first and submit it only
    when every one succeeded. ``executor`` replaces the submitit executor (tests)."""
    from probe.store.writer import now_iso
    from probe.train.sweep import stored_plan

    sweep = Path(sweep)
    plan = stored_plan(sweep)  # the plan's errors first, before submitit is even imported
    params = executor_parameters(resources or {})
    indices = unfinished_indices(sweep) if indices is None else list(indices)
    bad = [i for i in indices if not 0 <= i < len(plan)]
    if bad:
        raise ProbeInputError(f"index {bad[0]}: the sweep {sweep} plans {len(plan)} runs "
                              f"(indices 0 to {len(plan) - 1})")
    folder = Path(folder) if folder is not None else default_log_folder(sweep)
    if executor is None:
        submitit = import_submitit()
        executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    from probe.train.cluster_job import PlannedRunJob

    executor.update_parameters(name=f"probe-{sweep.name}", **params)
    jobs = []
    if indices:
        with executor.batch():
            jobs = [executor.submit(PlannedRunJob(str(sweep.resolve()), i, threads)) for i in indices]
    record: dict[str, Any] = {
        "launcher": "submitit", "cluster": getattr(executor, "cluster", cluster), "folder": str(folder),
        "submitted": now_iso(), "resources": params,
        "runs": [{"index": i, "name": plan[i][0], "job_id": str(job.job_id)} for i, job in zip(indices, jobs)],
    }
    then_job = None
    if then is not None:
        then_job = _submit_after(executor, jobs, then)
        record["then_job_id"] = str(then_job.job_id)
    _record_submission(sweep, record)
    return Submission(record, jobs, then_job)


def _submit_after(executor: Any, jobs: list[Any], then: tuple[Callable[..., Any], tuple[Any, ...]]) -> Any:
    """Submit ``then`` once ``jobs`` have all succeeded: a Slurm ``afterok`` dependency on their arrays, else after
    waiting for them here."""
    function, args = then
    if jobs and getattr(executor, "cluster", None) == "slurm":
        arrays = sorted({str(job.job_id).split("_")[0] for job in jobs})
        executor.update_parameters(slurm_dependency="afterok:" + ":".join(arrays))
    else:
        failed = []
        for job in jobs:
            try:
                job.result()
            except Exception as err:  # noqa: BLE001 -- submitit re-raises the job's own error
                failed.append(f"job {job.job_id}: {str(err).strip().splitlines()[-1] if str(err).strip() else err}")
        if failed:
            raise ProbeError(f"{len(failed)} run job(s) failed, so the job that follows was not submitted: "
                             + "; ".join(failed))
    return executor.submit(function, *args)


def _record_submission(sweep: Path, record: dict[str, Any]) -> None:
    """Append ``record`` to ``sweep.json``'s ``jobs`` (an atomic rewrite; the jobs never write ``sweep.json``)."""
    from probe.store.reader import SWEEP_JSON

    stored = read_json(sweep / SWEEP_JSON)
    stored.setdefault("jobs", []).append(record)
    atomic_write_json(sweep / SWEEP_JSON, stored)
