"""Full verification of run and sweep directories: ``probe verify`` and ``probe info --verify``.

:func:`verify_run` re-reads everything a reader trusts: ``run.json``, ``manifest.json`` and ``diverged.json`` are
parsed and validated, and every committed epoch file is re-hashed against the manifest, opened through
:mod:`probe.store.safe_h5` and its records checked against ``run.json`` (:meth:`Run.verify`). Nothing is cached.

Example:
    >>> report = verify_run("checkpoints/demo/fixed/lr0.1_seed0")    # doctest: +SKIP
    >>> report.ok, report.line()                                      # doctest: +SKIP
    (False, '.../lr0.1_seed0: damaged: epoch_00003.h5: 35652 bytes, the manifest says 71304 (truncated?)')
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from probe.errors import ProbeError, RunDirectoryError
from probe.store.reader import SWEEP_JSON, Run, Sweep
from probe.store.writer import DIVERGED_JSON, MANIFEST_JSON, RUN_JSON


@dataclass(frozen=True)
class Problem:
    """What is wrong with one file of a run: ``file`` (its path) and ``reason`` (one line)."""

    file: Path
    reason: str

    @classmethod
    def from_error(cls, file: Path, err: BaseException) -> Problem:
        message = str(err.strerror if isinstance(err, OSError) and err.strerror else err)
        return cls(Path(file), message.removeprefix(f"{file}: "))

    def __str__(self) -> str:
        return f"{self.file.name}: {self.reason}"


@dataclass
class RunVerification:
    """The outcome of :func:`verify_run`: ``path`` of the run (or of a sweep whose ``sweep.json`` is damaged),
    the ``epochs`` that verified, and every ``problems`` found (empty when the run is intact)."""

    path: Path
    epochs: list[int] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def status(self) -> str:
        """``ok`` or ``damaged``."""
        return "ok" if self.ok else "damaged"

    def line(self) -> str:
        """``<path>: ok`` or ``<path>: damaged: <file>: <reason>`` (the first problem; ``(+N more)`` after it)."""
        if self.ok:
            return f"{self.path}: ok"
        more = f" (+{len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        return f"{self.path}: damaged: {self.problems[0]}{more}"


def verify_run(path: str | os.PathLike) -> RunVerification:
    """Verify the run directory ``path`` completely; every problem is collected, none raised.

    Checks ``run.json`` and ``manifest.json`` (present, valid JSON, required keys and types, manifest entries naming
    ``epoch_NNNNN.h5`` files of the run), ``diverged.json`` when present, and every committed epoch with
    :meth:`Run.verify` (size and sha256, HDF5 safety, attributes, model and optimizer state, record shapes, dtypes
    and value ranges). An epoch's first problem is reported and the next epoch is checked.
    """
    report = RunVerification(Path(path))
    try:
        run = Run(report.path)
    except (ProbeError, OSError) as err:
        report.problems.append(Problem.from_error(report.path / RUN_JSON, err))
        return report
    try:
        run.diverged  # noqa: B018 - parses and validates diverged.json
    except (ProbeError, OSError) as err:
        report.problems.append(Problem.from_error(report.path / DIVERGED_JSON, err))
    try:
        entries = run.manifest["epochs"]
    except (ProbeError, OSError) as err:
        report.problems.append(Problem.from_error(report.path / MANIFEST_JSON, err))
        return report
    for entry in entries:
        try:
            run.verify(entry["epoch"])
        except (ProbeError, OSError) as err:
            report.problems.append(Problem.from_error(report.path / entry["file"], err))
        else:
            report.epochs.append(entry["epoch"])
    return report


def verify_path(path: str | os.PathLike) -> list[RunVerification]:
    """:func:`verify_run` for a run directory, every started run of a sweep, or every sweep of a folder of sweeps.

    A sweep whose ``sweep.json`` is damaged gives one failed report for the sweep's path. Raises
    :class:`RunDirectoryError` when ``path`` is none of these.
    """
    p = Path(path)
    if (p / RUN_JSON).is_file():
        return [verify_run(p)]
    if (p / SWEEP_JSON).is_file():
        try:
            sweep = Sweep(p)
        except (ProbeError, OSError) as err:
            return [RunVerification(p, problems=[Problem.from_error(p / SWEEP_JSON, err)])]
        return [verify_run(run_dir) for run_dir in sweep.run_dirs()]
    sweeps = sorted(c for c in p.iterdir() if (c / SWEEP_JSON).is_file()) if p.is_dir() else []
    if not sweeps:
        what = "no such directory" if not p.exists() else "not a run, a sweep or a folder of sweeps"
        raise RunDirectoryError(f"{p}: {what}")
    return [report for sweep in sweeps for report in verify_path(sweep)]
