"""Reading data files within size limits fixed before anything is allocated.

Every data file probe reads whole (IDX, CIFAR batches) goes through this module; a file may be plain or gzip (told
apart by its magic bytes). Two readers:

- :func:`read_bounded`: the whole (decompressed) content, refused with :class:`~probe.errors.SizeLimitError` when it
  is over ``limit`` bytes. A plain file is measured before it is read; a gzip stream is first decompressed in chunks,
  keeping nothing, to measure it, so a gzip bomb costs time (bounded by the limit) but no memory.
- :func:`read_declared`: a payload whose size a header declares (IDX). The declared size is checked against
  ``limit`` and against what the file can hold (a plain file's size, deflate's largest ratio for gzip) before any
  allocation; a gzip stream is then decompressed once in chunks, holding nothing, to prove it holds exactly the
  declared bytes, and only then read into one array of that size. A header that lies either way is a
  :class:`~probe.errors.DataFormatError` naming the file.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from probe.errors import DataFormatError, SizeLimitError

#: Largest content (decompressed) of one data file: 256 MiB, over 5x MNIST's training images (47 MB) and CIFAR-100's
#: training batch (154 MB).
MAX_DATA_BYTES = 256 * 2**20

#: Deflate's largest compression ratio (about 1032:1); a gzip file cannot hold more than this times its size.
MAX_DEFLATE_RATIO = 1032

_CHUNK = 4 * 2**20
_GZIP_MAGIC = b"\x1f\x8b"
_STREAM_ERRORS = (OSError, EOFError, zlib.error)


def is_gzip(path: str | os.PathLike) -> bool:
    """True when ``path`` starts with the gzip magic bytes."""
    try:
        with open(path, "rb") as fh:
            return fh.read(2) == _GZIP_MAGIC
    except OSError as err:
        raise DataFormatError(f"{path}: cannot read ({err.strerror or err})") from None


def open_data(path: str | os.PathLike) -> BinaryIO:
    """A binary stream of the (decompressed) content of ``path``."""
    gz = is_gzip(path)
    try:
        return gzip.open(path, "rb") if gz else open(path, "rb")  # noqa: SIM115 (the caller closes it)
    except OSError as err:
        raise DataFormatError(f"{path}: cannot read ({err.strerror or err})") from None


def _human(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} bytes"


def check_declared_size(path: str | os.PathLike, nbytes: int, *, limit: int = MAX_DATA_BYTES,
                        what: str = "content") -> None:
    """Refuse ``nbytes`` of ``what`` in ``path`` beyond ``limit`` (:class:`SizeLimitError`), before allocating."""
    if nbytes > limit:
        raise SizeLimitError(f"{path}: {what} is {nbytes} bytes ({_human(nbytes)}), over the limit of "
                             f"{_human(limit)} for one data file; refused before reading")


def read_exactly(fh: BinaryIO, n: int, path: str | os.PathLike, what: str) -> bytes:
    """``n`` bytes of a small header field, or a :class:`DataFormatError` when the file ends inside it."""
    try:
        data = fh.read(n)
    except _STREAM_ERRORS as err:
        raise DataFormatError(f"{path}: cannot read {what} ({type(err).__name__}: {err})") from None
    if len(data) != n:
        raise DataFormatError(f"{path}: file ends inside the {what} ({len(data)} of {n} bytes)")
    return data


def read_bounded(path: str | os.PathLike, *, limit: int = MAX_DATA_BYTES) -> bytes:
    """The whole (decompressed) content of ``path``; :class:`SizeLimitError` when it is over ``limit`` bytes.

    A plain file is measured before it is read; a gzip stream is first decompressed in chunks, keeping nothing, to
    measure it (stopping at ``limit + 1`` bytes), so memory is only ever allocated for content within the limit.
    """
    path = Path(path)
    if is_gzip(path):
        size = _stream_length(path, limit + 1)
        if size > limit:
            raise SizeLimitError(f"{path}: decompresses to more than the limit of {_human(limit)} for one data "
                                 f"file; refused before keeping any of it")
    else:
        size = _file_size(path)
        check_declared_size(path, size, limit=limit, what="the file")
    with open_data(path) as fh:
        data = _read_chunk(fh, size + 1, path)
    if len(data) != size:
        raise DataFormatError(f"{path}: file changed while it was read")
    return data


def read_declared(path: str | os.PathLike, parse_header: Callable[[BinaryIO], tuple[int, Any, str]], *,
                  limit: int = MAX_DATA_BYTES) -> tuple[Any, np.ndarray]:
    """Read a header, then exactly the payload bytes it declares, as a uint8 array.

    ``parse_header(stream)`` reads the header from the start of the (decompressed) stream and returns
    ``(payload bytes it declares, header, a description such as "IDX header shape (3, 28, 28)")``; it raises
    :class:`DataFormatError` itself for a malformed header. Returns ``(header, payload)``.
    """
    path = Path(path)
    gz = is_gzip(path)
    with open_data(path) as fh:
        nbytes, header, described = parse_header(fh)
        offset = _tell(fh, path)
    check_declared_size(path, nbytes, limit=limit, what=f"the data declared by its {described}")
    size = _file_size(path)
    if gz:
        if offset + nbytes > MAX_DEFLATE_RATIO * size + 64:
            raise DataFormatError(f"{path}: {described} needs {nbytes} data bytes, more than a {size}-byte gzip "
                                  f"file can hold")
        held = _stream_length(path, offset + nbytes + 1) - offset
    else:
        held = size - offset
    if held != nbytes:
        holds = "more" if held > nbytes else str(held)
        raise DataFormatError(f"{path}: {described} needs {nbytes} data bytes, the file has {holds}")
    payload = np.empty(nbytes, dtype=np.uint8)
    view = memoryview(payload)
    with open_data(path) as fh:
        _skip(fh, offset, path)
        filled = 0
        while filled < nbytes:
            n = _readinto(fh, view[filled : filled + _CHUNK], path)
            if n == 0:
                raise DataFormatError(f"{path}: file changed while it was read")
            filled += n
    return header, payload


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as err:
        raise DataFormatError(f"{path}: cannot read ({err.strerror or err})") from None


def _tell(fh: BinaryIO, path: Path) -> int:
    try:
        return fh.tell()
    except _STREAM_ERRORS as err:
        raise DataFormatError(f"{path}: cannot read ({type(err).__name__}: {err})") from None


def _read_chunk(fh: BinaryIO, n: int, path: Path) -> bytes:
    try:
        return fh.read(n)
    except _STREAM_ERRORS as err:
        raise DataFormatError(f"{path}: damaged or truncated ({type(err).__name__}: {err})") from None


def _readinto(fh: BinaryIO, view: memoryview, path: Path) -> int:
    try:
        return fh.readinto(view)
    except _STREAM_ERRORS as err:
        raise DataFormatError(f"{path}: damaged or truncated ({type(err).__name__}: {err})") from None


def _skip(fh: BinaryIO, n: int, path: Path) -> None:
    while n > 0:
        chunk = _read_chunk(fh, min(n, _CHUNK), path)
        if not chunk:
            raise DataFormatError(f"{path}: file changed while it was read")
        n -= len(chunk)


def _stream_length(path: Path, cap: int) -> int:
    """Length of the decompressed stream, counted in chunks and never past ``cap`` (nothing is kept)."""
    total = 0
    with open_data(path) as fh:
        while total < cap:
            chunk = _read_chunk(fh, min(_CHUNK, cap - total), path)
            if not chunk:
                break
            total += len(chunk)
    return total
