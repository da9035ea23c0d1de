"""Engines and transactions: the only place that knows how SQLite and PostgreSQL differ in use.

SQLite (embedded default): every write goes through ONE writer connection, serialised by an
`asyncio.Lock` and opened with `BEGIN IMMEDIATE`, so a write transaction takes SQLite's write lock
up front instead of failing half-way with "database is locked" when it upgrades from a read. Reads
use a separate small pool; WAL lets them run beside the writer. Other processes on the same file
(a `noukai worker`) wait on `busy_timeout`.

PostgreSQL (scaled out): one ordinary pool for both; row locks (`FOR UPDATE [SKIP LOCKED]`) do
the serialising where it matters.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from .errors import StoreBusy, UnsupportedDatabase

Dialect = Literal["sqlite", "postgresql"]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PoolSize:
    """The PostgreSQL connection pool of one process: `size` kept open, up to `overflow` more
    under load, and how long a request waits for one before it is answered 503 (`StoreBusy`).
    SQLite's pools are fixed (one writer, `SQLITE_READ_POOL_SIZE` readers). Every process holds
    up to size + overflow connections: keep the sum over all processes under the server's
    `max_connections` (docs/deploy.md)."""

    size: int = 5
    overflow: int = 10
    timeout_seconds: float = 10.0


SQLITE_BUSY_TIMEOUT_MS = 10_000
SQLITE_READ_POOL_SIZE = 4

_DRIVERS: dict[str, tuple[Dialect, str]] = {
    "sqlite": ("sqlite", "sqlite+aiosqlite"),
    "sqlite+aiosqlite": ("sqlite", "sqlite+aiosqlite"),
    "postgresql": ("postgresql", "postgresql+psycopg"),
    "postgresql+psycopg": ("postgresql", "postgresql+psycopg"),
    "postgresql+psycopg_async": ("postgresql", "postgresql+psycopg"),
}


def json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def json_loads(value: str | bytes | int | float) -> Any:
    """SQLite gives a `JSON` column NUMERIC affinity, so a stored scalar like `7` or `1.5` comes
    back as a number rather than as JSON text; it already is the decoded value."""
    if isinstance(value, int | float):
        return value
    return orjson.loads(value)


def normalise_url(url: str) -> tuple[Dialect, sa.URL]:
    """Parse a database URL and pin the async driver (`sqlite://` -> `sqlite+aiosqlite://`)."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise UnsupportedDatabase(f"not a database URL: {url!r}") from exc
    known = _DRIVERS.get(parsed.drivername)
    if known is None:
        raise UnsupportedDatabase(
            f"unsupported database {parsed.drivername!r}: use sqlite+aiosqlite:///path/to/file.db "
            "or postgresql+psycopg://user@host:port/db"
        )
    dialect, driver = known
    parsed = parsed.set(drivername=driver)
    if dialect == "sqlite" and (
        parsed.database in (None, "", ":memory:") or parsed.query.get("mode") == "memory"
    ):
        raise UnsupportedDatabase(
            "in-memory SQLite is not supported: the store opens several connections and each would "
            "see its own empty database; use a file (a temporary one in tests)"
        )
    return dialect, parsed


def _create_engine(url: sa.URL, **kwargs: Any) -> AsyncEngine:
    return create_async_engine(
        url,
        json_serializer=json_dumps,
        json_deserializer=json_loads,
        # Parameters carry prompts, model outputs and key hashes: keep them out of error messages
        # (and therefore out of logs).
        hide_parameters=True,
        **kwargs,
    )


