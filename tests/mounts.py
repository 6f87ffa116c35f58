"""Real small filesystems for tests: a tmpfs of a given size (a disk that fills up), or mounted read-only."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def _mount(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)


@contextlib.contextmanager
def tmpfs(where: Path, size: str, *, read_only: bool = False) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` (``"300k"``) at ``where`` for the duration of the block; skips the test where
    mounting is refused (not root, no mount namespace)."""
    where.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    try:
        res = _mount("-t", "tmpfs", "-o", options, "tmpfs", str(where))
    except (OSError, subprocess.SubprocessError) as err:
        pytest.skip(f"cannot mount a tmpfs here ({err}): the full-disk tests need root")
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip()}): the full-disk tests need root")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True, timeout=30).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30)


def resize(where: Path, size: str) -> None:
    """Grow (or shrink) a mounted tmpfs in place; its files stay."""
    res = _mount("-o", f"remount,size={size}", str(where))
    assert res.returncode == 0, res.stderr
