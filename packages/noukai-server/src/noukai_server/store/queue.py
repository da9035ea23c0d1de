"""The lease queue kept in the runs table: claim, heartbeat, and fenced writes.

A run is claimable when `status` is queued, or running with an expired lease (its worker crashed:
at-least-once), and `available_at <= now`. For a running run `available_at` always equals
`lease_expires_at`, so both cases are one ordered range scan of the partial index over the queued
and running rows (`ix_runs_claimable`).

`attempt` is bumped by every claim and is the fencing token: a write carrying an older attempt is
from a zombie worker and is refused with `LeaseLost`. A worker whose lease expired but whose run
was not yet claimed by anyone else still holds it (nothing else could have written).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from . import events as event_log
from . import threads_repo, validate
from .errors import EventSequenceError, LeaseLost, RunBusy, RunNotFound
from .records import TERMINAL_STATUSES, EventRow, LeaseState, RunRecord, RunUpdate
from .runs_repo import run_record, update_values
from .schema import CLAIMABLE_PREDICATE, runs

RUNNING = f"{CLAIMABLE_PREDICATE} AND status = 'running'"
"""The running rows, through the queue's partial index: the claimable test adds nothing to the
logic, but both stores then see that the index covers the query (see `CLAIMABLE_PREDICATE`)."""


def literal_condition(sql: str) -> sa.ColumnElement[bool]:
    """A WHERE condition written as SQL text (`CLAIMABLE_PREDICATE`, `RUNNING`), typed as the
    boolean expression it is: SQLAlchemy takes text there, its type hints do not say so."""
    return cast("sa.ColumnElement[bool]", sa.text(sql))


@dataclass(frozen=True, slots=True)
class OrgCaps:
    """How many runs one org may have running at once (fair claiming).

    A claim skips the runs of an org that already holds its cap of live leases (running with a
    lease not yet expired: an expired one belongs to a dead worker and is claimable itself), so one
    org's backlog cannot take every slot while another org's run waits.

    `overrides` (org -> cap) count the org's runs across the whole deployment. `default` applies to
    every other org (None: uncapped), counted across the deployment too, or, with
    `default_per_worker`, on the claiming worker only: the out-of-the-box "half of a worker's
    slots" has to scale with the number of workers, or a one-tenant deployment of ten workers would
    run half of one worker's slots.

    A deployment-wide cap is soft by a hair on PostgreSQL: two workers claiming for the same org at
    the same instant both count the leases committed before them, so the org can briefly hold one
    run more per concurrent claimer; on SQLite claims are serialised and it is exact."""

    default: int | None
    overrides: Mapping[str, int] = field(default_factory=dict)
    default_per_worker: bool = False
    key_default: int | None = None
    """The most runs started with one API key (`runs.api_key_id`) running at once, across the
    deployment; None: no per-key cap. Runs without a key are only under their org's cap."""
    key_overrides: Mapping[str, int] = field(default_factory=dict)
    """Per-key caps (key id -> runs) replacing `key_default`."""

    def __post_init__(self) -> None:
        caps: list[tuple[str, int | None]] = [
            ("every org", self.default),
            *self.overrides.items(),
            ("every key", self.key_default),
            *(("key " + key, cap) for key, cap in self.key_overrides.items()),
        ]
        for org, cap in caps:
            if cap is not None and cap < 1:
                raise ValueError(f"the running-runs cap of {org} must be >= 1, got {cap}")

    @property
    def active(self) -> bool:
        return self.orgs_active or self.keys_active

    @property
    def orgs_active(self) -> bool:
        return self.default is not None or bool(self.overrides)

    @property
    def keys_active(self) -> bool:
        return self.key_default is not None or bool(self.key_overrides)

    def cap(self, org: str) -> int | None:
        """The org's cap; None: uncapped."""
        return self.overrides.get(org, self.default)

    def key_cap(self, key_id: str | None) -> int | None:
        """The key's cap; None: uncapped (and always for a run started without a key)."""
        return None if key_id is None else self.key_overrides.get(key_id, self.key_default)


def capped_orgs(caps: OrgCaps, worker_id: str, now: datetime) -> sa.Select[tuple[str]]:
    """The orgs at or above their cap of live leases. One range scan of the running rows whose
    lease is live (`ix_runs_claimable`), so its cost is bounded by the number of runs running in
    the whole deployment, whatever the size of the backlog."""
    everywhere = sa.func.count()
    here = sa.func.sum(sa.case((runs.c.lease_owner == worker_id, 1), else_=0))
    default_count = here if caps.default_per_worker else everywhere
    over_default = default_count >= sa.literal(caps.default, sa.Integer())
    reached: sa.ColumnElement[bool] = over_default
    if caps.overrides:
        reached = sa.case(
            *((runs.c.org_id == org, everywhere >= limit) for org, limit in sorted(caps.overrides.items())),
            else_=over_default,
        )
    return (
        sa.select(runs.c.org_id)
        .where(literal_condition(RUNNING), runs.c.available_at > now)
        .group_by(runs.c.org_id)
        .having(reached)
    )


