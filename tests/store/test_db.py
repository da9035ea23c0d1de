from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from noukai_server.store import Store, UnsupportedDatabase
from noukai_server.store.db import Database, normalise_url
from noukai_server.store.schema import UTCDateTime
from tests._services import POSTGRES_ADMIN_URL, require_postgres

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("url", "dialect", "driver"),
    [
        ("sqlite:///x.db", "sqlite", "sqlite+aiosqlite"),
        ("sqlite+aiosqlite:///x.db", "sqlite", "sqlite+aiosqlite"),
        ("postgresql://u@h/db", "postgresql", "postgresql+psycopg"),
        ("postgresql+psycopg://u@h/db", "postgresql", "postgresql+psycopg"),
    ],
)
def test_normalise_url_pins_the_async_driver(url: str, dialect: str, driver: str) -> None:
    got_dialect, parsed = normalise_url(url)
    assert (got_dialect, parsed.drivername) == (dialect, driver)


@pytest.mark.parametrize(
    "url",
    ["mysql://u@h/db", "postgresql+asyncpg://u@h/db", "not a url", "sqlite://", "sqlite:///:memory:"],
)
def test_unsupported_urls_are_refused(url: str) -> None:
    with pytest.raises(UnsupportedDatabase):
        normalise_url(url)


async def test_connect_refuses_unsupported_url() -> None:
    with pytest.raises(UnsupportedDatabase):
        await Store.connect("sqlite+aiosqlite:///:memory:")


@pytest.mark.parametrize("dialect", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def test_connect_to_unreachable_database_fails_at_connect(tmp_path: Path, dialect: str) -> None:
    if dialect == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'missing-dir' / 'x.db'}"
    else:
        require_postgres()
        url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/noukai_no_such_database"
    with pytest.raises(sa.exc.OperationalError):
        await Store.connect(url)
    # aiosqlite stops the failed connection's thread in the background; let it finish before the
    # test's event loop closes.
    await asyncio.sleep(0.1)


async def test_store_reports_its_dialect(store: Store, store_url: str) -> None:
    assert store.dialect == ("sqlite" if store_url.startswith("sqlite") else "postgresql")


async def test_sqlite_connections_are_configured(tmp_path: Path) -> None:
    db = await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")
    try:

        async def pragmas(conn: AsyncConnection) -> dict[str, object]:
            names = ("journal_mode", "synchronous", "busy_timeout", "foreign_keys", "query_only")
            return {name: (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar_one() for name in names}

        async with db.read() as conn:
            on_reader = await pragmas(conn)
        on_writer = await db.write(pragmas)
        # synchronous=NORMAL is 1
        expected = {"journal_mode": "wal", "synchronous": 1, "busy_timeout": 10000, "foreign_keys": 1}
        assert on_writer == {**expected, "query_only": 0}
        assert on_reader == {**expected, "query_only": 1}
    finally:
        await db.close()


async def test_sqlite_reads_cannot_write(tmp_path: Path) -> None:
    db = await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'q.db'}")
    try:
        with pytest.raises(sa.exc.OperationalError, match="readonly"):
            async with db.read() as conn:
                await conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    finally:
        await db.close()


async def test_sqlite_write_transaction_takes_the_write_lock_up_front(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "i.db"
    db = await Database.open(f"sqlite+aiosqlite:///{path}")
    probe = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:

        async def probe_while_writing(conn: AsyncConnection) -> None:
            # Nothing written yet, but BEGIN IMMEDIATE already holds the write lock.
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                probe.execute("BEGIN IMMEDIATE")

        await db.write(probe_while_writing)
        async with db.read():
            probe.execute("BEGIN IMMEDIATE")  # a reader does not block writers (WAL)
            probe.execute("ROLLBACK")
    finally:
        probe.close()
        await db.close()


async def test_write_rolls_back_on_error(store: Store) -> None:
    from noukai_server.store.schema import orgs

    async def failing_write(conn: AsyncConnection) -> None:
        await conn.execute(orgs.insert().values(id="x", created_at=datetime.now(UTC)))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await store._db.write(failing_write)
    async with store._db.read() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(orgs))).scalar_one() == 0


