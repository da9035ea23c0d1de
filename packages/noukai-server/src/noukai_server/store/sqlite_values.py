"""Values as SQLite stores them, for the raw-`sqlite3` hot path (`sqlite_hot`).

The hot path must read and write exactly what the SQLAlchemy path does on the same file, so both
can be used side by side: timestamps are naive-UTC ISO strings with microseconds
(`2026-11-21 22:48:18.123456`, SQLAlchemy's SQLite `DATETIME` format, whose string order is time
order), JSON columns hold JSON text or NULL, booleans are 0/1.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from .db import json_dumps, json_loads
from .records import RunRecord
from .runs_repo import RUN_COLUMNS
from .schema import UTCDateTime, runs

JSON_COLUMNS = frozenset(c.name for c in runs.c if isinstance(c.type, sa.JSON))
TIME_COLUMNS = frozenset(c.name for c in runs.c if isinstance(c.type, UTCDateTime))
BOOL_COLUMNS = frozenset({"cancel_requested"})
RUN_SELECT = ", ".join(f'"{name}"' for name in RUN_COLUMNS)


def encode_time(value: datetime) -> str:
    # Called for every event row: the common case (already UTC) is one C call and a slice of its
    # "+00:00" suffix.
    if value.tzinfo is not UTC:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: the store only accepts timezone-aware datetimes")
        value = value.astimezone(UTC)
    return value.isoformat(sep=" ", timespec="microseconds")[:26]


def decode_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def encode_json(value: Any) -> str | None:
    # `none_as_null`, as in the schema: Python None is SQL NULL, not the JSON text 'null'.
    return None if value is None else json_dumps(value)


def decode_json(value: str | bytes | float | None) -> Any:
    return None if value is None else json_loads(value)


def encode_run_value(column: str, value: Any) -> Any:
    """One `runs` column's Python value as SQLite stores it."""
    if column in JSON_COLUMNS:
        return encode_json(value)
    if column in TIME_COLUMNS:
        return None if value is None else encode_time(value)
    if column in BOOL_COLUMNS:
        return int(bool(value))
    return value


_DECODERS: tuple[tuple[str, Any], ...] = tuple(
    (
        name,
        decode_json
        if name in JSON_COLUMNS
        else decode_time
        if name in TIME_COLUMNS
        else bool
        if name in BOOL_COLUMNS
        else None,
    )
    for name in RUN_COLUMNS
)


def run_from_row(row: sqlite3.Row | tuple[Any, ...], *, created: bool = False) -> RunRecord:
    """A `RunRecord` from a row selected as `RUN_SELECT` (every column, in schema order)."""
    values = {
        name: (value if decode is None else decode(value))
        for (name, decode), value in zip(_DECODERS, row, strict=True)
    }
    return RunRecord(**values, created=created)
