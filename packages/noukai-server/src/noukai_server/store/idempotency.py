"""Idempotency keys as the store keeps them: what a repeat gets, and when a key is forgotten.

A run created with an `Idempotency-Key` keeps the key (unique per org) and the fingerprint of the
request (`runs.request_hash`). Within the key's TTL a repeat with the same fingerprint gets the
run that exists; one with another fingerprint is refused (`IdempotencyConflict`). Past the TTL the
old run gives the key up (its column is set to NULL, in the creating transaction or by the
retention sweep) and the key starts a new run. Each `create_run` implementation (SQLAlchemy and
the raw SQLite hot path) follows this module.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from .errors import IdempotencyConflict
from .records import NewRun, RunRecord


def forgotten(run: RunRecord, now: datetime, ttl: timedelta | None) -> bool:
    """True when `run`'s idempotency key is past its TTL (None: kept for ever)."""
    return ttl is not None and run.created_at + ttl <= now


def repeat_of(existing: RunRecord, new: NewRun) -> RunRecord:
    """The answer to a repeat of `existing`'s key: the run itself, or `IdempotencyConflict` when
    both requests have a fingerprint and they differ (a run made before fingerprints were recorded
    is replayed, as it was)."""
    stored, asked = existing.request_hash, new.request_hash
    if stored is not None and asked is not None and stored != asked:
        raise IdempotencyConflict(
            f"Idempotency-Key {new.idempotency_key!r} was already used for run {existing.id} with a "
            "different request (flow, version or inputs); send a new key for a new request",
            existing.id,
        )
    return existing
