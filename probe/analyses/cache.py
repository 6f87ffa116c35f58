"""The one on-disk cache of ``probe analyze``: JSON documents and numpy arrays under a folder, each valid for a key.

A :class:`FileCache` is a folder. Every entry is written through :mod:`probe.store.atomic` (temporary sibling, fsync,
rename), so a reader sees an old entry or a new one, never a partial one. A JSON entry is one file; an array entry is
an ``.npy`` file (``allow_pickle=False``) with a ``.json`` sidecar holding the key it was computed for, so that a
change in what produced it (the epoch file's sha256, the model, the split size) makes it a miss. A missing, damaged
or mismatched entry reads as a miss (None): the caller computes the value again and overwrites it. Without a folder
(``root=None``) nothing is stored and every read misses.

The engine's metric cache (:class:`probe.analyses.engine.cache.MetricCache`) and the feature cache of
:func:`probe.analyses.features.cached_features` are both built on it.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from probe.errors import ProbeError, UnsafePathError
from probe.store.atomic import atomic_write_bytes, read_json

__all__ = ["FileCache"]


class FileCache:
    """Entries under ``root`` addressed by relative paths (``features/<run>/epoch_00003_test.npy``).

    Args:
        root: the cache folder (created on the first write), or None for a cache that stores nothing.
    """

    def __init__(self, root: str | Path | None):
        self.root = None if root is None else Path(root)

    def __repr__(self) -> str:
        return f"FileCache({str(self.root)!r})"

    def path(self, name: str | Path) -> Path:
        """Where the entry ``name`` lives (``root / name``). Names are built from run and sweep folder names; one that
        is absolute or holds ``..`` would leave the cache folder and is refused."""
        if self.root is None:
            raise ValueError("this cache has no folder")
        relative = Path(name)
        if relative.is_absolute() or ".." in relative.parts:
            raise UnsafePathError(f"cache entry {str(name)!r} would lie outside {self.root}")
        return self.root / relative

    # -- JSON entries --------------------------------------------------------------------------------------------------
    def load_json(self, name: str | Path) -> Any | None:
        """The JSON document stored under ``name``, or None when it is missing or unreadable."""
        if self.root is None:
            return None
        path = self.path(name)
        if not path.is_file():
            return None
        try:
            return read_json(path)
        except (OSError, ProbeError):
            return None

    def store_json(self, name: str | Path, document: Any) -> None:
        """Replace the entry ``name`` with ``document`` (atomically; nothing without a folder)."""
        if self.root is None:
            return
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, json.dumps(document, sort_keys=True).encode())

    # -- array entries -------------------------------------------------------------------------------------------------
    def load_array(self, name: str | Path, key: dict[str, Any]) -> np.ndarray | None:
        """The array stored under ``name`` when its sidecar key equals ``key``, else None."""
        if self.root is None:
            return None
        path = self.path(name)
        if self.load_json(_sidecar(Path(name))) != key or not path.is_file():
            return None
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None

    def store_array(self, name: str | Path, array: np.ndarray, key: dict[str, Any]) -> None:
        """Store ``array`` under ``name`` with its ``key``: the old key is removed first and the new one written last,
        so an interrupted write reads as a miss, never as the new array under the old key."""
        if self.root is None:
            return
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path(_sidecar(Path(name))).unlink()
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(array), allow_pickle=False)
        atomic_write_bytes(path, buffer.getbuffer())
        self.store_json(_sidecar(Path(name)), key)


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")
