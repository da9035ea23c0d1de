from __future__ import annotations

import asyncio
from datetime import datetime

import pytest
import sqlalchemy as sa

from noukai_server.store import InvalidIdentifier, Store
from noukai_server.store.schema import orgs
from tests.store.conftest import FakeClock

pytestmark = pytest.mark.anyio


async def _org_rows(store: Store) -> list[tuple[str, datetime]]:
    async with store._db.read() as conn:
        rows = (await conn.execute(sa.select(orgs.c.id, orgs.c.created_at).order_by(orgs.c.id))).all()
    return [(row.id, row.created_at) for row in rows]


async def test_ensure_org_is_idempotent(store: Store, clock: FakeClock) -> None:
    await store.ensure_org("acme")
    [(org_id, created_at)] = await _org_rows(store)
    assert org_id == "acme"
    clock.advance(60)
    await store.ensure_org("acme")  # neither a second row nor an error, and the first row unchanged
    assert await _org_rows(store) == [("acme", created_at)]
    await store.ensure_org("globex")
    assert [org for org, _ in await _org_rows(store)] == ["acme", "globex"]


async def test_ensure_project_creates_once(store: Store) -> None:
    first = await store.ensure_project("acme", "web")
    again = await store.ensure_project("acme", "web")
    assert first == again
    assert (first.org_id, first.slug) == ("acme", "web")
    assert await store.get_project("acme", "web") == first


async def test_same_project_slug_in_two_orgs_is_two_projects(store: Store) -> None:
    a = await store.ensure_project("acme", "web")
    b = await store.ensure_project("globex", "web")
    assert a.id != b.id


async def test_get_project_unknown(store: Store) -> None:
    assert await store.get_project("acme", "nope") is None
    await store.ensure_project("acme", "web")
    assert await store.get_project("other", "web") is None


async def test_concurrent_ensure_project_agrees_on_one_row(store: Store) -> None:
    projects = await asyncio.gather(*(store.ensure_project("acme", "web") for _ in range(8)))
    assert len({p.id for p in projects}) == 1


@pytest.mark.parametrize(
    ("org", "project"), [("", "web"), ("acme", ""), ("a" * 65, "web"), ("acme", "p" * 65)]
)
async def test_invalid_slugs_are_refused(store: Store, org: str, project: str) -> None:
    with pytest.raises(InvalidIdentifier):
        await store.ensure_project(org, project)


async def test_longest_slug_is_accepted(store: Store) -> None:
    record = await store.ensure_project("a" * 64, "p" * 64)
    assert record.slug == "p" * 64
