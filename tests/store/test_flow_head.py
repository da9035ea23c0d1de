"""`get_flow_head` / `get_flow_document`: how a request addresses a flow without reading documents."""

from __future__ import annotations

import pytest

from noukai_server.store import FlowHead, Store

from .conftest import make_flow

pytestmark = pytest.mark.anyio


async def test_head_of_an_unpublished_flow(store: Store) -> None:
    flow = await make_flow(store)
    head = await store.get_flow_head("acme", "web", "grader")
    assert head == FlowHead(flow.id, flow.org_id, flow.project_id, draft_revision=1, latest_version=None)


async def test_head_follows_drafts_and_publishes(store: Store) -> None:
    flow = await make_flow(store)
    await store.publish(flow.id)
    await store.save_draft("acme", "web", "grader", {"slug": "grader", "steps": [{"id": "b"}]}, None)
    await store.publish(flow.id)
    head = await store.get_flow_head("acme", "web", "grader")
    assert head is not None
    assert (head.draft_revision, head.latest_version) == (2, 2)


async def test_head_is_per_tenant(store: Store) -> None:
    await make_flow(store, org="acme", project="web")
    assert await store.get_flow_head("other", "web", "grader") is None
    assert await store.get_flow_head("acme", "api", "grader") is None
    assert await store.get_flow_head("acme", "web", "nope") is None


async def test_documents_of_the_draft_and_of_versions(store: Store) -> None:
    flow = await make_flow(store)
    await store.publish(flow.id)
    await store.save_draft("acme", "web", "grader", {"slug": "grader", "steps": [{"id": "b"}]}, None)
    assert await store.get_flow_document(flow.id, 0) == ({"slug": "grader", "steps": [{"id": "b"}]}, 2)
    assert await store.get_flow_document(flow.id, 1) == ({"slug": "grader", "steps": [{"id": "a"}]}, 0)
    assert await store.get_flow_document(flow.id, 2) is None
    assert await store.get_flow_document("00000000-0000-0000-0000-000000000000", 0) is None
