"""Crash-safe file replacement: write a temporary file in the same directory, flush, fsync, rename over the target,
fsync the directory. A reader sees either the old file or the new one, never a partial one."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from probe.errors import DamagedFileError

TEMP_PREFIX = ".tmp-"


def temp_path_for(path: Path) -> Path:
    """The temporary sibling a write of ``path`` goes through (recognisable, so leftovers can be cleaned up)."""
    return path.with_name(f"{TEMP_PREFIX}{path.name}.{os.getpid()}")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes | memoryview) -> None:
    """``os.write`` until every byte of ``data`` is written (a short write is retried, so a full disk or a file-size
    limit surfaces as ``OSError`` with ENOSPC or EFBIG)."""
    view = memoryview(data).cast("B")
    while view:
        written = os.write(fd, view)
        view = view[written:]


def atomic_write_bytes(path: Path, data: bytes | memoryview, *,
                       fault_hook: Callable[[str], None] | None = None) -> None:
    """Replace ``path`` with ``data``: write a temporary sibling with plain OS writes, fsync it, rename it over
    ``path``, fsync the directory.

    On any failure (ENOSPC, EFBIG, an interrupt) the temporary file is removed, ``path`` keeps its old content and the
    ``OSError`` propagates, naming ``path``. ``fault_hook("mid-write")`` is called with half of ``data`` written, for
    crash tests.
    """
    path = Path(path)
    temp = temp_path_for(path)
    half = len(data) // 2
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            write_all(fd, memoryview(data)[:half])
            if fault_hook is not None:
                fault_hook("mid-write")
            write_all(fd, memoryview(data)[half:])
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except OSError as err:
        _remove_quietly(temp)
        if err.filename is None:  # os.write names no file; say which one could not be written
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise
    except BaseException:
        _remove_quietly(temp)
        raise
    fsync_dir(path.parent)


def _remove_quietly(path: Path) -> None:
    """Remove ``path`` if it exists; a failure to remove it (a read-only folder) never hides the error at hand."""
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def atomic_write_json(path: Path, obj: Any) -> None:
    """:func:`atomic_write_bytes` of ``obj`` as indented JSON."""
    atomic_write_bytes(Path(path), (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


#: Larger JSON files are refused unread: probe's own are a few KB (``sweep.json`` of a big sweep: a few hundred KB).
MAX_JSON_BYTES = 16 << 20


def read_json(path: Path) -> Any:
    """The JSON document in ``path``. A file that is not a regular file, larger than :data:`MAX_JSON_BYTES`, not
    UTF-8 or not valid JSON (a truncated write, say) raises :class:`DamagedFileError` naming it; a missing file
    raises ``FileNotFoundError``."""
    path = Path(path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # O_NONBLOCK: a FIFO in place of the file must not hang us
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise DamagedFileError(f"{path}: not a regular file")
        if st.st_size > MAX_JSON_BYTES:
            raise DamagedFileError(f"{path}: {st.st_size} bytes, more than a probe JSON file holds ({MAX_JSON_BYTES})")
        data = fh.read(MAX_JSON_BYTES + 1)
    if len(data) > MAX_JSON_BYTES:
        raise DamagedFileError(f"{path}: more than {MAX_JSON_BYTES} bytes, more than a probe JSON file holds")
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise DamagedFileError(f"{path}: not UTF-8 text (damaged?)") from None
    except json.JSONDecodeError as err:
        what = "empty" if not data.strip() else f"not valid JSON ({err.msg}: line {err.lineno}, column {err.colno})"
        raise DamagedFileError(f"{path}: {what}; truncated or damaged?") from None
    except RecursionError:
        raise DamagedFileError(f"{path}: JSON nested too deeply") from None


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
