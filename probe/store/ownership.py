"""What probe may replace or create: ``--overwrite`` removes only a run or sweep directory that probe can prove it
wrote and that no process is writing; a new directory is created without leaving anything behind when it fails.

A *probe run directory* holds ``run.json`` (a JSON object with ``schema_version`` and ``config``), ``manifest.json``
when present parses as a JSON object with an ``epochs`` list, and every entry is a regular file probe writes there:
``run.json``, ``manifest.json``, ``diverged.json``, ``epoch_NNNNN.h5``, ``resume_NNNNN.h5``, ``.lock`` and
``.tmp-<one of these>.<pid>`` leftovers of an interrupted atomic write. A directory holding nothing but ``.lock``
(a run whose start failed) also counts. A *probe sweep directory* holds ``sweep.json`` (a JSON object with a
``runs`` list), ``.lock``, ``.tmp-sweep.json.<pid>`` leftovers and sub-directories named in ``sweep.json``'s
runs, each of them a probe run directory. An empty directory can always be replaced. Anything else is refused with
:class:`RunDirectoryError` naming the first foreign entry, before anything is removed.

*Active*: a run whose writer lock is held, or a sweep whose own lock is held (a ``probe sweep`` process holds
``<sweep>/.lock`` from start to end) or any of whose runs is locked: refused with :class:`RunLockedError`.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from probe.errors import RunDirectoryError, RunLockedError, RunStartedError
from probe.store.atomic import TEMP_PREFIX
from probe.store.lock import LOCK_NAME, DirectoryLock, is_locked

RUN_JSON = "run.json"
MANIFEST_JSON = "manifest.json"
DIVERGED_JSON = "diverged.json"
SWEEP_JSON = "sweep.json"

def epoch_filename(epoch: int) -> str:
    return f"epoch_{epoch:05d}.h5"


def resume_filename(epoch: int) -> str:
    return f"resume_{epoch:05d}.h5"


_RUN_FILE = re.compile(r"(run\.json|manifest\.json|diverged\.json|epoch_\d{5,}\.h5|resume_\d{5,}\.h5)")
_RUN_TEMP = re.compile(re.escape(TEMP_PREFIX) + _RUN_FILE.pattern + r"\.\d+")
_SWEEP_TEMP = re.compile(re.escape(TEMP_PREFIX) + r"sweep\.json\.\d+")

#: Errors of ``mkdir`` that mean "this path cannot hold a directory" (bad input), not an I/O failure.
_BAD_PATH_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT, errno.ENOTDIR, errno.EEXIST,
                    errno.ENAMETOOLONG, errno.ELOOP, errno.EINVAL}


def directory_kind(path: Path) -> str:
    """``"empty"``, ``"run"`` or ``"sweep"`` for a directory probe may replace; :class:`RunDirectoryError` naming
    the first foreign entry otherwise. A directory holding only a ``.lock`` file (just created, or a run whose start
    failed) is empty. Reads only; takes no lock."""
    path = Path(path)
    entries = _entries(path)
    if all(entry == LOCK_NAME and _is_regular_file(path / entry) for entry in entries):
        return "empty"
    if SWEEP_JSON in entries:
        _check_sweep(path, entries)
        return "sweep"
    _check_run(path, entries)
    return "run"


def check_replaceable(path: Path, *, kind: str) -> str:
    """Raise unless ``--overwrite`` may replace ``path`` by a new ``kind`` (``run`` or ``sweep``) directory: it must
    be empty or a probe directory of that kind, and inactive. Returns what it is. Reads only; takes no lock."""
    path = Path(path)
    found = _check_kind(path, kind)
    for directory, what in _lock_holders(path, found):
        if is_locked(directory):
            raise RunLockedError(f"{directory}: another process is writing this {what}; it cannot be overwritten")
    return found


def clear_directory(path: Path, *, kind: str) -> None:
    """Empty the probe ``kind`` directory ``path`` for a new run or sweep, keeping ``path`` itself and its ``.lock``,
    which the caller holds. The lock of every run inside a sweep is taken and the ownership check repeated under
    those locks before anything is removed, so nothing is removed when any part is foreign or active."""
    path = Path(path)
    with ExitStack() as locks:
        found = _check_kind(path, kind)
        for directory, what in _lock_holders(path, found):
            if directory != path and (directory / LOCK_NAME).exists():
                locks.enter_context(DirectoryLock(directory, what))
        found = _check_kind(path, kind)
        run_names = _sweep_run_names(path) if found == "sweep" else set()
        for entry in _entries(path):
            target = path / entry
            if entry == LOCK_NAME:
                continue
            if entry in run_names:
                for name in _entries(target):
                    (target / name).unlink()
                target.rmdir()
            else:
                target.unlink()


def uncommitted_files(run_dir: Path, committed: set[str]) -> list[Path]:
    """What a crash of ``run_dir``'s writer can leave behind, and nothing else: regular files named
    ``.tmp-<a file probe writes>.<pid>`` and ``epoch_NNNNN.h5`` / ``resume_NNNNN.h5`` files not in ``committed``
    (the manifest's). Resume removes exactly these; any other entry is left alone."""
    run_dir = Path(run_dir)
    return [run_dir / entry for entry in _entries(run_dir)
            if (_RUN_TEMP.fullmatch(entry) or (entry.startswith(("epoch_", "resume_")) and _RUN_FILE.fullmatch(entry)
                                              and entry not in committed))
            and _is_regular_file(run_dir / entry)]


def check_new_directory(path: Path, *, overwrite: bool, kind: str) -> None:
    """Raise :class:`RunDirectoryError` unless a new ``kind`` directory can be written at ``path``; checked before
    anything is written. An existing non-empty directory needs ``overwrite`` and must pass
    :func:`check_replaceable`."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunDirectoryError(f"{path}: exists and is not a directory")
    if path.exists() and _entries(path):
        if not overwrite:
            raise RunDirectoryError(f"{path}: {_existing_state(path)}; "
                                    "pass --resume to continue it or --overwrite to replace it")
        check_replaceable(path, kind=kind)
    parent = path if path.exists() else _existing_ancestor(path)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise RunDirectoryError(f"{path}: not writable ({parent} does not allow writing)")


def make_directory(path: Path) -> None:
    """``mkdir -p path``; when that fails the directories it created are removed again and a path that cannot hold
    a directory (``/proc/x``, a file in the way, no permission, a read-only mount) raises :class:`RunDirectoryError`
    (other failures, e.g. a full disk, stay ``OSError``)."""
    path = Path(path)
    missing = []
    ancestor = path.absolute()
    while not ancestor.is_dir():
        missing.append(ancestor)
        if ancestor.parent == ancestor:
            break
        ancestor = ancestor.parent
    created = []
    try:
        for directory in reversed(missing):
            os.mkdir(directory)
            created.append(directory)
    except OSError as err:
        for directory in reversed(created):
            try:
                os.rmdir(directory)
            except OSError:
                pass
        if err.errno in _BAD_PATH_ERRNOS:
            raise RunDirectoryError(f"{path}: cannot create the directory ({err.strerror})") from None
        raise


def take_directory(path: Path, lock: DirectoryLock, *, overwrite: bool | str, kind: str) -> None:
    """Make ``path`` a fresh ``kind`` directory held by ``lock``: check it (:func:`check_new_directory`), create it,
    take the lock, then, under the lock, clear probe's own inactive directory (``overwrite``) or refuse one that was
    filled since the check. ``overwrite="unstarted"`` clears only what a start that never wrote ``run.json`` left
    behind, and raises :class:`~probe.errors.RunStartedError` for a run that another process started meanwhile (a
    planned run trained by two jobs at once). On any failure the lock is released again."""
    path = Path(path)
    check_new_directory(path, overwrite=bool(overwrite), kind=kind)
    make_directory(path)
    lock.acquire()
    try:
        if overwrite == "unstarted" and (path / "run.json").exists():
            raise RunStartedError(f"{path}: started by another process meanwhile; resume it (nothing was changed)")
        if overwrite:
            clear_directory(path, kind=kind)
        elif any(name != LOCK_NAME for name in os.listdir(path)):  # filled since the check
            raise RunDirectoryError(f"{path}: already exists; pass --resume to continue it or --overwrite to "
                                    "replace it")
    except BaseException:
        lock.release()
        raise


# -- helpers ---------------------------------------------------------------------------------------------------------
def _entries(path: Path) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except NotADirectoryError:
        raise RunDirectoryError(f"{path}: exists and is not a directory") from None


def _is_regular_file(path: Path) -> bool:
    return stat.S_ISREG(os.lstat(path).st_mode)


def _read_object(path: Path, required: dict[str, type]) -> dict[str, Any]:
    """The JSON object in ``path`` with ``required`` keys of the given types; RunDirectoryError otherwise."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as err:
        raise RunDirectoryError(f"{path}: not probe's (unreadable JSON: {err}); nothing was changed") from None
    if not isinstance(data, dict) or any(not isinstance(data.get(k), t) for k, t in required.items()):
        raise RunDirectoryError(f"{path}: not probe's (expected keys {', '.join(required)}); nothing was changed")
    return data


def _foreign(path: Path, entry: str, what: str) -> RunDirectoryError:
    return RunDirectoryError(f"{path}: not a probe {what} directory ({entry!r} is not probe's); nothing was changed")


def _check_run(path: Path, entries: list[str]) -> None:
    for entry in entries:
        if not (entry == LOCK_NAME or _RUN_FILE.fullmatch(entry) or _RUN_TEMP.fullmatch(entry)):
            raise _foreign(path, entry, "run")
        if not _is_regular_file(path / entry):
            raise _foreign(path, entry, "run")
    if entries == [LOCK_NAME]:
        return  # a run whose start failed before run.json was written
    if RUN_JSON not in entries:
        raise RunDirectoryError(f"{path}: not a probe run directory (no {RUN_JSON}); nothing was changed")
    _read_object(path / RUN_JSON, {"schema_version": str, "config": dict})
    if MANIFEST_JSON in entries:
        _read_object(path / MANIFEST_JSON, {"epochs": list})


def _sweep_run_names(path: Path) -> set[str]:
    runs = _read_object(path / SWEEP_JSON, {"runs": list})["runs"]
    return {r["name"] for r in runs if isinstance(r, dict) and isinstance(r.get("name"), str)}


def _check_sweep(path: Path, entries: list[str]) -> None:
    names = _sweep_run_names(path)
    for entry in entries:
        target = path / entry
        if entry in (SWEEP_JSON, LOCK_NAME) or _SWEEP_TEMP.fullmatch(entry):
            if not _is_regular_file(target):
                raise _foreign(path, entry, "sweep")
        elif entry in names and stat.S_ISDIR(os.lstat(target).st_mode):
            run_entries = _entries(target)
            if run_entries:
                _check_run(target, run_entries)
        else:
            raise _foreign(path, entry, "sweep")


def _check_kind(path: Path, kind: str) -> str:
    found = directory_kind(path)
    if found not in ("empty", kind):
        raise RunDirectoryError(f"{path}: is a probe {found} directory, not a {kind}; "
                                f"--overwrite replaces only a {kind} directory; nothing was changed")
    return found


def _lock_holders(path: Path, kind: str) -> list[tuple[Path, str]]:
    """The directories whose locks say whether ``path`` (of ``kind``) is being written."""
    if kind == "sweep":
        return [(path, "sweep"), *((path / n, "run") for n in sorted(_sweep_run_names(path)) if (path / n).is_dir())]
    return [(path, kind if kind != "empty" else "directory")]


def _existing_state(path: Path) -> str:
    """How an existing directory is described when a new one was asked for."""
    try:
        info = json.loads((path / RUN_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "already exists"
    if isinstance(info, dict) and info.get("status") == "failed":
        return f"already exists and its run failed ({info.get('error', 'no error recorded')})"
    return "already exists"


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists():
        path = path.parent
    if not path.is_dir():
        raise RunDirectoryError(f"{path}: is a file, cannot create a directory below it")
    return path
