"""Caps on queued runs, per org and per API key, counted in the store when a run is created.

The count and the insert share one transaction, so the cap holds across API processes: on
SQLite the single writer serialises creations; on PostgreSQL a transaction-scoped advisory lock
per org serialises the creations of one org (only when that org or its key has a cap), so two
processes cannot both see room for the last slot.

Counting reads the queue's partial index (`ix_runs_claimable`: the queued and running rows), and
stops at the cap (`LIMIT`), so a submission costs at most `cap` index rows of its org.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from .errors import StoreError
from .records import NewRun
from .schema import CLAIMABLE_PREDICATE, runs


class QueueFull(StoreError):
    """The org (or the key) already has its cap of queued runs; nothing was written."""

    def __init__(self, scope: str, owner: str, cap: int) -> None:
        super().__init__(f"{scope} {owner} already has {cap} queued runs (its cap); nothing was queued")
        self.scope = scope
        self.owner = owner
        self.cap = cap


@dataclass(frozen=True, slots=True)
class QueueCaps:
    """The most queued runs an org, and a key, may have (None: uncapped); overrides by id."""

    org_default: int | None = None
    org_overrides: Mapping[str, int] = field(default_factory=dict)
    key_default: int | None = None
    key_overrides: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        caps = [
            self.org_default,
            self.key_default,
            *self.org_overrides.values(),
            *self.key_overrides.values(),
        ]
        for cap in caps:
            if cap is not None and cap < 1:
                raise ValueError(f"a queued-runs cap must be >= 1, got {cap}")

    def org_cap(self, org: str) -> int | None:
        return self.org_overrides.get(org, self.org_default)

    def key_cap(self, key_id: str | None) -> int | None:
        return None if key_id is None else self.key_overrides.get(key_id, self.key_default)

    def applies_to(self, new: NewRun) -> bool:
        return self.org_cap(new.org_id) is not None or self.key_cap(new.api_key_id) is not None


def _queued(column: sa.Column[str], value: str, cap: int) -> sa.Select[int]:
    """How many queued runs have `column` = `value`, counted up to `cap`."""
    rows = (
        sa.select(sa.literal(1))
        .where(sa.text(CLAIMABLE_PREDICATE), runs.c.status == "queued", column == value)
        .limit(cap)
        .subquery()
    )
    return sa.select(sa.func.count()).select_from(rows)


async def check_queue(conn: AsyncConnection, new: NewRun, caps: QueueCaps | None) -> None:
    """Raise `QueueFull` when `new` would take its org or its key past the queued-runs cap; in
    the transaction that then inserts it."""
    if caps is None or not caps.applies_to(new):
        return
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_lock_key(new.org_id))))
    for scope, column, owner, cap in _checks(new, caps):
        if (await conn.execute(_queued(column, owner, cap))).scalar_one() >= cap:
            if new.idempotency_key is not None and (await conn.execute(_repeat(new))).first():
                return  # an idempotent repeat queues nothing: it gets the run it already made
            raise QueueFull(scope, owner, cap)


_SQLITE_COUNT = (
    "SELECT count(*) FROM (SELECT 1 FROM runs WHERE "
    f"{CLAIMABLE_PREDICATE} AND status = 'queued' AND {{column}} = ? LIMIT ?)"
)


def check_queue_sqlite(conn: sqlite3.Connection, new: NewRun, caps: QueueCaps | None) -> None:
    """`check_queue` on the raw sqlite3 hot path (inside the writer's transaction)."""
    if caps is None or not caps.applies_to(new):
        return
    for scope, column, owner, cap in _checks(new, caps):
        sql = _SQLITE_COUNT.format(column=column.name)
        if conn.execute(sql, (owner, cap)).fetchone()[0] >= cap:
            repeat = "SELECT 1 FROM runs WHERE org_id = ? AND idempotency_key = ?"
            if (
                new.idempotency_key is not None
                and conn.execute(repeat, (new.org_id, new.idempotency_key)).fetchone()
            ):
                return
            raise QueueFull(scope, owner, cap)


def _repeat(new: NewRun) -> sa.Select[tuple[str]]:
    return sa.select(runs.c.id).where(
        runs.c.org_id == new.org_id, runs.c.idempotency_key == new.idempotency_key
    )


def _checks(new: NewRun, caps: QueueCaps) -> list[tuple[str, sa.Column[str], str, int]]:
    checks: list[tuple[str, sa.Column[str], str, int]] = []
    org_cap = caps.org_cap(new.org_id)
    if org_cap is not None:
        checks.append(("org", runs.c.org_id, new.org_id, org_cap))
    key_cap = caps.key_cap(new.api_key_id)
    if key_cap is not None and new.api_key_id is not None:
        checks.append(("key", runs.c.api_key_id, new.api_key_id, key_cap))
    return checks


def _lock_key(org: str) -> int:
    """A signed 64-bit advisory-lock key for the org's queue (namespaced, stable across processes)."""
    digest = hashlib.blake2b(f"noukai:queue:{org}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)
