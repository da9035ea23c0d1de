"""This machine's PostgreSQL and Redis, as the scaled-out benchmarks use them.

Every scaled deployment gets a database of its own, created empty and dropped (WITH (FORCE)) when it
stops, so runs never see each other's rows. Redis is shared and left as it is: the Redis bus uses
pub/sub only, which stores no keys, so there is nothing to flush (and a FLUSHALL would wipe what
others keep there). Its channel prefix is fixed at `noukai` in this version (no setting reaches
`RedisBus(prefix=...)`), so another deployment on the same Redis hears our work announcements and
we hear its: a spurious wake-up of an idle worker at most, since run channels are named by run id.

The URLs come from NOUKAI_BENCH_POSTGRES_URL (an admin database to create others from) and
NOUKAI_BENCH_REDIS_URL.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

POSTGRES_ADMIN_URL = os.environ.get(
    "NOUKAI_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("NOUKAI_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


class ServiceUnavailable(RuntimeError):
    """PostgreSQL or Redis cannot be reached: the scaled benchmarks are skipped, saying which."""


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), 1.0):
            return True
    except OSError:
        return False


def require_services() -> None:
    """Raise `ServiceUnavailable` naming what is missing."""
    missing = [
        f"{name} ({url.rsplit('@', 1)[-1]})"
        for name, url, port in (("PostgreSQL", POSTGRES_ADMIN_URL, 5432), ("Redis", REDIS_URL, 6379))
        if not _reachable(url, port)
    ]
    if missing:
        raise ServiceUnavailable(f"not reachable: {', '.join(missing)}")


def _libpq(url: str) -> str:
    """A SQLAlchemy URL as psycopg takes it."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def create_database(prefix: str = "noukai_bench") -> str:
    """A new empty database; its SQLAlchemy URL."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_libpq(POSTGRES_ADMIN_URL), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"


def drop_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(_libpq(POSTGRES_ADMIN_URL), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_server_pid() -> int | None:
    """The PostgreSQL server's main process (postmaster) when it runs on this machine, else None.

    Its CPU, children included, is the whole server's: the backends alive now, plus, in its cutime,
    every backend that has exited (the postmaster reaps them). Counting the backends of our
    database alone would miss most of it: the store's pool opens overflow connections beyond its
    five and closes them after use, so backends come and go between two readings."""
    import psycopg

    with psycopg.connect(_libpq(POSTGRES_ADMIN_URL)) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
    try:
        stat = Path(f"/proc/{row[0] if row else 0}/stat").read_text()
    except OSError:
        return None
    parent = int(stat[stat.rindex(")") + 2 :].split()[1])
    try:
        comm = Path(f"/proc/{parent}/comm").read_text()
    except OSError:
        return None
    return parent if "postgres" in comm else None


def postgres_usage(url: str) -> dict[str, int]:
    """How many connections (sessions) the database of `url` has had since it was created, and how
    many runs it holds: sessions per run far above zero mean connections opened and closed per use
    (the pool's overflow) rather than reused, each a PostgreSQL process forked and authenticated."""
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(_libpq(POSTGRES_ADMIN_URL)) as conn:
        row = conn.execute("SELECT sessions FROM pg_stat_database WHERE datname = %s", (name,)).fetchone()
    with psycopg.connect(_libpq(url)) as conn:
        runs = conn.execute("SELECT count(*) FROM runs").fetchone()
    return {"sessions": int(row[0]) if row else -1, "runs": int(runs[0]) if runs else 0}


def redis_pid() -> int | None:
    """redis-server's pid when it runs on this machine (in our pid namespace), else None."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        pid = int(client.info("server")["process_id"])
    finally:
        client.close()
    try:
        comm = Path(f"/proc/{pid}/comm").read_text()
    except OSError:
        return None
    return pid if "redis" in comm else None


def versions() -> dict[str, str | None]:
    """PostgreSQL's and Redis's server versions (for the report)."""
    import psycopg
    import redis

    found: dict[str, str | None] = {"postgresql": None, "redis": None}
    try:
        with psycopg.connect(_libpq(POSTGRES_ADMIN_URL)) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            found["postgresql"] = str(row[0]) if row else None
        client = redis.Redis.from_url(REDIS_URL)
        try:
            found["redis"] = str(client.info("server")["redis_version"])
        finally:
            client.close()
    except Exception:  # a report fact, never a reason to fail the benchmark
        pass
    return found


@dataclass(frozen=True, slots=True)
class RunTimes:
    """When a run was created (by the API process), started (claimed by a worker) and each of its
    stored events emitted (`created_at`, taken by the engine's log writer at most once per
    millisecond, see `RunLogWriter._now`): all on the machine's one wall clock."""

    created: datetime
    started: datetime | None
    events: dict[int, datetime]


def _utc(value: object) -> datetime:
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    # SQLite holds naive UTC (store.schema.UTCDateTime); PostgreSQL gives aware datetimes.
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


RUN_QUERY = "SELECT created_at, started_at FROM runs WHERE id = {0}"
EVENTS_QUERY = "SELECT seq, created_at FROM run_events WHERE run_id = {0}"


def postgres_run_times(url: str, run_id: str) -> RunTimes:
    import psycopg

    with psycopg.connect(_libpq(url)) as conn:
        run = conn.execute(RUN_QUERY.format("%s"), (run_id,)).fetchone()
        events = conn.execute(EVENTS_QUERY.format("%s"), (run_id,)).fetchall()
    return _run_times(run_id, run, events)


def sqlite_run_times(path: Path, run_id: str) -> RunTimes:
    """The same from an embedded store's SQLite file, opened read-only beside the running server."""
    import sqlite3

    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0)
    try:
        run = conn.execute(RUN_QUERY.format("?"), (run_id,)).fetchone()
        events = conn.execute(EVENTS_QUERY.format("?"), (run_id,)).fetchall()
    finally:
        conn.close()
    return _run_times(run_id, run, events)


def _run_times(run_id: str, run: Any, events: list[Any]) -> RunTimes:
    if run is None:
        raise LookupError(f"run {run_id} is not in the store")
    return RunTimes(
        created=_utc(run[0]),
        started=_utc(run[1]) if run[1] is not None else None,
        events={int(seq): _utc(created) for seq, created in events},
    )
