"""A digest of a whole directory tree: names, types, modes, contents and link targets (byte-for-byte comparisons)."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path


def tree_digest(root: Path) -> dict[str, str]:
    """``{relative path: "type mode sha256-or-target"}`` for ``root`` and everything below it."""
    root = Path(root)
    out = {}
    for path in [root, *sorted(root.rglob("*"))]:
        st = os.lstat(path)
        rel = str(path.relative_to(root))
        if stat.S_ISLNK(st.st_mode):
            out[rel] = f"link {os.readlink(path)}"
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = f"dir {st.st_mode:o}"
        else:
            out[rel] = f"file {st.st_mode:o} {hashlib.sha256(path.read_bytes()).hexdigest()}"
    return out
