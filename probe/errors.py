"""Typed errors. Every error a user can cause by bad input derives from :class:`ProbeInputError`;
the CLI prints its message on one line and exits with code 2."""

from __future__ import annotations


class ProbeError(Exception):
    """Base class of every error raised by probe on purpose."""


class ProbeInputError(ProbeError, ValueError):
    """Bad input: an unknown name, an out-of-range option, a malformed file. CLI exit code 2."""


class DataFormatError(ProbeInputError):
    """A data file on disk does not follow its official layout (names the file and the row or field)."""


class RunDirectoryError(ProbeInputError):
    """A run directory is missing, incomplete, or already exists where a new one was asked for."""


class SchemaVersionError(ProbeError):
    """An epoch file or run directory was written by a newer, incompatible schema major version."""


class CorruptEpochError(ProbeError):
    """An epoch file does not match the size or sha256 recorded for it in ``manifest.json``."""


class RunLockedError(RunDirectoryError):
    """Another process already holds the writer lock of this run directory (a second writer is refused)."""
