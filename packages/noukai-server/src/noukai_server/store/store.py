"""`Store`: the one object the server and the workers use to reach the database.

Each method is one transaction. Writes go through `Database.write()` (the single serialised writer
on SQLite), reads through `Database.read()`. A write, once called, runs to its end even if the
caller is cancelled (the cancellation is delivered right after): check the store's state rather
than assuming a cancelled write did not happen.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from . import credits, flows_repo, keys, queue, run_counts, run_listing, runs_repo, tenancy, threads_repo
from . import events as event_log
from .child_runs_repo import take_over_child
from .db import Database, Dialect, PoolSize
from .head_reads import HeadReads
from .migrate import check_schema, upgrade
from .queue import OrgCaps
from .quotas import QueueCaps, check_queue
from .records import TERMINAL_STATUSES as _TERMINAL
from .records import (
    ApiKeyRecord,
    EventRow,
    FlowHead,
    FlowRecord,
    FlowVersionRecord,
    LeaseState,
    NewRun,
    ProjectRecord,
    RunHead,
    RunRecord,
    RunStatus,
    RunUpdate,
    ThreadErasure,
    ThreadMessage,
    ThreadRecord,
)
from .schema import TOKEN_LENGTH
from .sqlite_hot import SqliteHotPath

Clock = Callable[[], datetime]
T = TypeVar("T")


def utc_now() -> datetime:
    return datetime.now(UTC)


class Store:
    """Tenancy, API keys, flows, runs, the lease queue and the event log, on SQLite or PostgreSQL.

    Open with `await Store.connect(url)`; close with `await store.close()` (or `async with`).
    Times come from `clock` (the machine's UTC clock unless a test passes its own); scaled-out
    deployments need NTP-synchronised clocks, which lease lengths of seconds tolerate easily.
    """

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        # SQLite: the per-run calls (create, claim, record, run and log reads) skip SQLAlchemy.
        self._hot: SqliteHotPath | None = None
        if db.sqlite_path is not None and db.write_lock is not None:
            self._hot = SqliteHotPath(db.sqlite_path, db.write_lock)
        self._heads = HeadReads(self.run_heads)

    def now(self) -> datetime:
        """The store's clock: what expiries it records are measured against, so callers that
        judge one (a thread past its TTL) read the same clock."""
        return self._clock()

    @classmethod
    async def connect(
        cls, url: str, *, migrate: bool = True, clock: Clock = utc_now, pool: PoolSize | None = None
    ) -> Store:
        """Open the store at `url` (`sqlite+aiosqlite:///file.db` or `postgresql+psycopg://...`).

        `migrate=True` brings the schema to the newest revision first; with `migrate=False` the
        schema must already be current, else `SchemaMismatch`. `pool` sizes PostgreSQL's
        connection pool (`PoolSize()` when None); SQLite ignores it.
        """
        db = await Database.open(url, pool)
        try:
            if migrate:
                await upgrade(db)
            else:
                await check_schema(db)
        except BaseException:
            await db.close()
            raise
        return cls(db, clock)

    @property
    def dialect(self) -> Dialect:
        return self._db.dialect

    async def close(self) -> None:
        await self._heads.aclose()
        if self._hot is not None:
            await self._hot.close()
        await self._db.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- tenancy -------------------------------------------------------------------------------

    async def ensure_org(self, org: str) -> None:
        await self._db.write(lambda conn: tenancy.ensure_org(conn, org, self._clock()))

    async def ensure_project(self, org: str, project: str) -> ProjectRecord:
        return await self._db.write(lambda conn: tenancy.ensure_project(conn, org, project, self._clock()))

    async def get_project(self, org: str, project: str) -> ProjectRecord | None:
        async with self._db.read() as conn:
            return await tenancy.get_project(conn, org, project)

    # -- API keys ------------------------------------------------------------------------------

    async def create_api_key(
        self,
        org: str,
        project: str | None = None,
        name: str | None = None,
        *,
        scope: str = keys.DEFAULT_SCOPE,
        expires_at: datetime | None = None,
    ) -> tuple[ApiKeyRecord, str]:
        """A new key for the org (or one project of it): `(record, plaintext)`, with one of
        `keys.SCOPES` (ValueError otherwise) and an optional expiry.

        The plaintext is returned this once and never stored; creates the org/project if missing.
        """
        return await self._db.write(
            lambda conn: keys.create_api_key(
                conn, org, project, name, self._clock(), scope=scope, expires_at=expires_at
            )
        )

    async def authenticate(self, key: str) -> ApiKeyRecord | None:
        """The record of a valid, unrevoked key; None for anything else (never says which).
        `keys.ApiKeyExpired` for a genuine key past its expiry (only its holder can learn that)."""
        if self._hot is not None:
            record = await self._hot.find_api_key(key)
        else:
            async with self._db.read() as conn:
                record = await keys.find_for_authentication(conn, key)
        now = self._clock()
        if record is not None:
            keys.check_not_expired(record, now)
        if record is None or not keys.last_used_is_stale(record, now):
            return record
        key_id = record.id

        async def touch(conn: AsyncConnection) -> ApiKeyRecord | None:
            await keys.touch_last_used(conn, key_id, now)
            fresh = await keys.get_api_key(conn, key_id)
            # Revoked between the read and this write: the key no longer authenticates.
            return fresh if fresh is not None and not fresh.revoked else None

        return await self._db.write(touch)

    async def revoke_api_key(self, key_id: str) -> bool:
        """True if the key existed and was active; it authenticates no more."""
        return await self._db.write(lambda conn: keys.revoke_api_key(conn, key_id, self._clock()))

    async def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        """A key's record by id, whatever its state (revoked, expired): for managing keys."""
        async with self._db.read() as conn:
            return await keys.get_api_key(conn, key_id)

    async def list_api_keys(self, org: str | None) -> list[ApiKeyRecord]:
        """The org's keys, or every org's with None."""
        async with self._db.read() as conn:
            return await keys.list_api_keys(conn, org)

    # -- flows ---------------------------------------------------------------------------------

    async def save_draft(
        self, org: str, project: str, slug: str, document: dict[str, Any], name: str | None
    ) -> FlowRecord:
        """Create or replace the flow's draft (and name); `draft_revision` goes 1, 2, 3, ..."""
        return await self._db.write(
            lambda conn: flows_repo.save_draft(conn, org, project, slug, document, name, self._clock())
        )

    async def get_flow(self, org: str, project: str, slug: str) -> FlowRecord | None:
        async with self._db.read() as conn:
            return await flows_repo.get_flow(conn, org, project, slug)

    async def get_flow_head(self, org: str, project: str, slug: str) -> FlowHead | None:
        """The flow's ids, draft revision and newest version, without its documents."""
        if self._hot is not None:
            return await self._hot.get_flow_head(org, project, slug)
        async with self._db.read() as conn:
            return await flows_repo.get_flow_head(conn, org, project, slug)

    async def get_flow_document(self, flow_id: str, version: int) -> tuple[dict[str, Any], int] | None:
        """`(document, revision)`: the draft and its revision for version 0, else version N's
        document and 0; None if there is no such flow or version."""
        if self._hot is not None:
            return await self._hot.get_flow_document(flow_id, version)
        async with self._db.read() as conn:
            return await flows_repo.get_document(conn, flow_id, version)

    async def get_flow_by_id(self, flow_id: str) -> FlowRecord | None:
        async with self._db.read() as conn:
            return await flows_repo.get_flow_by_id(conn, flow_id)

    async def list_flows(self, org: str, project: str | None) -> list[FlowRecord]:
        """A project's flows; all of the org's when `project` is None."""
        async with self._db.read() as conn:
            return await flows_repo.list_flows(conn, org, project)

    async def publish(self, flow_id: str) -> FlowVersionRecord:
        """Freeze the current draft as the next version (1, 2, ...); `FlowNotFound` if no flow."""
        return await self._db.write(lambda conn: flows_repo.publish(conn, flow_id, self._clock()))

    async def list_versions(self, flow_id: str) -> list[FlowVersionRecord]:
        async with self._db.read() as conn:
            return await flows_repo.list_versions(conn, flow_id)

    async def get_version(self, flow_id: str, version: int) -> FlowVersionRecord | None:
        async with self._db.read() as conn:
            return await flows_repo.get_version(conn, flow_id, version)

    async def latest_version(self, flow_id: str) -> FlowVersionRecord | None:
        async with self._db.read() as conn:
            return await flows_repo.latest_version(conn, flow_id)

    # -- runs ----------------------------------------------------------------------------------

    async def create_run(
        self,
        new: NewRun,
        *,
        lease_to: str | None = None,
        lease_seconds: float = 30.0,
        queue_caps: QueueCaps | None = None,
        idempotency_ttl_seconds: float | None = None,
    ) -> RunRecord:
        """Queue a new run. If `new.idempotency_key` was already used in the org, the existing run
        is returned instead and nothing is created: check `record.created`. A repeat whose
        `request_hash` differs raises `IdempotencyConflict`; a key older than
        `idempotency_ttl_seconds` (None: never forgotten) starts a new run (see `idempotency`).

        With `lease_to`, the run is created already claimed by that worker (running, attempt 1,
        leased for `lease_seconds`), for a worker in this process to start at once instead of
        claiming it from the queue. With `queue_caps`, `QueueFull` (and nothing written) when the
        run's org or key already has its cap of queued runs, counted in the insert's transaction."""
        lease = None if lease_to is None else (lease_to, lease_seconds)
        ttl = None if idempotency_ttl_seconds is None else timedelta(seconds=idempotency_ttl_seconds)
        if new.thread is not None:  # a thread's turn: `threads_repo.create_thread_run`

            async def thread_turn(conn: AsyncConnection) -> RunRecord:
                await check_queue(conn, new, queue_caps)
                return await threads_repo.create_thread_run(conn, new, self._clock(), lease, ttl)

            return await self._db.write(thread_turn)
        if self._hot is not None:
            return await self._hot.create_run(new, self._clock(), lease, ttl, queue_caps=queue_caps)

        async def queued(conn: AsyncConnection) -> RunRecord:
            await check_queue(conn, new, queue_caps)
            return await runs_repo.create_run(conn, new, self._clock(), lease, ttl)

        return await self._db.write(queued)

    async def idempotent_repeat(
        self, new: NewRun, *, idempotency_ttl_seconds: float | None = None
    ) -> RunRecord | None:
        """What `create_run` would answer a repeat of `new`'s idempotency key without writing: the
        run that holds the key, `IdempotencyConflict` for another request, or None (no key, an
        unused one, or one past its TTL). A refusal that would stop a new run (no credit, a full
        queue) asks this first, so a retried request still gets the run it already made."""
        if new.idempotency_key is None:
            return None
        ttl = None if idempotency_ttl_seconds is None else timedelta(seconds=idempotency_ttl_seconds)
        async with self._db.read() as conn:
            return await runs_repo.idempotent_repeat(conn, new, self._clock(), ttl)

    async def counters_write(
        self,
        on_sqlite: Callable[[sqlite3.Connection], T],
        on_sqlalchemy: Callable[[AsyncConnection], Awaitable[T]],
    ) -> T:
        """One write transaction of the request-rate counters (`rate_counters`): `on_sqlite` on the
        SQLite hot path (group-committed with the runs' writes), else `on_sqlalchemy`."""
        if self._hot is not None:
            return await self._hot.write(on_sqlite)
        if self._db.dialect != "postgresql":
            return await self._db.write(on_sqlalchemy)

        async def unflushed(conn: AsyncConnection) -> T:
            # A counter lost in a crash costs a request's worth of rate; waiting for the WAL
            # flush on every request cost about 5 ms per transaction (docs/deployment.md).
            await conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
            return await on_sqlalchemy(conn)

        return await self._db.write(unflushed)

    async def get_run(self, run_id: str) -> RunRecord | None:
        if self._hot is not None:
            return await self._hot.get_run(run_id)
        async with self._db.read() as conn:
            return await runs_repo.get_run(conn, run_id)

    async def run_heads(self, run_ids: Sequence[str]) -> dict[str, RunHead]:
        """The status and last event seq of each of these runs that exists, in one statement."""
        if not run_ids:
            return {}
        if self._hot is not None:
            return await self._hot.run_heads(run_ids)
        async with self._db.read() as conn:
            return await runs_repo.run_heads(conn, run_ids)

    async def unfinished_run_counts(self) -> dict[str, int]:
        """Runs queued, running and waiting now: one read over the unfinished rows only
        (`run_counts`), for the queue-depth gauge of `/metrics`."""
        async with self._db.read() as conn:
            return await run_counts.unfinished_counts(conn)

    async def list_runs(
        self, where: run_listing.RunFilter, after: run_listing.Position | None = None, limit: int = 50
    ) -> run_listing.RunPage:
        """A page of the tenant's runs, newest first (`run_listing`): at most `limit` after `after`."""
        async with self._db.read() as conn:
            return await run_listing.list_runs(conn, where, after, limit)

    async def get_run_head(self, run_id: str) -> RunHead | None:
        """The run's status and last event seq (None: no such run). Asks made by many readers at
        about the same time share one statement (`head_reads`): this is what stream polls use."""
        return await self._heads.get(run_id)

    async def list_session_runs(self, session_id: str, *, limit: int = 1000) -> list[RunRecord]:
        """The runs recorded with this session id (any tenant's: callers filter), oldest first by
        creation time. An id longer than any stored one simply has no runs."""
        if not session_id or len(session_id) > TOKEN_LENGTH:
            return []
        async with self._db.read() as conn:
            return await runs_repo.list_session_runs(conn, session_id, limit)

    async def advance_run(
        self,
        run_id: str,
        *,
        expected_status: RunStatus,
        cursor: int,
        pause_after: int | None,
        state_patch: dict[str, Any] | None = None,
        input_patch: dict[str, Any] | None = None,
    ) -> RunRecord | None:
        """Re-queue a paused run at `cursor` (patches are shallow-merged into state and input).

        None, changing nothing, if the run is not in `expected_status` (or does not exist).
        """
        return await self._db.write(
            lambda conn: runs_repo.advance_run(
                conn,
                run_id,
                expected_status=expected_status,
                cursor=cursor,
                pause_after=pause_after,
                state_patch=state_patch,
                input_patch=input_patch,
                now=self._clock(),
            )
        )

    async def request_cancel(
        self,
        run_id: str,
        *,
        final_events: Callable[[RunRecord], Sequence[EventRow]] | None = None,
    ) -> RunRecord | None:
        """Ask a run to stop and return it; None if there is no such run.

        A queued or waiting run comes back `cancelled`; a running one comes back running with
        `cancel_requested` (its worker finishes the cancellation); a finished one is unchanged.

        `final_events(cancelled_run)` builds the events to append when the run is cancelled right
        here (seqs from `cancelled_run.last_seq + 1`); they are written in the same transaction,
        so a crash cannot leave a cancelled run without its last event.
        """

        async def work(conn: AsyncConnection) -> RunRecord | None:
            now = self._clock()
            await threads_repo.lock_thread_of(conn, run_id)  # lock order: thread, then run
            run, cancelled_now = await runs_repo.request_cancel(conn, run_id, now)
            if run is not None and cancelled_now and run.thread_id is not None:
                await threads_repo.on_run_end(conn, run, now)
            if run is None or not cancelled_now or final_events is None:
                return run
            return await queue.append_events_unleased(conn, run_id, final_events(run), None, now)

        return await self._db.write(work)

    # -- the lease queue -------------------------------------------------------------------------

    async def claim_next_run(
        self, worker_id: str, lease_seconds: float, caps: OrgCaps | None = None
    ) -> RunRecord | None:
        """Lease the oldest claimable run (queued, or running with an expired lease) to `worker_id`;
        with `caps`, the oldest of an org that holds fewer live leases than its cap."""
        if self._hot is not None:
            return await self._hot.claim_next_run(worker_id, lease_seconds, self._clock(), caps)
        return await self._db.write(
            lambda conn: queue.claim_next_run(conn, worker_id, lease_seconds, self._clock(), caps)
        )

    async def release_leases(self, worker_id: str, run_ids: Collection[str] | None = None) -> list[str]:
        """Hand this worker's running runs (all, or those of `run_ids`) back to the queue now:
        claimable at once, the next claim runs them as a new attempt, and any later write of this
        worker to them is refused (`LeaseLost`). Returns the ids released."""
        return await self._db.write(
            lambda conn: queue.release_leases(conn, worker_id, run_ids, self._clock())
        )

    async def take_over_child(
        self, run_id: str, parent_run_id: str, worker_id: str, lease_seconds: float
    ) -> RunRecord | None:
        """Lease the unfinished child run `run_id` of `parent_run_id` to `worker_id` as its next
        attempt (the parent's new attempt continues it); None when it has ended or is no child of
        that parent. See `child_runs_repo`."""
        return await self._db.write(
            lambda conn: take_over_child(conn, run_id, parent_run_id, worker_id, lease_seconds, self._clock())
        )

    async def extend_lease(
        self, run_id: str, attempt: int, worker_id: str, lease_seconds: float
    ) -> LeaseState:
        """Heartbeat: push the lease out by `lease_seconds` if still held; report cancellation."""
        return await self._db.write(
            lambda conn: queue.extend_lease(conn, run_id, attempt, worker_id, lease_seconds, self._clock())
        )

    async def cancels_for(self, worker_id: str) -> list[str]:
        """The ids of the runs `worker_id` holds whose cancellation was asked for: how a worker
        hears of cancels when no bus carries the notice across processes."""
        async with self._db.read() as conn:
            return await queue.cancels_for(conn, worker_id)

    async def record(
        self, run_id: str, attempt: int, events: Sequence[EventRow], update: RunUpdate | None = None
    ) -> str | None:
        """The worker's write, fenced by `attempt`: append `events` (seqs contiguous from the run's
        `last_seq + 1`) and apply `update`, in one transaction. Returns the id of a thread's waiting
        run that this write (ending its thread's active run) made claimable, else None.

        Raises `LeaseLost` (the run was re-claimed, released or is no longer running),
        `EventSequenceError`, or `RunNotFound`; in every case nothing is written.
        """
        return (await self._record(run_id, attempt, events, update, None)).promoted

    async def append_events_unleased(
        self, run_id: str, events: Sequence[EventRow], update: RunUpdate | None = None
    ) -> RunRecord:
        """The API's own write to a run that is not running; `RunBusy` if it is."""
        return await self._db.write(
            lambda conn: queue.append_events_unleased(conn, run_id, events, update, self._clock())
        )

    # -- credits and usage -----------------------------------------------------------------------

    async def record_step(
        self,
        run_id: str,
        attempt: int,
        events: Sequence[EventRow],
        update: RunUpdate | None,
        charge: credits.StepCharge,
    ) -> credits.Recorded:
        """`record`, charging a completed step in the same transaction (`credits.charge_step`):
        the charge is stored exactly when the step's checkpoint is, and never twice for one step.
        Raises what `record` raises, with nothing written or charged."""
        return await self._record(run_id, attempt, events, update, charge)

    async def _record(
        self,
        run_id: str,
        attempt: int,
        events: Sequence[EventRow],
        update: RunUpdate | None,
        charge: credits.StepCharge | None,
    ) -> credits.Recorded:
        # A thread run's end also writes its thread (`threads_repo.on_run_end`), which only the
        # SQLAlchemy path does: its terminal write goes there (one per run; same write lock).
        ends_thread_run = (
            update is not None
            and update.status in _TERMINAL
            and self._hot is not None
            and await self._hot.thread_of(run_id) is not None
        )
        if self._hot is not None and not ends_thread_run:
            balance = await self._hot.record(run_id, attempt, events, update, self._clock(), charge)
            return credits.Recorded(None, balance)

        async def work(conn: AsyncConnection) -> credits.Recorded:
            now = self._clock()
            promoted = await queue.record(conn, run_id, attempt, events, update, now)
            if charge is None:
                return credits.Recorded(promoted, None)
            return credits.Recorded(promoted, await credits.charge_step_async(conn, run_id, charge, now))

        return await self._db.write(work)

    async def credit_balance(self, org: str) -> credits.CreditBalance | None:
        """The org's balance; None when it has none (its runs are not limited)."""
        async with self._db.read() as conn:
            return await credits.get_balance(conn, org)

    async def credit_balance_micro_usd(self, org: str) -> int | None:
        """Just the balance, in micro-dollars (None: unlimited): the check before each run starts."""
        if self._hot is not None:
            return await self._hot.credit_balance(org)
        balance = await self.credit_balance(org)
        return None if balance is None else balance.balance_micro_usd

    async def add_credits(
        self, org: str, amount_micro_usd: int, *, note: str | None = None
    ) -> credits.CreditGrant:
        """Add credit (negative: take some back) to an existing org; `credits.OrgNotFound` if
        there is none. The org's first grant gives it a balance, limiting its runs from then on."""
        return await self._db.write(
            lambda conn: credits.add_credits(conn, org, amount_micro_usd, note, self._clock())
        )

    async def list_credit_grants(self, org: str, *, limit: int = 20) -> list[credits.CreditGrant]:
        """The org's latest grants and corrections, newest first."""
        async with self._db.read() as conn:
            return await credits.list_grants(conn, org, limit)

    async def usage(
        self,
        org: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        group_by: credits.UsageGroup = "org",
    ) -> list[credits.UsageRow]:
        """What the org's completed steps cost in `[since, until)`, per org, project, flow or key."""
        async with self._db.read() as conn:
            return await credits.usage(conn, org, since, until, group_by)

    # -- the event log ---------------------------------------------------------------------------

    async def read_events(
        self,
        run_id: str,
        after_seq: int = 0,
        limit: int | None = None,
        *,
        types: Collection[str] | None = None,
        newest_first: bool = False,
        timestamps: bool = True,
    ) -> list[EventRow]:
        """Events with `seq > after_seq`, in seq order (newest first if asked), at most `limit` of
        them; only those of the given `types` when `types` is not None. With `timestamps=False`
        rows may come without `created_at` (None): streams never need it, and it costs a parse per
        row."""
        if self._hot is not None:
            return await self._hot.read_events(
                run_id, after_seq, limit, types=types, newest_first=newest_first, timestamps=timestamps
            )
        async with self._db.read() as conn:
            return await event_log.read_events(
                conn, run_id, after_seq, limit, types=types, newest_first=newest_first
            )

    async def has_events(self, run_id: str) -> bool:
        """Whether any of the run's log is stored (False once retention pruned it)."""
        if self._hot is not None:
            return await self._hot.has_events(run_id)
        async with self._db.read() as conn:
            return await event_log.has_events(conn, run_id)

    async def prune_events(
        self,
        finished_before: datetime,
        *,
        max_runs: int = 200,
        session_finished_before: datetime | None = None,
    ) -> int:
        """Delete the logs of up to `max_runs` runs that ended before `finished_before` (one short
        write; call again while it returns `max_runs`). Returns how many runs were pruned.

        Runs recorded in a session (`session_id` set) are cut off at `session_finished_before`
        instead, when given: their logs are the session's replay snapshots.
        """
        return await self._db.write(
            lambda conn: event_log.prune_finished(conn, finished_before, max_runs, session_finished_before)
        )

    # -- threads ---------------------------------------------------------------------------------

    async def create_thread(
        self,
        org: str,
        project: str,
        *,
        metadata: dict[str, Any] | None = None,
        ttl_seconds: int,
    ) -> ThreadRecord:
        """A new, empty thread of `org`/`project` (the project is created if missing), expiring
        `ttl_seconds` after its last activity."""
        return await self._db.write(
            lambda conn: threads_repo.create_thread(
                conn, org, project, metadata or {}, ttl_seconds, self._clock()
            )
        )

    async def ensure_thread(
        self, org: str, project: str, thread_id: str, *, ttl_seconds: int
    ) -> tuple[ThreadRecord, bool]:
        """The tenant's thread `thread_id`, created empty under that id when missing (True when
        it was). `ThreadNotFound` when another tenant holds the id. Two callers creating the same
        id at once: one inserts, the other finds it on its retry."""
        for retry in (False, True):
            try:
                return await self._db.write(
                    lambda conn: threads_repo.ensure_thread(
                        conn, org, project, thread_id, ttl_seconds, self._clock()
                    )
                )
            except IntegrityError:
                if retry:
                    raise
        raise AssertionError("unreachable")

    async def get_thread(self, thread_id: str) -> ThreadRecord | None:
        """The thread, expired or not (callers compare `expires_at`); None if there is none."""
        async with self._db.read() as conn:
            return await threads_repo.get_thread(conn, thread_id)

    async def list_thread_messages(
        self, thread_id: str, *, after_position: int = 0, limit: int | None = None
    ) -> list[ThreadMessage]:
        async with self._db.read() as conn:
            return await threads_repo.list_messages(conn, thread_id, after_position, limit)

    async def list_thread_runs(
        self, thread_id: str, *, after_ordinal: int = 0, limit: int = 100
    ) -> list[RunRecord]:
        """The thread's runs after `after_ordinal`, in thread order (their `thread_ordinal`)."""
        async with self._db.read() as conn:
            return await threads_repo.list_thread_runs(conn, thread_id, after_ordinal, limit)

    async def delete_thread(self, thread_id: str) -> ThreadErasure:
        """Erase the thread: `ThreadNotFound`, or `ThreadBusy` while one of its runs is active."""
        return await self._db.write(lambda conn: threads_repo.erase_thread(conn, thread_id))

    async def fork_thread(
        self,
        thread_id: str,
        position: int | None,
        *,
        metadata: dict[str, Any] | None = None,
        ttl_seconds: int | None = None,
    ) -> ThreadRecord:
        """A new thread with a copy of the messages up to `position` (all with None)."""
        return await self._db.write(
            lambda conn: threads_repo.fork_thread(
                conn, thread_id, position, self._clock(), metadata=metadata, ttl_seconds=ttl_seconds
            )
        )

    async def add_thread_tool_turns(self, run_id: str, turns: list[dict[str, Any]]) -> None:
        """Keep a thread run's tool turns, to append them to its thread with its answer."""
        await self._db.write(lambda conn: threads_repo.add_tool_turns(conn, run_id, turns))

    async def erase_expired_threads(self, *, max_threads: int = 50) -> int:
        """Erase up to `max_threads` threads past their TTL (none with an active run), each as
        `delete_thread` does. Returns how many were erased."""

        async def work(conn: AsyncConnection) -> int:
            expired = await threads_repo.expired_threads(conn, self._clock(), max_threads)
            for thread_id in expired:
                await threads_repo.erase_thread(conn, thread_id)
            return len(expired)

        return await self._db.write(work)
