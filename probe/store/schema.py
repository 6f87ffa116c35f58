"""Schema version of run directories and epoch files.

The version is ``"MAJOR.MINOR"``. Readers accept any minor version of their own major version and older majors they
know; a newer major version is refused with :class:`~probe.errors.SchemaVersionError`.
"""

from __future__ import annotations

from probe.errors import SchemaVersionError

SCHEMA_VERSION = "1.0"
SCHEMA_MAJOR = 1


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
