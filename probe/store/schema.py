"""Schema version of run directories and epoch files.

The version is ``"MAJOR.MINOR"``. Readers accept any minor version of their own major version and older majors they
know; a newer major version is refused with :class:`~probe.errors.SchemaVersionError`.

- 1: every epoch file holds the model, the optimizer and the RNG states.
- 2: optimizer and RNG states live in one rolling resume file per run; epoch files hold records, and weights at the
  epochs of the ``keep_weights`` schedule; records may keep top-k logit summaries. Runs of schema 1 are read as they
  are (their last epoch file serves as the resume file) and a resumed one continues in schema 2.
"""

from __future__ import annotations

from probe.errors import SchemaVersionError

SCHEMA_VERSION = "2.0"
SCHEMA_MAJOR = 2


def schema_major(version: object) -> int:
    """The major number of a ``"MAJOR.MINOR"`` version (checked readable by :func:`check_schema` first)."""
    return int(str(version).split(".")[0])


def check_schema(version: object, where: str) -> None:
    """Raise :class:`SchemaVersionError` when ``version`` has a newer major than this reader understands."""
    try:
        major = int(str(version).split(".")[0])
    except ValueError:
        raise SchemaVersionError(f"{where}: unreadable schema version {version!r}") from None
    if major > SCHEMA_MAJOR:
        raise SchemaVersionError(
            f"{where}: written with schema version {version}, this probe reads up to {SCHEMA_MAJOR}.x; upgrade probe"
        )
