"""Crash-safe file replacement: write a temporary file in the same directory, flush, fsync, rename over the target,
fsync the directory. A reader sees either the old file or the new one, never a partial one."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

from probe.errors import DamagedFileError

TEMP_PREFIX = ".tmp-"


def temp_path_for(path: Path) -> Path:
    """The temporary sibling a write of ``path`` goes through (recognisable, so leftovers can be cleaned up)."""
    return path.with_name(f"{TEMP_PREFIX}{path.name}.{os.getpid()}")


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(temp: Path, path: Path) -> None:
    """fsync ``temp``, rename it to ``path`` and fsync the directory."""
    fsync_file(temp)
    os.replace(temp, path)
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    temp = temp_path_for(path)
    try:
        with open(temp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, path)
        fsync_dir(path.parent)
    finally:
        if temp.exists():
            temp.unlink()


def atomic_write_json(path: Path, obj: Any) -> None:
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
        what = "empty" if not data.strip() else f"not valid JSON ({err.msg} at line {err.lineno} column {err.colno})"
        raise DamagedFileError(f"{path}: {what}; truncated or damaged?") from None
    except RecursionError:
        raise DamagedFileError(f"{path}: JSON nested too deeply") from None


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def remove_temp_files(directory: Path) -> list[Path]:
    """Delete leftovers of interrupted atomic writes in ``directory``; returns what was removed."""
    removed = []
    for p in Path(directory).glob(f"{TEMP_PREFIX}*"):
        p.unlink(missing_ok=True)
        removed.append(p)
    return removed
