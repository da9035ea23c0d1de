"""Length checks for caller-supplied identifiers.

PostgreSQL rejects an over-long VARCHAR and SQLite silently stores it; checking here makes both
stores behave the same and turns the failure into a clear `InvalidIdentifier`.
"""

from __future__ import annotations

from .errors import InvalidIdentifier
from .schema import EVENT_TYPE_LENGTH, SLUG_LENGTH, TOKEN_LENGTH


def _check(value: str, what: str, max_length: int) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidIdentifier(f"{what} must be a non-empty string, got {value!r}")
    if len(value) > max_length:
        raise InvalidIdentifier(f"{what} is longer than {max_length} characters: {value[:80]!r}...")
    return value


def slug(value: str, what: str) -> str:
    """An org, project or flow slug."""
    return _check(value, what, SLUG_LENGTH)


def token(value: str, what: str) -> str:
    """A worker id, session id or idempotency key."""
    return _check(value, what, TOKEN_LENGTH)


def optional_token(value: str | None, what: str) -> str | None:
    return None if value is None else token(value, what)


def event_type(value: str) -> str:
    return _check(value, "event type", EVENT_TYPE_LENGTH)
