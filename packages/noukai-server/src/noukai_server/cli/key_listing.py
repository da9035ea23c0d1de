"""What `noukai keys create` and `noukai keys list` need besides the store: reading an expiry from
the command line, and showing keys as a table or as JSON (never their secrets)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

_DURATION = re.compile(r"([1-9][0-9]{0,6})([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_COLUMNS = ("ID", "NAME", "ORG/PROJECT", "SCOPE", "STATE", "CREATED", "LAST USED", "EXPIRES")


class BadExpiry(ValueError):
    """An `--expires-in` or `--expires-at` the command cannot use; the message says why."""


def parse_duration(text: str) -> timedelta:
    """`30d`, `12h`, `90m`, `3600s`, `2w`: a positive whole number and one unit."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise BadExpiry(f"--expires-in {text!r}: write a number and a unit, like 30d, 12h, 90m or 3600s")
    return timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def parse_instant(text: str) -> datetime:
    """An ISO 8601 time; one without a zone is UTC."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadExpiry(f"--expires-at {text!r}: write an ISO 8601 time, like 2027-01-31T00:00:00Z") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def expiry(expires_in: str | None, expires_at: str | None, now: datetime) -> datetime | None:
    """When a new key should stop working (None: never); at most one of the two options, and a
    time in the future (a key born expired is a mistake, refused rather than created)."""
    if expires_in is not None and expires_at is not None:
        raise BadExpiry("give --expires-in or --expires-at, not both")
    if expires_in is not None:
        try:
            return now + parse_duration(expires_in)
        except OverflowError:
            raise BadExpiry(f"--expires-in {expires_in!r} ends after the year 9999") from None
    if expires_at is None:
        return None
    when = parse_instant(expires_at)
    if when <= now:
        raise BadExpiry(f"--expires-at {expires_at!r} is not in the future")
    return when


def key_table(keys: Sequence[Mapping[str, Any]]) -> str:
    """Keys (as `api.key_info.key_info` and the keys API show them) as aligned columns under a
    header; `-` for what is not set."""
    rows = [_COLUMNS]
    for item in keys:
        rows.append(
            (
                item["id"],
                item["name"] or "-",
                f"{item['org']}/{item['project'] or '*'}",
                item["scope"],
                item["state"],
                item["createdAt"],
                item["lastUsedAt"] or "-",
                item["expiresAt"] or "never",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines = ("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(line.rstrip() for line in lines)
