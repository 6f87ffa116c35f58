"""The one writer of a run directory: creates it, commits epoch files and keeps ``manifest.json`` and ``run.json``.

Commit protocol for epoch ``e`` (each step survives a crash at any point):

1. build the HDF5 file in memory, write it to ``.tmp-epoch_{e:05d}.h5.<pid>`` with plain OS writes and fsync it;
2. rename it to ``epoch_{e:05d}.h5`` and fsync the directory;
3. write the resume file ``resume_{e:05d}.h5`` (optimizer and RNG states, and the weights when the epoch file holds
   none) the same way;
4. hash the bytes written and replace ``manifest.json`` atomically the same way (this is the commit marker: it lists
   the epoch file and names the resume file);
5. remove the previous resume file.

Readers trust only what the manifest lists, so an epoch or resume file without a manifest entry (a crash between 2
and 4) is invisible and is removed on resume; until step 4 the previous resume file is the one the manifest names,
so a crash anywhere leaves a resumable run.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import signal
from pathlib import Path
from typing import Any

from probe.errors import RunDirectoryError
from probe.store.atomic import atomic_write_bytes, atomic_write_json, read_json
from probe.store.epoch_file import EpochPayload, ResumePayload, resume_file_image, write_epoch_h5
from probe.store.lock import RunLock
from probe.store.metadata import check_manifest
from probe.store.ownership import (
    DIVERGED_JSON,
    MANIFEST_JSON,
    RUN_JSON,
    check_new_directory,
    epoch_filename,
    resume_filename,
    take_directory,
    uncommitted_files,
)
from probe.store.schema import SCHEMA_VERSION, check_schema

__all__ = ["DIVERGED_JSON", "MANIFEST_JSON", "RUN_JSON", "RunWriter", "check_new_run_dir", "epoch_filename",
           "resume_filename"]

#: Fault injection for crash tests: ``PROBE_FAULT=<phase>:<epoch>`` SIGKILLs the writer at that point of that
#: epoch's commit. Phases: before-temp, mid-write, after-rename, after-resume (the resume file is written, the
#: manifest not yet).
FAULT_ENV = "PROBE_FAULT"


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _fault(phase: str, epoch: int) -> None:
    spec = os.environ.get(FAULT_ENV)
    if spec and spec == f"{phase}:{epoch}":
        os.kill(os.getpid(), signal.SIGKILL)


def check_new_run_dir(run_dir: Path, *, overwrite: bool = False) -> None:
    """Raise :class:`RunDirectoryError` unless a new run can be written at ``run_dir`` (checked before writing).

    With ``overwrite`` an existing directory must be an inactive probe run (see :mod:`probe.store.ownership`)."""
    check_new_directory(run_dir, overwrite=overwrite, kind="run")


def one_line_error(error: BaseException, limit: int = 500) -> str:
    """``"DataFormatError: img/1.jpg: truncated JPEG"``: the error's type and message on one line."""
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class RunWriter:
    """Writes one run directory. Holds the writer lock from :meth:`create` / :meth:`resume` until :meth:`close`."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self._lock = RunLock(self.run_dir)
        self.manifest: dict[str, Any] = {}
        self.run_info: dict[str, Any] = {}

    # -- opening -------------------------------------------------------------------------------------------------
    @classmethod
    def create(cls, run_dir: Path, run_info: dict[str, Any], *, overwrite: bool | str = False) -> RunWriter:
        """Start a new run directory with ``run_info`` (config, versions ...) as ``run.json``; ``overwrite`` as
        :func:`~probe.store.ownership.take_directory` takes it."""
        run_dir = Path(run_dir)
        writer = cls(run_dir)
        take_directory(run_dir, writer._lock, overwrite=overwrite, kind="run")
        try:
            writer.run_info = {"schema_version": SCHEMA_VERSION, **run_info, "status": "running",
                               "created": now_iso(), "updated": now_iso()}
            atomic_write_json(run_dir / RUN_JSON, writer.run_info)
            writer.manifest = {"schema_version": SCHEMA_VERSION, "epochs": []}
            atomic_write_json(run_dir / MANIFEST_JSON, writer.manifest)
        except BaseException:
            writer._lock.release()
            raise
        return writer

    @classmethod
    def resume(cls, run_dir: Path) -> RunWriter:
        """Reopen an existing run for writing; uncommitted leftovers of a crash are removed."""
        run_dir = Path(run_dir)
        if not (run_dir / RUN_JSON).is_file() or not (run_dir / MANIFEST_JSON).is_file():
            raise RunDirectoryError(
                f"{run_dir}: not a run directory (run.json or manifest.json missing); nothing to resume"
            )
        writer = cls(run_dir)
        writer._lock.acquire()
        try:
            writer.run_info = read_json(run_dir / RUN_JSON)
            check_schema(writer.run_info.get("schema_version"), str(run_dir / RUN_JSON))
            writer.manifest = check_manifest(read_json(run_dir / MANIFEST_JSON), run_dir / MANIFEST_JSON)
            committed = {e["file"] for e in writer.manifest["epochs"]}
            if "resume" in writer.manifest:
                committed.add(writer.manifest["resume"]["file"])
            for leftover in uncommitted_files(run_dir, committed):
                leftover.unlink()
            # from here on the run is written in this probe's schema (files of older ones stay readable)
            writer.run_info["schema_version"] = SCHEMA_VERSION
            (run_dir / DIVERGED_JSON).unlink(missing_ok=True)
            writer.run_info.pop("error", None)  # of an earlier failed attempt
            writer.set_status("running")
        except BaseException:
            writer._lock.release()
            raise
        return writer

    # -- writing -------------------------------------------------------------------------------------------------
    @property
    def committed_epochs(self) -> list[int]:
        return [e["epoch"] for e in self.manifest["epochs"]]

    def commit_epoch(self, payload: EpochPayload, resume: ResumePayload | None = None) -> dict[str, Any]:
        """Write, publish and commit one epoch file and (when given) the resume file of the same epoch; returns the
        epoch's manifest entry.

        Files are built in memory and written with plain OS writes, so a full disk (or a file-size limit) raises
        ``OSError`` with the temporary file removed and every committed epoch untouched."""
        epoch = payload.epoch
        if resume is not None and resume.epoch != epoch:
            raise ValueError(f"resume state of epoch {resume.epoch} committed with epoch {epoch}")
        path = self.run_dir / epoch_filename(epoch)
        _fault("before-temp", epoch)
        image = write_epoch_h5(path, payload, fault_hook=lambda phase: _fault(phase, epoch))
        _fault("after-rename", epoch)
        entry = {
            "epoch": epoch,
            "file": path.name,
            "size": len(image),
            "sha256": hashlib.sha256(image).hexdigest(),
            "global_step": payload.global_step,
            "weights": payload.model_state is not None,
            **payload.position(),
            "committed": now_iso(),
        }
        previous = self.manifest.get("resume")
        manifest = dict(self.manifest)
        if resume is not None:
            resume_image = resume_file_image(resume)
            atomic_write_bytes(self.run_dir / resume_filename(epoch), resume_image)
            _fault("after-resume", epoch)
            manifest["resume"] = {"epoch": epoch, "file": resume_filename(epoch), "size": len(resume_image),
                                  "sha256": hashlib.sha256(resume_image).hexdigest()}
        epochs = [e for e in self.manifest["epochs"] if e["epoch"] != epoch] + [entry]
        self.manifest = {**manifest, "schema_version": SCHEMA_VERSION,
                         "epochs": sorted(epochs, key=lambda e: e["epoch"])}
        atomic_write_json(self.run_dir / MANIFEST_JSON, self.manifest)
        if isinstance(previous, dict) and previous.get("file") != self.manifest.get("resume", {}).get("file"):
            (self.run_dir / previous["file"]).unlink(missing_ok=True)
        return entry

    def update_info(self, **fields: Any) -> None:
        """Replace ``fields`` of ``run.json`` (atomically), keeping the rest."""
        self.run_info = {**self.run_info, **fields, "updated": now_iso()}
        atomic_write_json(self.run_dir / RUN_JSON, self.run_info)

    def set_status(self, status: str, **fields: Any) -> None:
        self.run_info = {**self.run_info, **fields, "status": status, "updated": now_iso()}
        atomic_write_json(self.run_dir / RUN_JSON, self.run_info)

    def record_stop(self, status: str, error: BaseException | None = None) -> None:
        """Record in ``run.json`` that training stopped early: ``failed`` (with a one-line ``error``) or
        ``interrupted``. Best effort: when even this write fails (a full disk), ``run.json`` keeps ``running`` and
        readers report ``interrupted`` once the lock is released."""
        fields = {"error": one_line_error(error)} if error is not None else {}
        try:
            self.set_status(status, **fields)
        except OSError:
            pass

    def write_diverged(self, record: dict[str, Any]) -> None:
        atomic_write_json(self.run_dir / DIVERGED_JSON, record)

    def close(self) -> None:
        self._lock.release()

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