def test_utc_datetime_refuses_naive_values() -> None:
    column_type = UTCDateTime()
    with pytest.raises(ValueError, match="naive"):
        column_type.process_bind_param(datetime(2026, 1, 1), sa.create_engine("sqlite://").dialect)


async def test_timestamps_come_back_aware_utc(store: Store) -> None:
    await store.ensure_org("acme")
    project = await store.ensure_project("acme", "web")
    assert project.created_at.tzinfo is UTC
    # A non-UTC aware datetime is stored as the same instant.
    from noukai_server.store.schema import orgs

    moment = datetime(2026, 3, 1, 12, 0, tzinfo=timezone(timedelta(hours=5)))

    async def insert_and_read(conn: AsyncConnection) -> datetime:
        await conn.execute(orgs.insert().values(id="tz", created_at=moment))
        value: datetime = (
            await conn.execute(sa.select(orgs.c.created_at).where(orgs.c.id == "tz"))
        ).scalar_one()
        return value

    back = await store._db.write(insert_and_read)
    assert back == moment
    assert back.tzinfo is UTC


async def test_a_cancelled_write_finishes_its_transaction_first(store: Store) -> None:
    from noukai_server.store.schema import orgs

    started = asyncio.Event()

    async def slow_write(conn: AsyncConnection) -> None:
        await conn.execute(orgs.insert().values(id="slow", created_at=datetime.now(UTC)))
        started.set()
        await asyncio.sleep(0.05)
        await conn.execute(orgs.insert().values(id="slow2", created_at=datetime.now(UTC)))

    task = asyncio.create_task(store._db.write(slow_write))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with store._db.read() as conn:
        ids = set((await conn.execute(sa.select(orgs.c.id))).scalars())
    assert ids == {"slow", "slow2"}  # committed whole, then the cancellation was delivered
    await store.ensure_org("after")  # and the writer is healthy


async def test_a_cancelled_write_that_fails_rolls_back_quietly(store: Store) -> None:
    from noukai_server.store.schema import orgs

    started = asyncio.Event()

    async def failing_write(conn: AsyncConnection) -> None:
        await conn.execute(orgs.insert().values(id="doomed", created_at=datetime.now(UTC)))
        started.set()
        await asyncio.sleep(0.05)
        raise RuntimeError("boom")

    task = asyncio.create_task(store._db.write(failing_write))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with store._db.read() as conn:
        assert list((await conn.execute(sa.select(orgs.c.id))).scalars()) == []


async def test_writes_queue_for_the_single_sqlite_writer(store: Store) -> None:
    # Many concurrent writes on one store: none fails with "database is locked".
    await asyncio.gather(*(store.ensure_project("acme", f"p{i}") for i in range(25)))
    assert all([await store.get_project("acme", f"p{i}") for i in range(25)])


async def test_opening_a_new_file_while_another_process_writes_to_it(tmp_path: Path) -> None:
    # Concurrent first opens (migrations at start-up): another connection is half-way through a
    # write to the new, not yet WAL, file. Switching to WAL then needs the exclusive lock that its
    # commit needs too, and SQLite answers "locked" at once rather than waiting out the busy
    # timeout (it would deadlock), so the switch is retried until the other write is done.
    import sqlite3
    import threading
    import time

    path = tmp_path / "new.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    other.execute("BEGIN IMMEDIATE")
    other.execute("CREATE TABLE elsewhere (x)")

    def commit_later() -> None:
        time.sleep(0.3)
        other.execute("COMMIT")

    committer = threading.Thread(target=commit_later)
    committer.start()
    try:
        db = await asyncio.wait_for(Database.open(f"sqlite+aiosqlite:///{path}"), 10)
        await db.close()
    finally:
        committer.join()
        other.close()
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
