"""The embedded store's hot path: the per-run reads and writes on raw `sqlite3`, group-committed.

Every run costs a handful of store calls (create, claim, one fenced write per batch of events,
log and status reads by its followers). Through SQLAlchemy's async layer each of these cost about
a millisecond of CPU in statement building, cache-key generation and result processing, which made
the store most of the server's work (see docs/benchmarks.md). Here the same statements are plain
SQL strings on `sqlite3` connections:

- **Writes** queue up and one committer runs everything queued in ONE transaction, on the event
  loop's thread: a commit under WAL with `synchronous=NORMAL` takes microseconds, less than handing
  it to a thread (and the GIL back and forth). While the loop serves others, the next batch
  gathers: at 50 concurrent runs a transaction carries several runs' events. Jobs run back to back;
  only if one fails is the batch run again with a savepoint per job, so the failing one (a
  `LeaseLost`, say) is undone alone. The committer takes the store's asyncio write lock, the one
  SQLAlchemy's writer takes, so the two never contend inside SQLite. Nothing here waits on the
  loop: the busy timeout is 0 (another process holding the file's write lock sends the batch to a
  writer thread, which waits for it), and WAL checkpoints, which fsync, run on that thread.
- **Reads** of a row or a page run on the loop too (a reader never waits for the writer under
  WAL); a busy file or an unbounded read goes to a small pool of reader threads.

The semantics are exactly those of the SQLAlchemy functions they replace on SQLite (`queue`,
`runs_repo`, `events`): the store's test suite runs against both dialects and covers them.
Values are stored as SQLAlchemy stores them (`sqlite_values`), so both paths share one file.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa

from . import credits, idempotency, keys, queue, validate
from . import events as event_log
from .db import SQLITE_BUSY_TIMEOUT_MS, finish_even_if_cancelled
from .errors import FlowNotFound, RunNotFound
from .quotas import QueueCaps, check_queue_sqlite
from .records import ApiKeyRecord, EventRow, FlowHead, NewRun, RunHead, RunRecord, RunUpdate
from .runs_repo import RUN_COLUMNS, Lease, queued_run_values, update_values
from .schema import CLAIMABLE_PREDICATE
from .sqlite_values import (
    RUN_SELECT,
    decode_json,
    decode_time,
    encode_run_value,
    encode_time,
    run_from_row,
)

T = TypeVar("T")
logger = logging.getLogger("noukai_server.store")
Job = Callable[[sqlite3.Connection], Any]

READ_THREADS = 2
CHECKPOINT_EVERY = 200
"""Commits between two WAL checkpoints (run on a thread; see `_inline_writer`)."""
INLINE_READ_LIMIT = 500
"""Event reads of at most this many rows run on the event loop (see `SqliteHotPath._read`)."""


def _connect(path: str, *, writer: bool, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> sqlite3.Connection:
    # isolation_level=None: no implicit transactions; the committer issues BEGIN IMMEDIATE itself.
    # Each connection is used by the one thread that opened it (thread-local); only `close()` at
    # shutdown comes from another thread, after those threads have finished.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
    conn.execute("PRAGMA foreign_keys=ON")
    if not writer:
        conn.execute("PRAGMA query_only=ON")
    return conn


class SqliteHotPath:
    def __init__(self, path: str, write_lock: asyncio.Lock) -> None:
        self._path = path
        self._write_lock = write_lock
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="noukai-sqlite-writer")
        self._readers = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="noukai-sqlite-reader")
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._opened_lock = threading.Lock()
        self._queue: list[tuple[Job, asyncio.Future[Any]]] = []
        self._committer: asyncio.Task[None] | None = None
        self._inline_conn: sqlite3.Connection | None = None
        self._commits = 0
        self._checkpoint: asyncio.Future[None] | None = None
        self._inline_reader: sqlite3.Connection | None = None
        """Used only on the event loop's thread (see `_read`)."""

    async def close(self) -> None:
        while self._committer is not None:
            await asyncio.wait([self._committer])
        if self._checkpoint is not None:
            await asyncio.wait([self._checkpoint])
        for conn in (self._inline_reader, self._inline_conn):
            if conn is not None:
                conn.close()
        self._inline_reader = self._inline_conn = None
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._shutdown)

    def _shutdown(self) -> None:
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        with self._opened_lock:
            for conn in self._opened:
                # Each connection belongs to a thread that has ended: closing from here is safe.
                conn.close()
            self._opened.clear()

    def _connection(self, *, writer: bool) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self._path, writer=writer)
            self._local.conn = conn
            with self._opened_lock:
                self._opened.append(conn)
        return conn

    # -- plumbing ----------------------------------------------------------------------------------

    async def _read(self, job: Callable[[sqlite3.Connection], T], *, inline: bool = True) -> T:
        """Run a one-statement read. Small reads run right here on the event loop: a primary-key
        lookup takes microseconds, far less than handing it to a thread and back. Readers never
        wait for the writer under WAL; in the rare case SQLite says busy (a checkpoint), or for a
        read that may be large, the read goes to a reader thread instead."""
        if inline:
            if self._inline_reader is None:
                self._inline_reader = _connect(self._path, writer=False, busy_timeout_ms=0)
            try:
                return job(self._inline_reader)
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                    raise _as_store_error(exc) from exc
            except sqlite3.Error as exc:
                raise _as_store_error(exc) from exc
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._run_read, job)

    def _run_read(self, job: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return job(self._connection(writer=False))
        except sqlite3.Error as exc:
            raise _as_store_error(exc) from exc

    async def write(self, job: Callable[[sqlite3.Connection], T]) -> T:
        """Run `job` in the next group commit (for callers outside this module: `Store`)."""
        return await self._write(job)

    async def _write(self, job: Callable[[sqlite3.Connection], T]) -> T:
        """Run `job` in the next group commit. Once called it runs to its end even if the caller is
        cancelled (the cancellation is delivered after), like `Database.write`."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.append((job, future))
        if self._committer is None:
            self._committer = loop.create_task(self._commit_queued(), name="noukai-sqlite-commit")
        return await finish_even_if_cancelled(future)

    async def _commit_queued(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                jobs = [job for job, _ in batch]
                try:
                    async with self._write_lock:
                        try:
                            outcomes = _run_batch(self._inline_writer(), jobs)
                        except sqlite3.OperationalError as exc:
                            if exc.sqlite_errorcode not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                                raise
                            # Another process holds the write lock: wait for it on a thread.
                            outcomes = await loop.run_in_executor(
                                self._writer, self._run_batch_in_thread, jobs
                            )
                except BaseException as exc:  # the whole transaction failed: every job did
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(_as_store_error(exc) if isinstance(exc, Exception) else exc)
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    continue
                for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
                    if future.done():
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
                self._commits += 1
                if self._commits % CHECKPOINT_EVERY == 0 and self._checkpoint is None:
                    self._checkpoint = loop.run_in_executor(self._writer, self._checkpoint_in_thread)
                    self._checkpoint.add_done_callback(self._checkpoint_done)
        finally:
            self._committer = None

    def _inline_writer(self) -> sqlite3.Connection:
        """The writer connection used on the event loop's thread. Its commits never wait: busy
        timeout 0 (another process's writer sends the batch to a thread), and no automatic WAL
        checkpoint (whose fsync would stall the loop; a thread checkpoints instead)."""
        if self._inline_conn is None:
            self._inline_conn = _connect(self._path, writer=True, busy_timeout_ms=0)
            self._inline_conn.execute("PRAGMA wal_autocheckpoint=0")
        return self._inline_conn

    def _run_batch_in_thread(self, jobs: list[Job]) -> list[tuple[bool, Any]]:
        return _run_batch(self._connection(writer=True), jobs)

    def _checkpoint_in_thread(self) -> None:
        # PASSIVE: copies what it can without blocking the writer or any reader.
        self._connection(writer=True).execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _checkpoint_done(self, future: asyncio.Future[None]) -> None:
        self._checkpoint = None
        if not future.cancelled() and (exc := future.exception()) is not None:
            logger.warning("WAL checkpoint failed (retried later): %s", exc)

    # -- keys --------------------------------------------------------------------------------------

    async def find_api_key(self, key: str) -> ApiKeyRecord | None:
        """`keys.find_for_authentication`: the record of a valid, unrevoked key, else None."""
        key_id = keys.parse_api_key(key)
        if key_id is None:
            return None

        def job(conn: sqlite3.Connection) -> tuple[Any, ...] | None:
            row: tuple[Any, ...] | None = conn.execute(_FIND_KEY, (key_id,)).fetchone()
            return row

        row = await self._read(job)
        if row is None:
            keys.verify(key, None, revoked=False)
            return None
        *fields, scopes, expires_at, key_hash = row
        key_id, org_id, project_id, project_slug, name, created_at, last_used_at, revoked_at = fields
        if not keys.verify(key, key_hash, revoked=revoked_at is not None):
            return None
        return ApiKeyRecord(
            id=key_id,
            org_id=org_id,
            project_id=project_id,
            project_slug=project_slug,
            name=name,
            created_at=decode_time(created_at),  # type: ignore[arg-type]
            last_used_at=decode_time(last_used_at),
            revoked_at=None,
            scopes=scopes,
            expires_at=decode_time(expires_at),
        )

    # -- flows -----------------------------------------------------------------------------------

    async def get_flow_head(self, org: str, project: str, slug: str) -> FlowHead | None:
        def job(conn: sqlite3.Connection) -> FlowHead | None:
            row = conn.execute(_FLOW_HEAD, (org, project, slug)).fetchone()
            return None if row is None else FlowHead(*row)

        return await self._read(job)

    async def get_flow_document(self, flow_id: str, version: int) -> tuple[dict[str, Any], int] | None:
        def job(conn: sqlite3.Connection) -> tuple[dict[str, Any], int] | None:
            if version == 0:
                row = conn.execute(
                    "SELECT draft, draft_revision FROM flows WHERE id = ?", (flow_id,)
                ).fetchone()
                return None if row is None else (decode_json(row[0]), row[1])
            row = conn.execute(
                "SELECT document FROM flow_versions WHERE flow_id = ? AND version = ?", (flow_id, version)
            ).fetchone()
            return None if row is None else (decode_json(row[0]), 0)

        return await self._read(job)

    # -- runs ----------------------------------------------------------------------------------------

    async def get_run(self, run_id: str) -> RunRecord | None:
        def job(conn: sqlite3.Connection) -> RunRecord | None:
            row = conn.execute(f"SELECT {RUN_SELECT} FROM runs WHERE id = ?", (run_id,)).fetchone()
            return None if row is None else run_from_row(row)

        return await self._read(job)

    async def run_heads(self, run_ids: Sequence[str]) -> dict[str, RunHead]:
        sql = f"SELECT id, status, last_seq FROM runs WHERE id IN ({', '.join('?' * len(run_ids))})"

        def job(conn: sqlite3.Connection) -> dict[str, RunHead]:
            return {row[0]: RunHead(row[1], row[2]) for row in conn.execute(sql, tuple(run_ids))}

        return await self._read(job)

    async def create_run(
        self,
        new: NewRun,
        now: datetime,
        lease: Lease | None = None,
        idempotency_ttl: timedelta | None = None,
        queue_caps: QueueCaps | None = None,
    ) -> RunRecord:
        validate.optional_token(new.session_id, "session id")
        validate.optional_token(new.idempotency_key, "idempotency key")
        conflict = " ON CONFLICT (org_id, idempotency_key) DO NOTHING" if new.idempotency_key else ""
        row = queued_run_values(new, now.astimezone(UTC), lease)
        params = [encode_run_value(name, row[name]) for name in RUN_COLUMNS]
        # The run as inserted, built here rather than read back: decoding the document and the
        # input again would be most of the call's cost.
        created = RunRecord(**row, created=True)
        labels = [
            (created.id, key, value, created.org_id, params[RUN_COLUMNS.index("created_at")])
            for key, value in created.metadata.items()
        ]

        def job(conn: sqlite3.Connection) -> RunRecord:
            owner = conn.execute(
                "SELECT org_id, project_id FROM flows WHERE id = ?", (new.flow_id,)
            ).fetchone()
            if owner is None or tuple(owner) != (new.org_id, new.project_id):
                raise FlowNotFound(
                    f"no flow with id {new.flow_id!r} in project {new.project_id!r} of {new.org_id!r}"
                )
            check_queue_sqlite(conn, new, queue_caps)  # counted in the insert's transaction
            if conn.execute(_INSERT_RUN + conflict, params).rowcount == 1:
                if labels:
                    conn.executemany(_INSERT_METADATA, labels)
                return created
            same_key = (new.org_id, new.idempotency_key)
            existing = run_from_row(
                conn.execute(f"SELECT {RUN_SELECT} FROM runs {_SAME_KEY}", same_key).fetchone()
            )
            if idempotency.forgotten(existing, now, idempotency_ttl):
                # Past its TTL: the old run gives the key up and ours takes it (`idempotency`).
                conn.execute(f"UPDATE runs SET idempotency_key = NULL {_SAME_KEY}", same_key)
                conn.execute(_INSERT_RUN, params)
                if labels:
                    conn.executemany(_INSERT_METADATA, labels)
                return created
            return idempotency.repeat_of(existing, new)

        return await self._write(job)

    async def claim_next_run(
        self, worker_id: str, lease_seconds: float, now: datetime, caps: queue.OrgCaps | None = None
    ) -> RunRecord | None:
        validate.token(worker_id, "worker id")
        if lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be positive, got {lease_seconds}")
        at = encode_time(now)
        expires = encode_time(now + timedelta(seconds=lease_seconds))
        sql = _CLAIM
        params: tuple[Any, ...] = (worker_id, expires, expires, at, at, at, at)
        if caps is not None and caps.active:
            sql, cap_params = _capped_claim(caps, worker_id, at)
            params = (worker_id, expires, expires, at, at, at, *cap_params, at)

        def job(conn: sqlite3.Connection) -> RunRecord | None:
            rows = conn.execute(sql, params).fetchall()
            return run_from_row(rows[0]) if rows else None

        return await self._write(job)

    async def record(
        self,
        run_id: str,
        attempt: int,
        events: Sequence[EventRow],
        update: RunUpdate | None,
        now: datetime,
        charge: credits.StepCharge | None = None,
    ) -> int | None:
        """`queue.record`: the worker's write, fenced by `attempt`; `LeaseLost`,
        `EventSequenceError` or `RunNotFound` and nothing written otherwise. With `charge`, the
        step is charged in the same transaction once the fenced update took
        (`credits.charge_step`): the org's balance afterwards (None: unlimited, or nothing spent)."""
        recorded = self._record_job(run_id, attempt, events, update, now)
        if charge is None:
            await self._write(recorded)
            return None
        at = encode_time(now)

        def job(conn: sqlite3.Connection) -> int | None:
            recorded(conn)
            return credits.charge_step(_sqlite_execute(conn), run_id, charge, at)

        return await self._write(job)

    def _record_job(
        self,
        run_id: str,
        attempt: int,
        events: Sequence[EventRow],
        update: RunUpdate | None,
        now: datetime,
    ) -> Callable[[sqlite3.Connection], None]:
        """The fenced write of `record`, before any charge."""
        event_log.check_batch(events)
        values = update_values(update, now, leased=True)
        if events:
            values["last_seq"] = events[-1].seq
        columns = tuple(values)
        params: list[Any] = [encode_run_value(name, values[name]) for name in columns]
        params += [run_id, attempt]
        if events:
            params.append(events[0].seq - 1)
        rows = _event_rows(run_id, events, now)
        update_sql = _fenced_update(columns, bool(events))

        def job(conn: sqlite3.Connection) -> None:
            if conn.execute(update_sql, params).rowcount == 1:
                if rows:
                    conn.executemany(_INSERT_EVENT, rows)
                return
            current = conn.execute(
                "SELECT attempt, status, lease_owner, last_seq FROM runs WHERE id = ?", (run_id,)
            ).fetchone()
            if current is None:
                raise RunNotFound(f"no run with id {run_id!r}")
            raise queue.refusal(run_id, attempt, events, *current)

        return job

    async def credit_balance(self, org: str) -> int | None:
        """The org's balance in micro-dollars; None when it has none (unlimited)."""

        def job(conn: sqlite3.Connection) -> int | None:
            row = conn.execute(credits.BALANCE_OF_ORG, {"org": org}).fetchone()
            return None if row is None else int(row[0])

        return await self._read(job)

    async def thread_of(self, run_id: str) -> str | None:
        """The run's thread id (None: not a thread's run, or no such run)."""

        def job(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT thread_id FROM runs WHERE id = ?", (run_id,)).fetchone()
            return None if row is None else row[0]

        return await self._read(job)

    # -- the event log ---------------------------------------------------------------------------

    async def has_events(self, run_id: str) -> bool:
        def job(conn: sqlite3.Connection) -> bool:
            return (
                conn.execute("SELECT 1 FROM run_events WHERE run_id = ? LIMIT 1", (run_id,)).fetchone()
                is not None
            )

        return await self._read(job)

    async def read_events(
        self,
        run_id: str,
        after_seq: int,
        limit: int | None,
        *,
        types: Collection[str] | None,
        newest_first: bool,
        timestamps: bool = True,
    ) -> list[EventRow]:
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        columns = "seq, type, data, created_at" if timestamps else "seq, type, data"
        sql = f"SELECT {columns} FROM run_events WHERE run_id = ? AND seq > ?"
        params: list[Any] = [run_id, after_seq]
        if types is not None:
            ordered = sorted(types)
            sql += f" AND type IN ({', '.join('?' * len(ordered))})" if ordered else " AND 0"
            params += ordered
        sql += " ORDER BY seq DESC" if newest_first else " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)

        def job(conn: sqlite3.Connection) -> list[EventRow]:
            if not timestamps:
                return [EventRow(seq, type_, data) for seq, type_, data in conn.execute(sql, params)]
            return [
                EventRow(seq=seq, type=type_, data=data, created_at=decode_time(created_at))
                for seq, type_, data, created_at in conn.execute(sql, params)
            ]

        # A follower reads a page at a time; an unbounded read (a trace, a replay) goes to a thread.
        return await self._read(job, inline=limit is not None and limit <= INLINE_READ_LIMIT)


_SAME_KEY = "WHERE org_id = ? AND idempotency_key = ?"
"""The run holding an idempotency key in an org (at most one: the unique constraint)."""

_FIND_KEY = (
    "SELECT api_keys.id, api_keys.org_id, api_keys.project_id, projects.slug, api_keys.name, "
    "api_keys.created_at, api_keys.last_used_at, api_keys.revoked_at, api_keys.scopes, "
    "api_keys.expires_at, api_keys.key_hash "
    "FROM api_keys LEFT JOIN projects ON projects.id = api_keys.project_id WHERE api_keys.id = ?"
)

_FLOW_HEAD = (
    "SELECT flows.id, flows.org_id, flows.project_id, flows.draft_revision, "
    "(SELECT max(version) FROM flow_versions WHERE flow_versions.flow_id = flows.id) "
    "FROM flows JOIN projects ON projects.id = flows.project_id "
    "WHERE projects.org_id = ? AND projects.slug = ? AND flows.slug = ?"
)

_INSERT_EVENT = "INSERT INTO run_events (run_id, seq, type, data, created_at) VALUES (?, ?, ?, ?, ?)"

_INSERT_METADATA = "INSERT INTO run_metadata (run_id, key, value, org_id, created_at) VALUES (?, ?, ?, ?, ?)"

_INSERT_RUN = f"INSERT INTO runs ({RUN_SELECT}) VALUES ({', '.join('?' * len(RUN_COLUMNS))})"

# The oldest claimable run (queued, or running with an expired lease), as `queue.claim_next_run`;
# the single writer serialises claims, so no row lock is needed.
_CLAIM = (
    "UPDATE runs SET status = 'running', attempt = attempt + 1, lease_owner = ?, "
    "lease_expires_at = ?, available_at = ?, started_at = coalesce(started_at, ?), updated_at = ? "
    f"WHERE id = (SELECT id FROM runs WHERE {CLAIMABLE_PREDICATE} AND available_at <= ? "
    "ORDER BY available_at, created_at, id LIMIT 1) "
    f"AND {CLAIMABLE_PREDICATE} AND available_at <= ? "
    f"RETURNING {RUN_SELECT}"
)


def _capped_claim(caps: queue.OrgCaps, worker_id: str, at: str) -> tuple[str, list[Any]]:
    """`_CLAIM` skipping the orgs (`queue.capped_orgs`) and the API keys (`queue.capped_keys`)
    that hold their cap of live leases, and the parameters of those tests (they follow the time
    of the claim's own `available_at` test, in the order the tests appear)."""
    tests: list[str] = []
    params: list[Any] = []
    if caps.orgs_active:
        overrides = sorted(caps.overrides.items())
        default_count = "sum(lease_owner = ?)" if caps.default_per_worker else "count(*)"
        reached = f"{default_count} >= ?"
        if overrides:
            reached = "CASE org_id " + "WHEN ? THEN count(*) >= ? " * len(overrides) + f"ELSE {reached} END"
        tests.append(
            f"AND org_id NOT IN (SELECT org_id FROM runs WHERE {queue.RUNNING} AND available_at > ? "
            f"GROUP BY org_id HAVING {reached})"
        )
        params.append(at)
        for org, cap in overrides:
            params += [org, cap]
        if caps.default_per_worker:
            params.append(worker_id)
        params.append(caps.default)
    if caps.keys_active:
        key_overrides = sorted(caps.key_overrides.items())
        key_reached = "0" if caps.key_default is None else "count(*) >= ?"
        if key_overrides:
            key_reached = "CASE api_key_id " + "WHEN ? THEN count(*) >= ? " * len(key_overrides)
            key_reached += "ELSE " + ("0" if caps.key_default is None else "count(*) >= ?") + " END"
        tests.append(
            "AND (api_key_id IS NULL OR api_key_id NOT IN (SELECT api_key_id FROM runs "
            f"WHERE {queue.RUNNING} AND available_at > ? AND api_key_id IS NOT NULL "
            f"GROUP BY api_key_id HAVING {key_reached}))"
        )
        params.append(at)
        for key, cap in key_overrides:
            params += [key, cap]
        if caps.key_default is not None:
            params.append(caps.key_default)
    sql = _CLAIM.replace("ORDER BY available_at", " ".join(tests) + " ORDER BY available_at")
    return sql, params


def _sqlite_execute(conn: sqlite3.Connection) -> credits.Execute:
    def execute(sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in conn.execute(sql, dict(params)).fetchall()]

    return execute


def _run_batch(conn: sqlite3.Connection, jobs: list[Job]) -> list[tuple[bool, Any]]:
    """Run `jobs` in one transaction; each job's outcome is `(True, value)` or `(False, error)`.

    Optimistic: jobs run back to back, and only if one fails is the transaction rolled back and
    run again with a savepoint around each job, so the failing one is undone alone. Jobs are pure
    functions of their parameters, so running one twice is safe. Failures (a lost lease) are rare;
    savepoints on every job would cost two statements each."""
    try:
        return _run_jobs(conn, jobs, savepoints=False)
    except _JobFailed:
        return _run_jobs(conn, jobs, savepoints=True)


class _JobFailed(Exception):
    pass


def _run_jobs(conn: sqlite3.Connection, jobs: list[Job], *, savepoints: bool) -> list[tuple[bool, Any]]:
    outcomes: list[tuple[bool, Any]] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        for job in jobs:
            if not savepoints:
                try:
                    outcomes.append((True, job(conn)))
                except Exception as exc:
                    raise _JobFailed from exc
                continue
            conn.execute("SAVEPOINT job")
            try:
                value = job(conn)
            except Exception as exc:
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                outcomes.append((False, _as_store_error(exc)))
            else:
                conn.execute("RELEASE job")
                outcomes.append((True, value))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return outcomes


def _event_rows(run_id: str, events: Sequence[EventRow], now: datetime) -> list[tuple[Any, ...]]:
    # Events emitted in one burst share their timestamp object (`RunLogWriter`): format it once.
    default = encode_time(now)
    last: datetime | None = None
    stamp = default
    rows = []
    for row in events:
        at = row.created_at
        if at is None:
            rows.append((run_id, row.seq, row.type, row.data, default))
            continue
        if at is not last:
            last, stamp = at, encode_time(at)
        rows.append((run_id, row.seq, row.type, row.data, stamp))
    return rows


@functools.lru_cache(maxsize=64)
def _fenced_update(columns: tuple[str, ...], with_events: bool) -> str:
    sets = ", ".join(f'"{name}" = ?' for name in columns)
    where = "id = ? AND attempt = ? AND status = 'running' AND lease_owner IS NOT NULL"
    if with_events:
        where += " AND last_seq = ?"
    return f"UPDATE runs SET {sets} WHERE {where}"


def _as_store_error(exc: Exception) -> Exception:
    """A driver error as the SQLAlchemy path raises it (`sqlalchemy.exc.IntegrityError` and so on),
    so callers see one error type on either path; parameters (prompts, outputs) are kept out of
    its message, as the engines' `hide_parameters` does."""
    if not isinstance(exc, sqlite3.Error):
        return exc
    return sa.exc.DBAPIError.instance(
        "(sqlite hot path)", None, exc, sqlite3.Error, hide_parameters=True, dialect=None
    )
