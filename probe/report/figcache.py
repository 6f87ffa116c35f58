"""The report's figure cache: each figure's PNG, valid while the data it is drawn from is unchanged.

A figure is drawn by a function of tables and arrays (:mod:`probe.report.figures`). Its entry is keyed by the sha256
of what determines its pixels:

- the data passed to the drawing function, encoded exactly (:func:`data_digest`: every column name, dtype and value
  of a table, every array's dtype, shape and bytes, every scalar and string);
- the function's module and qualified name, the figure kind's version (:data:`FIGURE_VERSIONS`, bumped when a figure
  function changes how it draws), :data:`FIGURE_CACHE_FORMAT`, the PNG resolution and matplotlib's version.

Entries live in a :class:`~probe.analyses.cache.FileCache` folder (``<out>/cache/report-figures``): ``<name>.png``
and a ``<name>.json`` sidecar ``{"key", "sha256", "size"}`` written after the PNG (both through
:mod:`probe.store.atomic`; the old sidecar is removed first, so an interrupted write reads as a miss). An entry
answers only when its key matches and the PNG's size and sha256 equal the sidecar's: a damaged PNG is drawn again,
never shown. One entry per figure name, overwritten when its data changes, so the folder holds at most one PNG per
figure of the report. No pickle: keys are JSON, figures PNG.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from probe.analyses.cache import FileCache
from probe.store.atomic import atomic_write_bytes

__all__ = ["DPI", "FIGURE_CACHE_FORMAT", "FIGURE_VERSIONS", "FigureCache", "data_digest", "figure_png"]

#: the cache's own format: part of every key.
FIGURE_CACHE_FORMAT = 1
#: resolution of the report's PNGs.
DPI = 110
#: version of each figure kind (the drawing function's name); bump one when its function draws differently.
FIGURE_VERSIONS: dict[str, int] = {
    "sweep_overview": 1,
    "claims_forest": 1,
    "chain_figure": 1,
    "dynamics": 1,
    "proposition_panels": 1,
    "prune_curves": 1,
    "plot_attributions": 1,
}


def _update(h: Any, value: Any) -> None:
    """Feed an exact, type-tagged encoding of ``value`` into the hash ``h``."""
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        h.update(b"frame")
        _update(h, [str(c) for c in value.columns])
        _update(h, [str(t) for t in value.dtypes])
        _update(h, value.index)
        numeric = _numeric_columns(value)
        for column in range(value.shape[1]):
            if column in numeric:  # the bytes _update(h, value.iloc[:, column]) feeds, without a Series per column
                h.update(b"series")
                _update(h, str(value.columns[column]))
                _update(h, numeric[column])
            else:
                _update(h, value.iloc[:, column])
    elif isinstance(value, pd.Index):
        h.update(b"index")
        _update(h, value.to_numpy())
    elif isinstance(value, pd.Series):
        h.update(b"series")
        _update(h, str(value.name))
        _update(h, value.to_numpy())
    elif isinstance(value, np.ndarray) and value.dtype != object:
        h.update(f"array {value.dtype.str} {value.shape}".encode())
        h.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, np.ndarray):  # object arrays (strings, mixed): their JSON, non-JSON items typed
        h.update(f"objects {value.shape}".encode())
        h.update(json.dumps(value.ravel().tolist(), default=_typed).encode())
    elif hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor
        _update(h, value.detach().cpu().numpy())
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        h.update(f"dataclass {type(value).__qualname__}".encode())
        for f in dataclasses.fields(value):
            _update(h, f.name)
            _update(h, getattr(value, f.name))
    elif isinstance(value, Mapping):
        h.update(f"map {len(value)}".encode())
        for k in sorted(value, key=str):
            _update(h, str(k))
            _update(h, value[k])
    elif isinstance(value, (list, tuple)):
        h.update(f"seq {len(value)}".encode())
        for item in value:
            _update(h, item)
    elif value is None or isinstance(value, (bool, int, float, str, np.generic)):
        item = value.item() if isinstance(value, np.generic) else value
        h.update(f"{type(item).__name__}:{item!r};".encode())
    elif isinstance(value, Path):
        _update(h, str(value))
    else:
        raise TypeError(f"cannot key a figure on a {type(value).__name__}")


def _numeric_columns(frame: Any) -> dict[int, np.ndarray]:
    """Position -> values of each column of ``frame`` with a plain numpy dtype (not object), as ``to_numpy`` gives
    them, taken one dtype at a time (one 2-D copy per dtype instead of a Series per column: wide tables such as the
    run table have hundreds of columns)."""
    dtypes = list(frame.dtypes)
    numeric = [i for i, t in enumerate(dtypes) if isinstance(t, np.dtype) and t.kind != "O"]
    out: dict[int, np.ndarray] = {}
    for dtype in dict.fromkeys(dtypes[i] for i in numeric):
        positions = [i for i in numeric if dtypes[i] == dtype]
        block = frame.iloc[:, positions].to_numpy(dtype=dtype)
        out.update(zip(positions, block.T))
    return out


def _typed(item: Any) -> dict[str, str]:
    return {"type": type(item).__qualname__, "repr": repr(item)}


def data_digest(*values: Any) -> str:
    """sha256 (hex) of an exact encoding of ``values``: tables (column names, dtypes, index, every value), arrays
    (dtype, shape, bytes), dataclasses, mappings, sequences and scalars. Equal data gives equal digests; any changed
    value, name, dtype or order gives another."""
    h = hashlib.sha256()
    for value in values:
        _update(h, value)
    return h.hexdigest()


def figure_png(fig: Any, dpi: int = DPI) -> bytes:
    """The PNG bytes of a :class:`matplotlib.figure.Figure` (Agg), drawn once; the figure is cleared afterwards."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    fig.clear()
    return buffer.getvalue()


