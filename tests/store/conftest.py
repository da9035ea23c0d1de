"""Every store test runs twice: on a SQLite file and on PostgreSQL.

`db_url` is an empty database (a fresh PostgreSQL database per test): for the migration tests.
`store_url` is a migrated database with no rows: on PostgreSQL one fresh database per session,
emptied before each test (creating and migrating a database per test would cost a second each).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from noukai_server.store import FlowRecord, NewRun, RunRecord, Store, upgrade_database
from noukai_server.store.schema import metadata
from tests._services import fresh_postgres_database, require_postgres


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class FakeClock:
    """The real UTC clock plus an offset that tests move forward (lease expiry, throttles)."""

    offset: timedelta = field(default_factory=timedelta)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    else:
        with fresh_postgres_database() as url:
            yield url


@pytest.fixture(scope="session")
def _migrated_postgres() -> Iterator[str]:
    with fresh_postgres_database() as url:
        asyncio.run(upgrade_database(url))
        yield url


def _empty_tables(url: str) -> None:
    import psycopg

    # DELETE, not TRUNCATE: on a handful of rows it is ~15x faster.
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(f"DELETE FROM {table.name}")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        sqlite_url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
        asyncio.run(upgrade_database(sqlite_url))
        return sqlite_url
    require_postgres()
    postgres_url: str = request.getfixturevalue("_migrated_postgres")
    _empty_tables(postgres_url)
    return postgres_url


@pytest.fixture
async def store(store_url: str, clock: FakeClock) -> AsyncIterator[Store]:
    opened = await Store.connect(store_url, migrate=False, clock=clock)
    try:
        yield opened
    finally:
        await opened.close()


async def make_flow(
    store: Store, org: str = "acme", project: str = "web", slug: str = "grader"
) -> FlowRecord:
    return await store.save_draft(org, project, slug, {"slug": slug, "steps": [{"id": "a"}]}, "Grader")


def new_run(flow: FlowRecord, **overrides: Any) -> NewRun:
    fields: dict[str, Any] = {
        "org_id": flow.org_id,
        "project_id": flow.project_id,
        "flow_id": flow.id,
        "flow_version": 0,
        "flow_revision": flow.draft_revision,
        "document": flow.draft,
        "trigger_type": "execute",
        "input": {"message": "hi"},
    }
    fields.update(overrides)
    return NewRun(**fields)


async def make_run(store: Store, flow: FlowRecord | None = None, **overrides: Any) -> RunRecord:
    flow = flow or await make_flow(store)
    return await store.create_run(new_run(flow, **overrides))
