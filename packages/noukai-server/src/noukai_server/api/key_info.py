"""An API key as the keys API and `noukai keys list --json` show it: never its secret or hash."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from noukai_server.store import ApiKeyRecord


def key_state(record: ApiKeyRecord, now: datetime) -> str:
    """`revoked`, `expired` or `active` (a revoked key is revoked whatever its expiry)."""
    if record.revoked:
        return "revoked"
    if record.expires_at is not None and record.expires_at <= now:
        return "expired"
    return "active"


def utc_text(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def key_info(record: ApiKeyRecord, now: datetime) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "org": record.org_id,
        "project": record.project_slug,
        "scope": record.scopes,
        "state": key_state(record, now),
        "createdAt": utc_text(record.created_at),
        "lastUsedAt": utc_text(record.last_used_at),
        "expiresAt": utc_text(record.expires_at),
        "revokedAt": utc_text(record.revoked_at),
    }