class FigureCache:
    """PNG entries under ``root`` keyed by the data they are drawn from (see the module doc).

    Args:
        root: the cache folder, or None for a cache that stores nothing and always draws.
        reuse: answer from stored entries (False: draw every figure, still storing it).

    Attributes:
        drawn, reused: names of the figures drawn and of those answered from the cache, in order.
    """

    def __init__(self, root: str | Path | None, reuse: bool = True):
        self.files = FileCache(root)
        self.reuse = reuse
        self.drawn: list[str] = []
        self.reused: list[str] = []

    @staticmethod
    def key(draw: Callable[..., Any], args: tuple, kwargs: Mapping[str, Any], dpi: int = DPI) -> str:
        """The key of ``draw(*args, **kwargs)`` saved at ``dpi``."""
        from importlib.metadata import version  # not matplotlib itself: a cached figure needs no matplotlib

        name = getattr(draw, "__name__", type(draw).__name__)
        head = {"function": f"{getattr(draw, '__module__', '?')}.{getattr(draw, '__qualname__', name)}",
                "version": FIGURE_VERSIONS.get(name, 0), "format": FIGURE_CACHE_FORMAT, "dpi": dpi,
                "matplotlib": version("matplotlib")}
        return data_digest(head, list(args), dict(kwargs))

    def load(self, name: str, key: str | None = None, sha256: str | None = None) -> bytes | None:
        """The stored PNG of ``name`` when its sidecar's key is ``key`` (any key when None) and, when given, its
        sha256 is ``sha256``, and the PNG's size and sha256 match the sidecar; else None."""
        if self.files.root is None or not self.reuse:
            return None
        side = self.files.load_json(f"{name}.json")
        if not isinstance(side, dict) or (key is not None and side.get("key") != key):
            return None
        if sha256 is not None and side.get("sha256") != sha256:
            return None
        try:
            data = self.files.path(f"{name}.png").read_bytes()
        except OSError:
            return None
        if len(data) != side.get("size") or hashlib.sha256(data).hexdigest() != side.get("sha256"):
            return None
        return data

    def store(self, name: str, key: str, png: bytes) -> None:
        """Store ``png`` as the entry ``name`` under ``key`` (the sidecar is removed first and written last)."""
        if self.files.root is None:
            return
        path = self.files.path(f"{name}.png")
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.files.path(f"{name}.json").unlink()
        atomic_write_bytes(path, png)
        self.files.store_json(f"{name}.json", {"key": key, "sha256": hashlib.sha256(png).hexdigest(),
                                               "size": len(png)})

    def png(self, name: str, draw: Callable[..., Any], *args: Any, **kwargs: Any) -> bytes:
        """The PNG of ``draw(*args, **kwargs)``: from the entry ``name`` when its key matches and its bytes are
        intact, else drawn (once, Agg, at :data:`DPI`) and stored."""
        key = self.key(draw, args, kwargs)
        data = self.load(name, key)
        if data is not None:
            self.reused.append(name)
            return data
        data = figure_png(draw(*args, **kwargs))
        self.drawn.append(name)
        self.store(name, key, data)
        return data

    def sha256(self, name: str) -> str | None:
        """The sha256 the sidecar of ``name`` records (None without one)."""
        side = self.files.load_json(f"{name}.json") if self.files.root is not None else None
        return side.get("sha256") if isinstance(side, dict) else None


def write_if_changed(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` (atomically) unless the file already holds exactly these bytes; returns ``path``."""
    path = Path(path)
    with contextlib.suppress(OSError):
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return path
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)
    return path


def json_key(document: Any) -> str:
    """sha256 of a JSON document (sorted keys)."""
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()
