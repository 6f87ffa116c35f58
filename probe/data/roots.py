"""Where dataset files live: ``--data-root`` / ``data_root=``, else the ``PROBE_DATA`` environment variable.

Nothing is ever downloaded. A builder resolves its root once, records the resolved folder in the dataset's
``options`` (so a run can rebuild the same data), and, when the files it needs are not there, raises a one-line
:class:`~probe.errors.ProbeInputError` that says exactly which files to put where.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from probe.errors import ProbeInputError

#: Environment variable holding the default data root.
DATA_ROOT_ENV = "PROBE_DATA"


def resolve_data_root(data_root: str | os.PathLike | None) -> Path | None:
    """The data root to use: ``data_root`` if given, else ``$PROBE_DATA`` if set, else None.

    A root that is given but is not a directory is an input error naming where it came from.
    """
    if data_root is not None and str(data_root) != "":
        root = Path(data_root).expanduser()
        if not root.is_dir():
            raise ProbeInputError(f"data root {str(root)!r} is not a directory")
        return root.resolve()
    env = os.environ.get(DATA_ROOT_ENV, "")
    if env:
        root = Path(env).expanduser()
        if not root.is_dir():
            raise ProbeInputError(f"{DATA_ROOT_ENV}={env!r} is not a directory")
        return root.resolve()
    return None


def root_given_explicitly(data_root: str | os.PathLike | None) -> bool:
    """True when the caller named a root (as opposed to one taken from ``$PROBE_DATA``)."""
    return data_root is not None and str(data_root) != ""


def candidate_dirs(root: Path, names: Iterable[str]) -> list[Path]:
    """``root`` itself followed by the existing sub-folders ``root/<name>`` (names may contain ``/``)."""
    out = [root]
    for name in names:
        p = root / name
        if p.is_dir():
            out.append(p)
    return out


def missing_data(dataset: str, what: str, root: Path | None) -> ProbeInputError:
    """The one-line error for a dataset whose files are not where they should be."""
    where = (
        f"nothing usable under {str(root)!r}"
        if root is not None
        else f"no data root given (pass --data-root DIR or set {DATA_ROOT_ENV}=DIR)"
    )
    return ProbeInputError(f"{dataset}: {where}; {what}. probe never downloads data")
