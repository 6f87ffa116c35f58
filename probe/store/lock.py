"""One writer per run or sweep directory: an exclusive ``flock`` on ``<dir>/.lock``, released by the kernel when the
writer exits for any reason (including SIGKILL), so a crashed run can always be resumed.

Two properties beyond the plain ``flock``:

- :func:`is_locked` never takes the lock. On Linux it looks the lock file up in ``/proc/locks``; a status poll in a
  tight loop therefore never makes a real writer's :meth:`DirectoryLock.acquire` fail.
- A process forked by the lock holder (a DataLoader worker, say) closes its inherited copy of the lock's file
  descriptor at once, so when the holder dies the lock is released even while such children still run.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from probe.errors import RunLockedError

LOCK_NAME = ".lock"
PROC_LOCKS = "/proc/locks"

#: Descriptors of the locks this process holds; a forked child closes its copies (:func:`_close_in_forked_child`).
_HELD_FDS: set[int] = set()


class DirectoryLock:
    """Exclusive, non-blocking writer lock of a run or sweep directory. Use as a context manager or call
    :meth:`acquire` / :meth:`release`. ``what`` names the directory in the error (``run`` or ``sweep``)."""

    def __init__(self, directory: Path, what: str = "run"):
        self.path = Path(directory) / LOCK_NAME
        self.what = what
        self._fd: int | None = None
        self._owner_pid: int | None = None

    @property
    def held(self) -> bool:
        """True in the process that acquired the lock, until :meth:`release` (never in a forked child)."""
        return self._fd is not None and self._owner_pid == os.getpid()

    def acquire(self) -> DirectoryLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunLockedError(f"{self.path.parent}: another process is writing this {self.what}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd, self._owner_pid = fd, os.getpid()
        _HELD_FDS.add(fd)
        return self

    def release(self) -> None:
        """Unlock and close; in a forked child (whose copy of the descriptor is already closed) only forget it."""
        held = self.held
        fd, self._fd = self._fd, None
        if held and fd is not None:
            _HELD_FDS.discard(fd)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> DirectoryLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


#: The writer lock of a run directory (the name the rest of probe uses).
RunLock = DirectoryLock


def _close_in_forked_child() -> None:
    """Drop a forked child's copies of the parent's lock descriptors without unlocking (the lock belongs to the
    open file description, which the parent still holds)."""
    for fd in _HELD_FDS:
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD_FDS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_in_forked_child)


def is_locked(directory: Path) -> bool:
    """True while some process holds the writer lock of ``directory``. Never takes the lock itself."""
    path = Path(directory) / LOCK_NAME
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    held = _held_in_proc_locks(st)
    if held is not None:
        return held
    return _held_by_try_lock(path)


def _held_in_proc_locks(st: os.stat_result) -> bool | None:
    """Whether ``/proc/locks`` lists a lock held on the file with ``st``; None when it cannot tell (no
    ``/proc/locks``, or a lock on the same inode number whose device differs from ``st_dev``, as on btrfs
    subvolumes, where the kernel reports the filesystem's device rather than the subvolume's)."""
    try:
        with open(PROC_LOCKS, encoding="ascii", errors="replace") as fh:
            lines = fh.readlines()
    except OSError:
        return None
    same_inode = False
    for line in lines:
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 4182 fe:00:2163342 0 EOF"; waiting requests have "->" after the number
        if len(fields) < 6 or fields[1] == "->":
            continue
        major, _, rest = fields[5].partition(":")
        minor, _, inode = rest.partition(":")
        try:
            if int(inode) != st.st_ino:
                continue
            if (int(major, 16), int(minor, 16)) == (os.major(st.st_dev), os.minor(st.st_dev)):
                return True
        except ValueError:
            continue
        same_inode = True
    return None if same_inode else False


def _held_by_try_lock(path: Path) -> bool:
    """Fallback where ``/proc/locks`` cannot answer: briefly try a shared lock."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
