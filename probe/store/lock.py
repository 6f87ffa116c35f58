"""One writer per run directory: an exclusive ``flock`` on ``<run>/.lock``, released by the kernel when the writer
exits for any reason (including SIGKILL), so a crashed run can always be resumed."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from probe.errors import RunLockedError

LOCK_NAME = ".lock"


class RunLock:
    """Exclusive, non-blocking writer lock. Use as a context manager or call :meth:`acquire` / :meth:`release`."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunLockedError(f"{self.path.parent}: another process is writing this run") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def is_locked(run_dir: Path) -> bool:
    """True while some process holds the writer lock of ``run_dir``."""
    path = Path(run_dir) / LOCK_NAME
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