def capped_keys(caps: OrgCaps, now: datetime) -> sa.Select[tuple[str]]:
    """The API keys at or above their cap of live leases, across the deployment (the same range
    scan of the running rows as `capped_orgs`)."""
    count = sa.func.count()
    reached: sa.ColumnElement[bool] = (
        sa.false() if caps.key_default is None else count >= sa.literal(caps.key_default, sa.Integer())
    )
    if caps.key_overrides:
        reached = sa.case(
            *((runs.c.api_key_id == key, count >= cap) for key, cap in sorted(caps.key_overrides.items())),
            else_=reached,
        )
    return (
        sa.select(runs.c.api_key_id)
        .where(literal_condition(RUNNING), runs.c.available_at > now, runs.c.api_key_id.is_not(None))
        .group_by(runs.c.api_key_id)
        .having(reached)
    )


def _lease_expiry(now: datetime, lease_seconds: float) -> datetime:
    if lease_seconds <= 0:
        raise ValueError(f"lease_seconds must be positive, got {lease_seconds}")
    return now + timedelta(seconds=lease_seconds)


async def claim_next_run(
    conn: AsyncConnection, worker_id: str, lease_seconds: float, now: datetime, caps: OrgCaps | None = None
) -> RunRecord | None:
    validate.token(worker_id, "worker id")
    row = (await conn.execute(claim_statement(worker_id, lease_seconds, now, caps))).first()
    return None if row is None else run_record(row)


