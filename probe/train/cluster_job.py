"""The submitit job of one planned sweep run (imported only once submitit is known to be installed).

:class:`PlannedRunJob` is a :class:`submitit.helpers.Checkpointable`: when Slurm preempts the job or its time limit
nears, submitit calls :meth:`PlannedRunJob.checkpoint`, which resubmits the same job; the requeued job resumes the run
from its last committed epoch (:func:`probe.train.sweep.train_planned_run`), so nothing but the job object itself is
checkpointed: the run directory is the state.
"""

from __future__ import annotations

from typing import Any

import submitit


class PlannedRunJob(submitit.helpers.Checkpointable):
    """Train run ``index`` of the sweep planned in ``sweep`` with ``threads`` torch CPU threads (None: torch's
    choice); returns ``(run_dir, status)``."""

    def __init__(self, sweep: str, index: int, threads: int | None = None):
        self.sweep, self.index, self.threads = str(sweep), int(index), threads

    def __call__(self) -> tuple[str, str]:
        from probe.train.sweep import train_planned_run

        run_dir, status, _ = train_planned_run(self.sweep, self.index, threads=self.threads)
        return run_dir, status

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """This very job again: the requeued job resumes the run from its last committed epoch."""
        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)

    def __repr__(self) -> str:
        return f"PlannedRunJob({self.sweep!r}, index={self.index})"
