"""Files named by a dataset's metadata stay inside the folder they are listed relative to.

A release lists its files relative to a folder (Waterbirds' ``metadata.csv``, CelebA's attribute list), or a reader
joins fixed names or scanned names to a folder (MNIST, CIFAR, ImageNet class folders). Every such join goes through
:func:`confined_paths`, which refuses, with a one-line :class:`~probe.errors.UnsafePathError` naming the listing file,
the row and the path:

- an absolute path (``/etc/passwd``), an empty path or one holding a NUL byte;
- a ``..`` component (``../../secret/secret.jpg``), even one that would come back inside;
- a path whose real location, with every symlink resolved, lies outside the folder's own real location (a class
  folder or an image that is a symlink out of the release). Symlinks that stay inside are followed.

The folder itself may be a symlink (a release kept on another disk): containment is checked against its resolved
location. Checks run when the dataset is built, before anything is trained or written.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from probe.errors import UnsafePathError


def confined_paths(root: str | os.PathLike, listed: Sequence[str], *, source: str | os.PathLike,
                   rows: Sequence[object] | None = None, what: str = "file") -> list[Path]:
    """``root / p`` for every ``p`` in ``listed``, each proven to stay inside ``root``.

    Args:
        root: the folder the paths are relative to.
        listed: paths as written in the listing (``/``-separated).
        source: the file that lists them (or the folder scanned), named in errors.
        rows: the row (line number) of each path in ``source``, named in errors (none for scanned or fixed names).
        what: what a path names ("image file", "segmentation file" ...), for errors.

    Resolving is cached per directory and symlinks are detected from one directory scan each, so the check costs
    little more than the existence check for hundreds of thousands of rows.
    """
    root = Path(root)
    base = os.fspath(root)
    real_root = os.path.realpath(base)
    real_dirs: dict[str, str] = {}
    links: dict[str, set[str]] = {}
    out: list[Path] = []
    for k, text in enumerate(listed):
        reason, path = _escape(base, real_root, text, real_dirs, links)
        if reason is not None:
            where = f"{source}, line {rows[k]}" if rows is not None else f"{source}"
            raise UnsafePathError(f"{where}: {what} {text!r} {reason}; files read from here must stay inside "
                                  f"{str(root)!r}")
        out.append(Path(path))
    return out


def confined_path(root: str | os.PathLike, listed: str, *, source: str | os.PathLike, row: object = None,
                  what: str = "file") -> Path:
    """:func:`confined_paths` for one path."""
    return confined_paths(root, [listed], source=source, rows=None if row is None else [row], what=what)[0]


def _escape(base: str, real_root: str, text: str, real_dirs: dict[str, str],
            links: dict[str, set[str]]) -> tuple[str | None, str]:
    """``(why text leaves base, or None; the joined path)``; ``real_dirs`` and ``links`` cache per directory."""
    if not text or "\0" in text:
        return "is not a usable path", base
    if text.startswith("/"):
        return "is an absolute path", base
    if ".." in text.split("/"):
        return "climbs out through '..'", base
    path = os.path.join(base, text)
    parent, name = os.path.split(path)
    if parent not in real_dirs:
        real_dirs[parent] = os.path.realpath(parent)
        links[parent] = _symlinks_in(parent)
    if not _inside(real_dirs[parent], real_root):
        return f"lies in {real_dirs[parent]!r} (through a symlink), outside the folder", path
    if name in links[parent]:
        target = os.path.realpath(path)
        if not _inside(target, real_root):
            return f"is a symlink to {target!r}, outside the folder", path
    return None, path


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _symlinks_in(folder: str) -> set[str]:
    """Names of the symlinks directly in ``folder`` (empty if it cannot be listed), from one directory scan."""
    try:
        with os.scandir(folder) as it:
            return {e.name for e in it if e.is_symlink()}
    except OSError:
        return set()