def claim_statement(
    worker_id: str, lease_seconds: float, now: datetime, caps: OrgCaps | None = None
) -> sa.Update:
    """The claim of the oldest claimable run as one UPDATE ... RETURNING the run."""
    expires = _lease_expiry(now, lease_seconds)
    # The status test as literal SQL, not bound values: PostgreSQL can use a partial index only
    # when it can prove the query implies the index's predicate, which it cannot from parameters
    # once a prepared statement goes to a generic plan.
    claimable: tuple[sa.ColumnElement[bool], ...] = (
        literal_condition(CLAIMABLE_PREDICATE),
        runs.c.available_at <= now,
    )
    if caps is not None and caps.orgs_active:
        claimable = (*claimable, runs.c.org_id.not_in(capped_orgs(caps, worker_id, now)))
    if caps is not None and caps.keys_active:
        free_key = sa.or_(runs.c.api_key_id.is_(None), runs.c.api_key_id.not_in(capped_keys(caps, now)))
        claimable = (*claimable, free_key)
    # SKIP LOCKED: concurrent claimers on PostgreSQL pass over each other's candidates instead of
    # queueing on them (SQLite renders no FOR UPDATE; its single writer serialises claims).
    oldest = (
        sa.select(runs.c.id)
        .where(*claimable)
        .order_by(runs.c.available_at, runs.c.created_at, runs.c.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    return (
        sa.update(runs)
        .where(runs.c.id == oldest, *claimable)
        .values(
            status="running",
            attempt=runs.c.attempt + 1,
            lease_owner=worker_id,
            lease_expires_at=expires,
            available_at=expires,
            started_at=sa.func.coalesce(runs.c.started_at, now),
            updated_at=now,
        )
        .returning(*runs.c)
    )


async def release_leases(
    conn: AsyncConnection, worker_id: str, run_ids: Collection[str] | None, now: datetime
) -> list[str]:
    """Hand the worker's running runs (all of them, or those of `run_ids`) back to the queue at
    once, instead of letting their leases expire: queued, lease cleared, claimable now. `attempt`
    is kept, so the next claim bumps it and every later write of the old holder (which carries the
    old attempt, and finds the run queued until then) is refused with `LeaseLost`. A run whose
    lease this worker no longer holds is left alone. Returns the ids released."""
    validate.token(worker_id, "worker id")
    # Child runs stay leased: the next attempt of their parent takes them over (`child_runs_repo`);
    # queued, they could be claimed and run on their own meanwhile.
    conditions = [literal_condition(RUNNING), runs.c.lease_owner == worker_id, runs.c.parent_run_id.is_(None)]
    if run_ids is not None:
        if not run_ids:
            return []
        conditions.append(runs.c.id.in_(sorted(run_ids)))
    stmt = (
        sa.update(runs)
        .where(*conditions)
        .values(status="queued", lease_owner=None, lease_expires_at=None, available_at=now, updated_at=now)
        .returning(runs.c.id)
    )
    return sorted(str(run_id) for run_id in (await conn.execute(stmt)).scalars())


async def cancels_for(conn: AsyncConnection, worker_id: str) -> list[str]:
    """The runs this worker holds whose cancellation was asked for."""
    return sorted(str(run_id) for run_id in (await conn.execute(cancels_statement(worker_id))).scalars())


def cancels_statement(worker_id: str) -> sa.Select[tuple[str]]:
    """One read over the queued and running rows (`ix_runs_claimable`), so a worker can ask often
    whatever it runs, and however long the table's history."""
    return sa.select(runs.c.id).where(
        literal_condition(RUNNING), runs.c.lease_owner == worker_id, runs.c.cancel_requested.is_(True)
    )


def _holds(attempt: int, worker_id: str | None = None) -> tuple[sa.ColumnElement[bool], ...]:
    owner = runs.c.lease_owner.is_not(None) if worker_id is None else runs.c.lease_owner == worker_id
    return (runs.c.attempt == attempt, runs.c.status == "running", owner)


async def extend_lease(
    conn: AsyncConnection, run_id: str, attempt: int, worker_id: str, lease_seconds: float, now: datetime
) -> LeaseState:
    expires = _lease_expiry(now, lease_seconds)
    stmt = (
        sa.update(runs)
        .where(runs.c.id == run_id, *_holds(attempt, worker_id))
        .values(lease_expires_at=expires, available_at=expires, updated_at=now)
        .returning(runs.c.cancel_requested)
    )
    cancel = (await conn.execute(stmt)).scalar_one_or_none()
    if cancel is not None:
        return LeaseState(held=True, cancel_requested=cancel)
    lost = (
        await conn.execute(sa.select(runs.c.cancel_requested).where(runs.c.id == run_id))
    ).scalar_one_or_none()
    return LeaseState(held=False, cancel_requested=bool(lost))


async def _write(
    conn: AsyncConnection,
    run_id: str,
    guard: Sequence[sa.ColumnElement[bool]],
    events: Sequence[EventRow],
    values: dict[str, Any],
    now: datetime,
) -> sa.Row[tuple[object, ...]] | None:
    """One conditional UPDATE (which also takes the row lock on PostgreSQL), then the inserts."""
    event_log.check_batch(events)
    conditions = [runs.c.id == run_id, *guard]
    if events:
        conditions.append(runs.c.last_seq == events[0].seq - 1)
        values = {**values, "last_seq": events[-1].seq}
    row = (await conn.execute(sa.update(runs).where(*conditions).values(**values).returning(*runs.c))).first()
    if row is not None:
        await event_log.insert_events(conn, run_id, events, now)
    return row


async def _current(conn: AsyncConnection, run_id: str) -> RunRecord:
    row = (await conn.execute(sa.select(runs).where(runs.c.id == run_id))).first()
    if row is None:
        raise RunNotFound(f"no run with id {run_id!r}")
    return run_record(row)


async def record(
    conn: AsyncConnection,
    run_id: str,
    attempt: int,
    events: Sequence[EventRow],
    update: RunUpdate | None,
    now: datetime,
) -> str | None:
    """The worker's fenced write: events and state change together, or `LeaseLost` and nothing.
    Returns the id of the thread run this write made claimable (the run ended its thread's turn
    and the next turn was waiting), else None."""
    values = update_values(update, now, leased=True)
    if update is not None and update.status in TERMINAL_STATUSES:
        await threads_repo.lock_thread_of(conn, run_id)  # lock order: thread, then run
    row = await _write(conn, run_id, _holds(attempt), events, values, now)
    if row is not None:
        if row.thread_id is not None and update is not None and update.status in TERMINAL_STATUSES:
            return await threads_repo.on_run_end(conn, run_record(row), now)  # same transaction
        return None
    run = await _current(conn, run_id)
    raise refusal(run_id, attempt, events, run.attempt, run.status, run.lease_owner, run.last_seq)


def refusal(
    run_id: str,
    attempt: int,
    events: Sequence[EventRow],
    held_attempt: int,
    status: str,
    owner: str | None,
    last_seq: int,
) -> LeaseLost | EventSequenceError:
    """Why a fenced write matched no row, given the run as it is now."""
    if held_attempt != attempt or status != "running" or owner is None:
        return LeaseLost(
            f"run {run_id} attempt {attempt} no longer holds the lease "
            f"(now attempt {held_attempt}, status {status}, owner {owner})"
        )
    return event_log.sequence_error(run_id, last_seq, events)


async def append_events_unleased(
    conn: AsyncConnection,
    run_id: str,
    events: Sequence[EventRow],
    update: RunUpdate | None,
    now: datetime,
) -> RunRecord:
    """The API's write to a run no worker holds (e.g. the cancellation event of a waiting run)."""
    values = update_values(update, now, leased=False)
    row = await _write(conn, run_id, (runs.c.status != "running",), events, values, now)
    if row is not None:
        return run_record(row)
    run = await _current(conn, run_id)
    if run.status == "running":
        raise RunBusy(f"run {run_id} is running: only the worker holding its lease may write to it")
    raise event_log.sequence_error(run_id, run.last_seq, events)
