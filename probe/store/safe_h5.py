"""The one way probe reads an epoch file: verified bytes, opened from memory, checked before use.

:func:`read_verified` reads the whole file once and checks its size and sha256 against the manifest, so the bytes
that were verified are the bytes that are read (a file altered in place after an earlier read is never read
silently). :func:`open_image` opens those bytes in memory and walks every object before handing the file out,
refusing what probe never writes and what could read outside the file or allocate more than it holds:

- soft, external and user-defined links (only hard links are followed);
- datasets with external raw storage, virtual datasets, chunked storage or filters;
- non-numeric dtypes (strings, compound, variable-length, references, opaque) and null dataspaces;
- datasets and attributes whose declared size exceeds the file, and contiguous or compact datasets whose stored
  bytes differ from their declared size (nothing is ever allocated for a declared ``3e8 x 10`` array).

Every refusal is a :class:`~probe.errors.DamagedFileError` naming the file and the object.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np
from h5py import h5a, h5d, h5i, h5l, h5o, h5s, h5t

from probe.errors import CorruptEpochError, DamagedFileError, ProbeError

#: Exceptions h5py raises on a malformed file (anything else escaping a read is a bug, not damage).
H5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError, IndexError, OverflowError)

_DATASET_CLASSES = {h5t.INTEGER, h5t.FLOAT, h5t.ENUM}  # ENUM: h5py's bool
_ATTRIBUTE_CLASSES = {h5t.INTEGER, h5t.FLOAT, h5t.ENUM, h5t.STRING}
_LAYOUTS = {h5d.CONTIGUOUS: "contiguous", h5d.COMPACT: "compact", h5d.CHUNKED: "chunked", h5d.VIRTUAL: "virtual"}
_LINK_TYPES = {h5l.TYPE_SOFT: "a soft link", h5l.TYPE_EXTERNAL: "an external link"}


def read_verified(path: Path, size: int, sha256: str) -> bytes:
    """The bytes of ``path``, after checking that it is a regular file of ``size`` bytes with digest ``sha256``.

    Raises :class:`CorruptEpochError` (missing, not a regular file, truncated, altered).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise CorruptEpochError(f"{path}: listed in the manifest but missing") from None
    except OSError as err:
        if os.path.islink(path):
            raise CorruptEpochError(f"{path}: is a symbolic link; epoch files must be regular files") from None
        raise CorruptEpochError(f"{path}: cannot be opened ({err.strerror})") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CorruptEpochError(f"{path}: not a regular file")
        if st.st_size != size:
            raise CorruptEpochError(f"{path}: {st.st_size} bytes, the manifest says {size} (truncated?)")
        data = fh.read(size + 1)
    if len(data) != size:
        raise CorruptEpochError(f"{path}: {len(data)} bytes read, the manifest says {size} (changed while reading?)")
    if hashlib.sha256(data).hexdigest() != sha256:
        raise CorruptEpochError(f"{path}: sha256 differs from the manifest (file altered)")
    return data


def open_image(data: bytes, name: str | os.PathLike, *, check: bool = True) -> h5py.File:
    """``data`` (a whole HDF5 file) opened read-only in memory, after :func:`check_file` (skip it with
    ``check=False`` only for bytes whose digest equals that of bytes that passed it).

    ``name`` (the file's path) is used in messages only.
    """
    with damaged_as(name):
        # h5py's file-object driver reads straight from the bytes (BytesIO shares their buffer): unlike HDF5's
        # core driver with a file image, it copies nothing, so a read needs the file's size once, not three times
        f = h5py.File(io.BytesIO(data), "r")
        try:
            if check:
                check_file(f, len(data), name)
        except BaseException:
            f.close()
            raise
    return f


@contextmanager
def damaged_as(name: str | os.PathLike) -> Iterator[None]:
    """Turn errors h5py raises on a malformed file into a :class:`DamagedFileError` naming ``name``."""
    try:
        yield
    except ProbeError:
        raise
    except H5_ERRORS as err:
        raise DamagedFileError(f"{name}: unreadable HDF5 ({type(err).__name__}: {err})") from None


