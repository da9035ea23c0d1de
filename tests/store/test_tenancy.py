from __future__ import annotations

import asyncio

import pytest

from noukai_server.store import InvalidIdentifier, Store

pytestmark = pytest.mark.anyio


async def test_ensure_org_is_idempotent(store: Store) -> None:
    await store.ensure_org("acme")
    await store.ensure_org("acme")


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
