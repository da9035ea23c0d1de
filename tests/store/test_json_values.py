"""JSON columns give back exactly what was stored, scalars included (SQLite's NUMERIC affinity
turns a stored `7` into an integer, which must not break decoding)."""

from __future__ import annotations

from typing import Any

import pytest

from noukai_server.store import EventRow, NewRun, RunUpdate, Store

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    "value", [7, 0, -3, 1.5, 1e21, True, False, None, "7", "text", [1, "a"], {"k": [1, 2.5, None]}]
)
async def test_results_round_trip(store: Store, value: Any) -> None:
    flow = await store.save_draft("acme", "p", "json", {"slug": "json", "steps": []}, None)
    run = await store.create_run(
        NewRun(
            org_id="acme",
            project_id=flow.project_id,
            flow_id=flow.id,
            flow_version=0,
            flow_revision=flow.draft_revision,
            document={},
            trigger_type="job",
            input={"parameters": {"v": value}},
        )
    )
    claimed = await store.claim_next_run("w", 30)
    assert claimed is not None and claimed.id == run.id
    await store.record(
        run.id,
        claimed.attempt,
        [EventRow(1, "flow_completed", "{}")],
        RunUpdate(status="completed", result=value, state={"outputs": {"s": value}}),
    )
    done = await store.get_run(run.id)
    assert done is not None
    assert done.result == value and type(done.result) is type(value)
    assert done.state == {"outputs": {"s": value}}
    assert done.input == {"parameters": {"v": value}}
