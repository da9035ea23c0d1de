from __future__ import annotations

import asyncio

import pytest

from noukai_server.store import FlowNotFound, InvalidIdentifier, Store

pytestmark = pytest.mark.anyio

DOC = {"slug": "grader", "steps": [{"id": "check", "type": "llm", "prompt": "Check: {{ message }}"}]}


async def test_first_save_creates_flow_org_and_project(store: Store) -> None:
    flow = await store.save_draft("acme", "web", "grader", DOC, "Grader")
    assert (flow.org_id, flow.project_slug, flow.slug, flow.name) == ("acme", "web", "grader", "Grader")
    assert flow.draft == DOC
    assert flow.draft_revision == 1
    assert flow.created_at == flow.updated_at
    project = await store.get_project("acme", "web")
    assert project is not None
    assert flow.project_id == project.id


async def test_each_save_bumps_the_revision_and_replaces_the_draft(store: Store, clock) -> None:  # type: ignore[no-untyped-def]
    first = await store.save_draft("acme", "web", "grader", DOC, "Grader")
    clock.advance(1)
    second = await store.save_draft("acme", "web", "grader", {"steps": []}, None)
    third = await store.save_draft("acme", "web", "grader", DOC, "Again")
    assert [first.draft_revision, second.draft_revision, third.draft_revision] == [1, 2, 3]
    assert second.id == first.id
    assert second.draft == {"steps": []}
    assert second.name is None
    assert second.created_at == first.created_at
    assert second.updated_at > first.updated_at
    assert await store.get_flow("acme", "web", "grader") == third


async def test_concurrent_saves_each_get_a_revision(store: Store) -> None:
    await store.save_draft("acme", "web", "grader", DOC, None)
    saved = await asyncio.gather(*(store.save_draft("acme", "web", "grader", DOC, None) for _ in range(6)))
    assert sorted(f.draft_revision for f in saved) == [2, 3, 4, 5, 6, 7]


async def test_get_flow_and_by_id(store: Store) -> None:
    flow = await store.save_draft("acme", "web", "grader", DOC, None)
    assert await store.get_flow_by_id(flow.id) == flow
    assert await store.get_flow_by_id("00000000-0000-0000-0000-000000000000") is None
    assert await store.get_flow("acme", "web", "missing") is None
    assert await store.get_flow("acme", "missing", "grader") is None


async def test_list_flows_is_per_project_sorted_by_slug(store: Store) -> None:
    await store.save_draft("acme", "web", "b", DOC, None)
    await store.save_draft("acme", "web", "a", DOC, None)
    await store.save_draft("acme", "api", "c", DOC, None)
    assert [f.slug for f in await store.list_flows("acme", "web")] == ["a", "b"]
    assert await store.list_flows("acme", "nope") == []
    # An org-wide key's view: every project of the org, by project then slug.
    await store.save_draft("globex", "web", "z", DOC, None)
    everything = await store.list_flows("acme", None)
    assert [(f.project_slug, f.slug) for f in everything] == [("api", "c"), ("web", "a"), ("web", "b")]


async def test_tenant_isolation(store: Store) -> None:
    mine = await store.save_draft("acme", "web", "grader", DOC, "mine")
    theirs = await store.save_draft("globex", "web", "grader", {"steps": ["secret"]}, "theirs")
    assert mine.id != theirs.id
    assert (await store.get_flow("acme", "web", "grader")) == mine
    assert (await store.get_flow("globex", "web", "grader")) == theirs
    assert [f.id for f in await store.list_flows("acme", "web")] == [mine.id]
    assert await store.get_flow("initech", "web", "grader") is None


async def test_publish_numbers_versions_from_one(store: Store) -> None:
    flow = await store.save_draft("acme", "web", "grader", {"v": 1}, None)
    v1 = await store.publish(flow.id)
    await store.save_draft("acme", "web", "grader", {"v": 2}, None)
    v2 = await store.publish(flow.id)
    v3 = await store.publish(flow.id)
    assert [v.version for v in (v1, v2, v3)] == [1, 2, 3]
    assert [v1.document, v2.document, v3.document] == [{"v": 1}, {"v": 2}, {"v": 2}]
    assert await store.list_versions(flow.id) == [v1, v2, v3]
    assert await store.get_version(flow.id, 2) == v2
    assert await store.latest_version(flow.id) == v3


async def test_published_version_is_frozen(store: Store) -> None:
    flow = await store.save_draft("acme", "web", "grader", {"v": 1}, None)
    v1 = await store.publish(flow.id)
    await store.save_draft("acme", "web", "grader", {"v": 99}, None)
    assert await store.get_version(flow.id, 1) == v1


async def test_version_lookups_on_unpublished_or_unknown_flows(store: Store) -> None:
    flow = await store.save_draft("acme", "web", "grader", DOC, None)
    assert await store.latest_version(flow.id) is None
    assert await store.list_versions(flow.id) == []
    assert await store.get_version(flow.id, 1) is None
    assert await store.get_version("nope", 1) is None


async def test_publish_unknown_flow(store: Store) -> None:
    with pytest.raises(FlowNotFound):
        await store.publish("00000000-0000-0000-0000-000000000000")


async def test_concurrent_publishes_get_distinct_numbers(store: Store, store_url: str) -> None:
    flow = await store.save_draft("acme", "web", "grader", DOC, None)
    others = [await Store.connect(store_url, migrate=False) for _ in range(4)]
    try:
        published = await asyncio.gather(
            *(s.publish(flow.id) for s in others for _ in range(3)),
            *(store.publish(flow.id) for _ in range(3)),
        )
    finally:
        for s in others:
            await s.close()
    assert sorted(v.version for v in published) == list(range(1, 16))


async def test_invalid_flow_slug(store: Store) -> None:
    for slug in ("", "x" * 65):
        with pytest.raises(InvalidIdentifier):
            await store.save_draft("acme", "web", slug, DOC, None)
