"""Typed errors. Every error a user can cause by bad input derives from :class:`ProbeInputError`;
the CLI prints its message on one line and exits with code 2. Other :class:`ProbeError` s and ``OSError`` (a full
disk, a vanished folder) exit with code 1; no error of probe's ever ends a process with a signal or a traceback.
"""

from __future__ import annotations


class ProbeError(Exception):
    """Base class of every error raised by probe on purpose."""


class ProbeInputError(ProbeError, ValueError):
    """Bad input: an unknown name, an out-of-range option, a malformed file. CLI exit code 2."""


class DataFormatError(ProbeInputError):
    """A data file on disk does not follow its official layout (names the file and the row or field)."""


class UnsafePathError(ProbeInputError):
    """A path listed in a file (or given by the user) leads outside the folder it must stay in: ``..``, an absolute
    path, or a symlink out of the root."""


class SizeLimitError(ProbeInputError):
    """A file declares (or decompresses to) more data than it can legitimately hold; refused before allocating."""


class RunDirectoryError(ProbeInputError):
    """A run directory is missing, incomplete, or already exists where a new one was asked for."""


class RunStartedError(RunDirectoryError):
    """A run directory that was to be started afresh (``overwrite="unstarted"``) holds a started run: another process
    began it meanwhile. Resume it instead; nothing was changed."""


class DamagedFileError(ProbeInputError):
    """A file of a run or sweep directory is damaged or not what probe wrote: truncated, bit-flipped, not JSON or
    HDF5, wrong shapes or dtypes, external links or storage. The message names the file and the reason."""


class SchemaVersionError(ProbeError):
    """An epoch file or run directory was written by a newer, incompatible schema major version."""


class CorruptEpochError(DamagedFileError):
    """An epoch file does not match the size or sha256 recorded for it in ``manifest.json``."""


class RunLockedError(RunDirectoryError):
    """Another process already holds the writer lock of this run directory (a second writer is refused)."""


#: Exit code of the command line for an I/O failure or another :class:`ProbeError` (a full disk, a damaged run found).
EXIT_IO_ERROR = 1
#: Exit code of the command line for bad input (:class:`ProbeInputError`).
EXIT_BAD_INPUT = 2