def _sqlite_engine(url: sa.URL, *, writer: bool) -> AsyncEngine:
    engine = _create_engine(
        url,
        pool_size=1 if writer else SQLITE_READ_POOL_SIZE,
        max_overflow=0 if writer else SQLITE_READ_POOL_SIZE,
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 driver (its legacy mode never BEGINs
        # before a SELECT); the "begin" hook below emits our own BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            if writer:
                _switch_to_wal(cursor)
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            if not writer:
                cursor.execute("PRAGMA query_only=ON")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")

    return engine


def _switch_to_wal(cursor: Any) -> None:
    """`PRAGMA journal_mode=WAL`, retried while another connection holds the file: switching a new
    file to WAL needs an exclusive lock, and SQLite answers "database is locked" at once, without
    waiting out the busy timeout, when another process opening the same file at the same moment
    (concurrent migrations at start-up) holds it. Once one of them has switched, the mode is
    stored in the file and the others' switch is a no-op."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)  # on the driver's own thread, never the event loop's


class Database:
    """Transactions: `read()` yields a connection in a read transaction; `write(work)` runs
    `work(conn)` in a write transaction. Both commit on success and roll back on error."""

    def __init__(
        self, dialect: Dialect, writer: AsyncEngine, reader: AsyncEngine, sqlite_path: str | None = None
    ) -> None:
        self.dialect: Dialect = dialect
        self.sqlite_path = sqlite_path
        """The database file, on SQLite (for the raw hot path, `sqlite_hot`)."""
        self._writer = writer
        self._reader = reader
        # One asyncio.Lock per store: SQLite has a single writer connection and we queue for it
        # here rather than inside SQLite's busy handler.
        self._write_lock = asyncio.Lock() if dialect == "sqlite" else None

    @classmethod
    async def open(cls, url: str, pool: PoolSize | None = None) -> Database:
        dialect, parsed = normalise_url(url)
        if dialect == "postgresql":
            pool = pool or PoolSize()
            engine = _create_engine(
                parsed,
                pool_pre_ping=True,
                pool_size=pool.size,
                max_overflow=pool.overflow,
                pool_timeout=pool.timeout_seconds,
            )
            db = cls(dialect, engine, engine)
        else:
            db = cls(
                dialect,
                _sqlite_engine(parsed, writer=True),
                _sqlite_engine(parsed, writer=False),
                sqlite_path=parsed.database,
            )
        try:
            # Connect once now: a bad URL fails here rather than on the first request, and on
            # SQLite the writer switches the file to WAL before any reader opens it.
            async with db._writer.connect():
                pass
        except BaseException:
            await db.close()
            raise
        return db

    @property
    def write_lock(self) -> asyncio.Lock | None:
        """SQLite: the lock every writer of this file in this process takes (None on PostgreSQL)."""
        return self._write_lock

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self._reader.begin() as conn:
                yield conn
        except sa.exc.TimeoutError as exc:
            raise _busy(exc) from None

    async def write(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run `work` in a write transaction (committed if it returns, rolled back if it raises).

        Once called, the write runs to its end (waiting for the SQLite writer if need be) even if
        the caller is cancelled; the cancellation is delivered right after. Cutting a transaction
        off mid-statement would make SQLAlchemy throw the connection away while SQLite may still
        hold the write lock on it (the next writer then stalls for `busy_timeout`), and on
        PostgreSQL would hold row locks until the server notices. Every write is short, and
        fenced, so finishing it is always safe.
        """
        return await finish_even_if_cancelled(asyncio.ensure_future(self._write(work)))

    async def _write(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        try:
            if self._write_lock is None:
                async with self._writer.begin() as conn:
                    return await work(conn)
            async with self._write_lock, self._writer.begin() as conn:
                return await work(conn)
        except sa.exc.TimeoutError as exc:
            raise _busy(exc) from None

    async def close(self) -> None:
        await self._writer.dispose()
        if self._reader is not self._writer:
            await self._reader.dispose()


def _busy(exc: sa.exc.TimeoutError) -> StoreBusy:
    return StoreBusy(f"no database connection came free in time ({exc.args[0] if exc.args else exc})")


async def finish_even_if_cancelled(write: asyncio.Future[T]) -> T:
    """Await a store write that must run to its end: if the caller is cancelled meanwhile, wait
    for the write to finish, then deliver the cancellation (see `Database.write` for why)."""
    try:
        return await asyncio.shield(write)
    except asyncio.CancelledError:
        write.add_done_callback(_retrieve_exception)
        if not write.done():
            await asyncio.wait([write])
        raise


def _retrieve_exception(write: asyncio.Future[Any]) -> None:
    # The cancelled caller no longer wants the outcome; mark any error as seen (it was raised
    # inside a transaction that rolled back) so asyncio does not log it as never retrieved.
    if not write.cancelled():
        write.exception()


def dialect_insert(conn: AsyncConnection, table: sa.Table) -> pg_dialect.Insert | sqlite_dialect.Insert:
    """An INSERT with the dialect's `ON CONFLICT` support (both spell it the same way)."""
    if conn.dialect.name == "postgresql":
        return pg_dialect.insert(table)
    return sqlite_dialect.insert(table)
