"""Reading the small CSV / text tables that describe image releases, with errors that name the file and line."""

from __future__ import annotations

import csv
from pathlib import Path

from probe.errors import DataFormatError


def read_csv_rows(path: Path, required: tuple[str, ...]) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header and ``(line number, row dict)`` pairs of a CSV file that must have the ``required`` columns."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            try:
                header = [h.strip() for h in next(reader)]
            except StopIteration:
                raise DataFormatError(f"{path}: empty file, expected a header row") from None
            missing = [c for c in required if c not in header]
            if missing:
                raise DataFormatError(f"{path}: missing column {', '.join(repr(c) for c in missing)} "
                                      f"(header has {', '.join(header)})")
            rows = []
            for line, values in enumerate(reader, start=2):
                if not values or all(not v.strip() for v in values):
                    continue
                if len(values) != len(header):
                    raise DataFormatError(f"{path}, line {line}: {len(values)} fields, header has {len(header)}")
                rows.append((line, {h: v.strip() for h, v in zip(header, values)}))
    except OSError as err:
        raise DataFormatError(f"{path}: cannot read ({err})") from None
    except UnicodeDecodeError as err:
        raise DataFormatError(f"{path}: not a text file ({err})") from None
    return header, rows


def parse_int(value: str, path: Path, line: int, column: str, allowed: tuple[int, ...] | None = None,
              what: str = "value") -> int:
    """``int(value)``, or a :class:`DataFormatError` naming the file, line and column."""
    try:
        number = int(float(value)) if value.strip() not in ("",) and float(value).is_integer() else None
    except ValueError:
        number = None
    if number is None:
        raise DataFormatError(f"{path}, line {line}: column {column!r}: {value!r} is not an integer")
    if allowed is not None and number not in allowed:
        raise DataFormatError(
            f"{path}, line {line}: column {column!r}: unknown {what} {number} (expected one of "
            f"{', '.join(str(a) for a in allowed)})"
        )
    return number