def check_file(f: h5py.File, file_size: int, name: str | os.PathLike) -> None:
    """Walk every link and object of ``f``; raise :class:`DamagedFileError` at the first thing probe would not write."""
    _check_attributes(f.id, file_size, name, "/")
    links: list[tuple[bytes, int]] = []
    f.id.links.visit(lambda link, info: links.append((link, info.type)), info=True)  # raising inside breaks h5py
    hard = []
    for link, link_type in links:
        if link_type != h5l.TYPE_HARD:
            kind = _LINK_TYPES.get(link_type, "a user-defined link")
            raise DamagedFileError(f"{name}: /{link.decode(errors='replace')} is {kind}; probe writes only plain "
                                   "groups and datasets")
        hard.append(link)
    for link in hard:
        where = "/" + link.decode(errors="replace")
        obj = h5o.open(f.id, link)
        kind = h5i.get_type(obj)
        if kind == h5i.DATASET:
            _check_dataset(obj, file_size, name, where)
        elif kind != h5i.GROUP:
            raise DamagedFileError(f"{name}: {where} is neither a group nor a dataset")
        _check_attributes(obj, file_size, name, where)


def _check_dataset(ds: h5d.DatasetID, file_size: int, name, where: str) -> None:
    dcpl = ds.get_create_plist()
    layout = dcpl.get_layout()
    if dcpl.get_external_count():
        raise DamagedFileError(f"{name}: {where} keeps its data in an external file; probe stores data in the file")
    if layout not in (h5d.CONTIGUOUS, h5d.COMPACT):
        raise DamagedFileError(f"{name}: {where} has {_LAYOUTS.get(layout, 'unknown')} storage; probe writes "
                               "contiguous datasets")
    if dcpl.get_nfilters():
        raise DamagedFileError(f"{name}: {where} uses HDF5 filters (compression ...); probe writes none")
    tid = ds.get_type()
    dtype = _numeric_dtype(tid)
    if dtype is None:
        raise DamagedFileError(f"{name}: {where} has a non-numeric dtype ({_type_name(tid)}); probe writes numbers")
    nbytes = _declared_bytes(ds.get_space(), dtype.itemsize, name, where)
    if nbytes > file_size:
        raise DamagedFileError(f"{name}: {where} declares {nbytes} bytes in a {file_size}-byte file")
    stored = ds.get_storage_size()
    if stored != nbytes:
        raise DamagedFileError(f"{name}: {where} declares {nbytes} bytes but stores {stored}")
    if layout == h5d.CONTIGUOUS and nbytes:
        offset = ds.get_offset()
        if offset is None or offset + nbytes > file_size:
            raise DamagedFileError(f"{name}: {where} points past the end of the file")


def _check_attributes(obj, file_size: int, name, where: str) -> None:
    for i in range(h5a.get_num_attrs(obj)):
        attr = h5a.open(obj, index=i)
        label = f"{where} attribute {attr.name.decode(errors='replace')!r}"
        tid = attr.get_type()
        if tid.get_class() not in _ATTRIBUTE_CLASSES:
            raise DamagedFileError(f"{name}: {label} has an unsupported type ({_type_name(tid)})")
        nbytes = _declared_bytes(attr.get_space(), tid.get_size(), name, label)
        if nbytes > file_size:
            raise DamagedFileError(f"{name}: {label} declares {nbytes} bytes in a {file_size}-byte file")


def _numeric_dtype(tid: h5t.TypeID) -> np.dtype | None:
    """The numpy dtype of a plain integer, float or bool HDF5 type; None for anything else."""
    if tid.get_class() not in _DATASET_CLASSES:
        return None
    dtype = tid.dtype
    if dtype.kind not in "biuf" or dtype.itemsize > 8 or dtype.fields is not None or dtype.subdtype is not None:
        return None
    return dtype


def _declared_bytes(space: h5s.SpaceID, itemsize: int, name, where: str) -> int:
    kind = space.get_simple_extent_type()
    if kind == h5s.SCALAR:
        return itemsize
    if kind != h5s.SIMPLE:
        raise DamagedFileError(f"{name}: {where} has an empty (null) dataspace")
    count = 1
    for dim in space.shape:
        count *= int(dim)
    return count * itemsize


def _type_name(tid: h5t.TypeID) -> str:
    names = {h5t.STRING: "string", h5t.COMPOUND: "compound", h5t.VLEN: "variable-length", h5t.REFERENCE: "reference",
             h5t.OPAQUE: "opaque", h5t.ARRAY: "array", h5t.BITFIELD: "bitfield", h5t.TIME: "time", h5t.ENUM: "enum"}
    return names.get(tid.get_class(), f"HDF5 type class {tid.get_class()}")
