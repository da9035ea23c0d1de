"""`flow` steps over HTTP, on a real server: a child run of its own with its events nested in the
parent's log, failure and cancel carried across, a parent killed mid-child resumed without running
the child's finished steps again, and cycles refused at push."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from noukai import FlowCompleted, Noukai, RunStarted, SubflowEvent
from noukai_server.bus import MemoryBus
from noukai_server.engine import FlowEngine, Outcome, default_functions
from noukai_server.flows import FlowSpec, TemplateEngine
from noukai_server.providers import ModelRegistry, ProviderSettings
from noukai_server.runtime import FlowCache, Worker
from noukai_server.runtime.child_runs import child_run_id
from noukai_server.store import NewRun, RunRecord, Store
from noukai_server.telemetry import semconv as sc
from tests._services import fresh_postgres_database
from tests.conftest import ServerProcess, _server_env, free_port
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.server.test_execute_api import assert_error, post


def auth(server: ServerProcess) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.dev_key}"}


def put(
    server: ServerProcess, document: dict[str, Any], *, project: str = "main", key: str | None = None
) -> httpx.Response:
    url = f"{server.api_url}/flows/dev/{project}/{document['slug']}"
    return httpx.put(url, json=document, headers={"Authorization": f"Bearer {key or server.dev_key}"})


def events(server: ServerProcess, run_id: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{server.api_url}/runs/{run_id}/events", headers=auth(server), timeout=30)
    assert response.status_code == 200, response.text
    return [json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:")]


def run_info(server: ServerProcess, run_id: str) -> dict[str, Any]:
    response = httpx.get(f"{server.api_url}/runs/{run_id}", headers=auth(server), timeout=10)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_for(server: ServerProcess, run_id: str, status: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = run_info(server, run_id)
        if info["status"] == status:
            return info
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} is {run_info(server, run_id)['status']}, not {status}")


CHILD = {
    "slug": "sub-child",
    "inputs": {"topic": {"type": "string"}},
    "steps": [
        {"id": "first", "type": "template", "template": "about {{ parameters.topic }}"},
        {"id": "second", "type": "llm", "model": "builtin:echo", "prompt": "{{ steps.first.output }}"},
    ],
}
PARENT = {
    "slug": "sub-parent",
    "steps": [
        {"id": "ask", "type": "template", "template": "cats"},
        {
            "id": "delegate",
            "type": "flow",
            "flow": "dev/main/sub-child",
            "inputs": {"topic": "{{ steps.ask.output }}"},
        },
        {"id": "after", "type": "template", "template": "got: {{ steps.delegate.output }}"},
    ],
}


def test_a_flow_step_runs_a_child_run_whose_events_nest_in_the_parents_log(server: ServerProcess) -> None:
    assert put(server, CHILD).status_code == 200
    assert put(server, PARENT).status_code == 200
    response = post(server, "/seq/dev/main/sub-parent/execute", {})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["result"] == "got: about cats"
    parent_id = body["executionId"]

    log = events(server, parent_id)
    nested = [e for e in log if e["eventType"] == "subflow_event"]
    assert nested, log
    child_id = nested[0]["childRunId"]
    assert {e["childRunId"] for e in nested} == {child_id}
    assert {(e["parentStepId"], e["depth"], e["flow"]) for e in nested} == {
        ("delegate", 1, "dev/main/sub-child")
    }
    inner = [e["event"] for e in nested]
    assert inner[0]["eventType"] == "run_started" and inner[-1]["eventType"] == "flow_completed"
    assert [e["seq"] for e in inner] == list(range(1, len(inner) + 1))
    # The nested events sit inside the parent's `delegate` step, between its start and its end.
    positions = {(e["eventType"], e.get("stepId")): i for i, e in enumerate(log)}
    started = positions[("step_started", "delegate")]
    completed = positions[("step_completed", "delegate")]
    assert all(started < log.index(e) < completed for e in nested)
    assert log[completed]["output"] == "about cats"

    # The child is a run of its own: its log is the nested one, entry for entry.
    assert events(server, child_id) == inner
    child = run_info(server, child_id)
    assert child["status"] == "completed" and child["result"] == "about cats"
    assert (child["parentRunId"], child["parentStepId"], child["depth"]) == (parent_id, "delegate", 1)
    parent = run_info(server, parent_id)
    assert (parent["parentRunId"], parent["depth"]) == (None, 0)


def test_a_flow_step_with_foreach_runs_a_child_per_item(server: ServerProcess) -> None:
    assert put(server, CHILD).status_code == 200
    looped = {
        "slug": "sub-looped",
        "steps": [
            {
                "id": "each",
                "type": "flow",
                "flow": "dev/main/sub-child",
                "foreach": "{{ parameters.topics }}",
                "inputs": {"topic": "{{ item }}"},
            }
        ],
    }
    assert put(server, looped).status_code == 200
    response = post(server, "/seq/dev/main/sub-looped/execute", {"parameters": {"topics": ["a", "b"]}})
    assert response.status_code == 200, response.text
    assert response.json()["result"] == ["about a", "about b"]
    parent_id = response.json()["executionId"]
    children = [child_run_id(parent_id, "each", str(index)) for index in (0, 1)]
    nested = [e for e in events(server, parent_id) if e["eventType"] == "subflow_event"]
    assert [e["childRunId"] for e in nested if e["event"]["eventType"] == "run_started"] == children
    assert [run_info(server, child)["result"] for child in children] == ["about a", "about b"]


def test_a_child_that_fails_fails_the_parents_step_with_its_error(server: ServerProcess) -> None:
    failing = {
        "slug": "sub-failing",
        "steps": [{"id": "boom", "type": "template", "template": "{{ parameters.x.y.z }}"}],
    }
    parent = {
        "slug": "sub-fails-parent",
        "steps": [{"id": "call", "type": "flow", "flow": "dev/main/sub-failing", "inputs": {"x": {}}}],
    }
    assert put(server, failing).status_code == 200
    assert put(server, parent).status_code == 200
    response = post(server, "/seq/dev/main/sub-fails-parent/execute", {})
    detail = assert_error(response, 422, "SUBFLOW_FAILED")
    assert "TEMPLATE_ERROR" in detail["message"] and "'boom'" in detail["message"]
    assert detail["stepId"] == "call"


@pytest.mark.parametrize(
    ("step", "code", "words"),
    [
        ({"flow": "dev/main/no-such-flow"}, "SUBFLOW_INVALID", "no flow dev/main/no-such-flow"),
        ({"flow": "other/main/sub-child"}, "SUBFLOW_INVALID", "another org"),
        ({"flow": "dev/main/sub-child", "version": 99}, "SUBFLOW_INVALID", "no version 99"),
        ({"flow": "dev/main/sub-child", "inputs": {}}, "SUBFLOW_INVALID", "missing required input 'topic'"),
        ({"flow": "dev/main/sub-slow"}, "SUBFLOW_INVALID", "give the step a `message`"),
    ],
)
def test_a_child_that_cannot_start_fails_the_step_with_a_clear_code(
    server: ServerProcess, step: dict[str, Any], code: str, words: str
) -> None:
    assert put(server, CHILD).status_code == 200
    assert put(server, SLOW_CHILD).status_code == 200
    slug = f"sub-bad-{abs(hash(json.dumps(step, sort_keys=True))) % 10**8}"
    flow = {"slug": slug, "steps": [{"id": "call", "type": "flow", **step}]}
    assert put(server, flow).status_code == 200, flow
    detail = assert_error(post(server, f"/seq/dev/main/{slug}/execute", {}), 422, code)
    assert words in detail["message"]


def test_a_flow_step_with_a_malformed_address_is_refused_at_push(server: ServerProcess) -> None:
    flow = {"slug": "sub-malformed", "steps": [{"id": "call", "type": "flow", "flow": "just-a-slug"}]}
    detail = assert_error(put(server, flow), 400, "INVALID_TREE")
    assert "org/project/slug" in detail["message"]


def test_a_flow_that_reaches_itself_is_refused_at_push(server: ServerProcess) -> None:
    # a -> b is fine while b does not exist; b -> a closes the loop and is refused.
    a = {"slug": "cyc-a", "steps": [{"id": "to_b", "type": "flow", "flow": "dev/main/cyc-b"}]}
    b = {"slug": "cyc-b", "steps": [{"id": "to_a", "type": "flow", "flow": "dev/main/cyc-a"}]}
    assert put(server, a).status_code == 200
    detail = assert_error(put(server, b), 422, "FLOW_CYCLE")
    assert "dev/main/cyc-b -> dev/main/cyc-a -> dev/main/cyc-b" in detail["message"]
    own = {"slug": "cyc-self", "steps": [{"id": "me", "type": "flow", "flow": "dev/main/cyc-self"}]}
    assert_error(put(server, own), 422, "FLOW_CYCLE")
    # Through an agent's `flow:` tool too.
    agent = {
        "slug": "cyc-b",
        "steps": [
            {
                "id": "pick",
                "type": "agent",
                "model": "builtin:echo",
                "prompt": "x",
                "tools": ["flow:dev/main/cyc-a"],
            }
        ],
    }
    assert_error(put(server, agent), 422, "FLOW_CYCLE")
    # A flow of another project that calls a, and is called by nothing, is fine.
    other = {"slug": "cyc-b", "steps": [{"id": "to_a", "type": "flow", "flow": "dev/main/cyc-a"}]}
    org_wide = server.create_key("dev")
    assert put(server, other, project="side", key=org_wide).status_code == 200


def test_flows_nested_past_the_depth_limit_fail_with_subflow_too_deep(server: ServerProcess) -> None:
    # A loop the push check cannot see: a pins version... none; it is built by editing the drafts
    # in an order that never closes the loop at push: deep-0 -> deep-1 -> ... -> deep-6.
    for level in range(6, -1, -1):
        steps: list[dict[str, Any]] = [{"id": "leaf", "type": "template", "template": "bottom"}]
        if level < 6:
            steps = [{"id": "down", "type": "flow", "flow": f"dev/main/deep-{level + 1}"}]
        assert put(server, {"slug": f"deep-{level}", "steps": steps}).status_code == 200
    detail = assert_error(post(server, "/seq/dev/main/deep-0/execute", {}), 422, "SUBFLOW_FAILED")
    assert "SUBFLOW_TOO_DEEP" in detail["message"]
    # Five levels are fine.
    assert post(server, "/seq/dev/main/deep-1/execute", {}).json()["result"] == "bottom"


SLOW_CHILD = {
    "slug": "sub-slow",
    "steps": [
        {"id": "first", "type": "template", "template": "begin"},
        {
            "id": "slow",
            "type": "llm",
            "model": "builtin:echo",
            "prompt": "{{ message }}",
            "params": {"token_delay_ms": 50},
        },
        {"id": "last", "type": "template", "template": "{{ steps.first.output }}: {{ steps.slow.output }}"},
    ],
}
SLOW_PARENT = {
    "slug": "sub-slow-parent",
    "steps": [
        {"id": "intro", "type": "template", "template": "intro"},
        {"id": "delegate", "type": "flow", "flow": "dev/main/sub-slow", "message": "{{ message }}"},
        {"id": "outro", "type": "template", "template": "done: {{ steps.delegate.output }}"},
    ],
}
WORDS = " ".join(f"w{i}" for i in range(60))  # about 3 s of streaming


def start_slow_parent(server: ServerProcess) -> tuple[str, str]:
    """A job of the slow parent, returned once its child is streaming its slow step."""
    assert put(server, SLOW_CHILD).status_code == 200
    assert put(server, SLOW_PARENT).status_code == 200
    response = post(server, "/seq/dev/main/sub-slow-parent/jobs", {"message": WORDS})
    assert response.status_code in (200, 202), response.text
    parent_id = response.json()["executionId"]
    child_id = child_run_id(parent_id, "delegate", "0")
    deadline = time.monotonic() + 20
    while not slow_step_running(server, child_id):
        assert time.monotonic() < deadline, server.log_text()[-3000:]
        time.sleep(0.05)
    return parent_id, child_id


def slow_step_running(server: ServerProcess, child_id: str) -> bool:
    url = f"{server.api_url}/seq/dev/main/sub-slow/runs/{child_id}/trace"
    response = httpx.get(url, headers=auth(server), timeout=5)
    if response.status_code == 404:  # not created yet
        return False
    steps = response.json()["steps"]
    return any(step["stepId"] == "slow" and step["status"] == "running" for step in steps)


def cancel(server: ServerProcess, run_id: str) -> None:
    response = httpx.post(f"{server.api_url}/runs/{run_id}/cancel", headers=auth(server), timeout=10)
    assert response.status_code == 200, response.text


def test_cancelling_the_parent_stops_its_child(server: ServerProcess) -> None:
    parent_id, child_id = start_slow_parent(server)
    cancel(server, parent_id)
    wait_for(server, parent_id, "cancelled")
    wait_for(server, child_id, "cancelled")
    child_log = events(server, child_id)
    assert child_log[-1]["eventType"] == "run_cancelled"
    assert not any(e["eventType"] == "step_completed" and e["stepId"] == "slow" for e in child_log)
    # The parent's log has the child's end too, nested, before its own.
    parent_log = events(server, parent_id)
    assert parent_log[-1]["eventType"] == "run_cancelled"
    nested = [e["event"]["eventType"] for e in parent_log if e["eventType"] == "subflow_event"]
    assert nested[-1] == "run_cancelled"


def test_cancelling_the_child_fails_the_parents_step(server: ServerProcess) -> None:
    parent_id, child_id = start_slow_parent(server)
    cancel(server, child_id)
    wait_for(server, child_id, "cancelled")
    info = wait_for(server, parent_id, "failed")
    assert info["error"]["code"] == "SUBFLOW_CANCELLED"
    assert info["error"]["stepId"] == "delegate"


def trace_steps(server: ServerProcess, slug: str, run_id: str) -> list[tuple[str, int, str]]:
    url = f"{server.api_url}/seq/dev/main/{slug}/runs/{run_id}/trace"
    steps = httpx.get(url, headers=auth(server), timeout=5).json()["steps"]
    return [(s["stepId"], s["attempt"], s["status"]) for s in steps]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_args(request: pytest.FixtureRequest) -> Iterator[tuple[str, ...]]:
    if request.param == "sqlite":
        yield ()
        return
    with fresh_postgres_database() as url:
        yield ("--database-url", url)


@pytest.mark.parametrize("kill", [True, False], ids=["killed", "stopped"])
def test_a_parent_killed_mid_child_resumes_the_child_without_rerunning_its_finished_steps(
    make_server: Any, database_args: tuple[str, ...], kill: bool
) -> None:
    # A short lease: the killed server's parent is claimable again two seconds after its last
    # renewal. A stopped one hands its parent back at once, and keeps its child leased, for the
    # parent's next attempt to take over (rather than the queue running it on its own).
    server: ServerProcess = make_server({"NOUKAI_LEASE_SECONDS": "2"}, extra_args=database_args)
    parent_id, child_id = start_slow_parent(server)
    server.restart(kill=kill)

    info = wait_for(server, parent_id, "completed", timeout=60)
    assert info["result"] == f"done: begin: {WORDS}"
    # The child ran as attempt 2 of its own, from its checkpoint: `first` ran once, `slow` again.
    assert trace_steps(server, "sub-slow", child_id) == [
        ("first", 1, "completed"),
        ("slow", 2, "completed"),
        ("last", 1, "completed"),
    ]
    child_log = events(server, child_id)
    assert [
        e["attempt"] for e in child_log if e["eventType"] == "step_started" and e["stepId"] == "first"
    ] == [1]
    assert sum(e["eventType"] == "run_started" for e in child_log) == 1
    assert run_info(server, child_id)["status"] == "completed"
    # The parent's step ran again as attempt 2, and took the same child over (no second child).
    assert trace_steps(server, "sub-slow-parent", parent_id) == [
        ("intro", 1, "completed"),
        ("delegate", 2, "completed"),
        ("outro", 1, "completed"),
    ]
    nested = [e for e in events(server, parent_id) if e["eventType"] == "subflow_event"]
    assert {e["childRunId"] for e in nested} == {child_id}
    assert nested[-1]["event"]["eventType"] == "flow_completed"


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, OtlpReceiver]]:
    """A server exporting its traces to an in-test OTLP receiver."""
    with OtlpReceiver() as receiver:
        env = {
            **_server_env(),
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
        server = ServerProcess(free_port(), tmp_path_factory.mktemp("traced-subflows"), env)
        server.start()
        try:
            yield server, receiver
        finally:
            server.stop()


def test_the_parents_step_span_and_the_childs_workflow_span_link_both_ways(
    traced: tuple[ServerProcess, OtlpReceiver],
) -> None:
    server, receiver = traced
    assert put(server, CHILD).status_code == 200
    assert put(server, PARENT).status_code == 200
    response = post(server, "/seq/dev/main/sub-parent/execute", {})
    assert response.status_code == 200, response.text
    parent_id = response.json()["executionId"]
    child_id = child_run_id(parent_id, "delegate", "0")
    trace_id = run_info(server, parent_id)["traceId"]
    assert trace_id and run_info(server, child_id)["traceId"] == trace_id  # one trace for both

    def ended(spans: list[ReceivedSpan]) -> bool:
        names = {s.name for s in spans if s.trace_id == trace_id}
        return {"invoke_workflow sub-parent", "invoke_workflow sub-child"} <= names

    spans = [s for s in receiver.wait_for(ended) if s.trace_id == trace_id]
    (parent,) = [s for s in spans if s.name == "invoke_workflow sub-parent"]
    (step,) = [s for s in spans if s.name == "step delegate"]
    (child,) = [s for s in spans if s.name == "invoke_workflow sub-child"]
    assert parent.attributes[sc.RUN_ID] == parent_id and step.parent_span_id == parent.span_id
    # Parent to child: the step's span names the child run; child to parent: the child's
    # workflow span is a child of that step's span, and its own steps are children of it.
    assert step.attributes[sc.CHILD_RUN_IDS] == [child_id]
    assert child.parent_span_id == step.span_id and child.attributes[sc.RUN_ID] == child_id
    (inner,) = [s for s in spans if s.name == "step second"]
    assert inner.parent_span_id == child.span_id


def test_a_grandchilds_events_reach_the_top_runs_log_at_depth_two(server: ServerProcess) -> None:
    leaf = {"slug": "nest-leaf", "steps": [{"id": "leaf", "type": "template", "template": "leaf"}]}
    mid = {"slug": "nest-mid", "steps": [{"id": "down", "type": "flow", "flow": "dev/main/nest-leaf"}]}
    top = {"slug": "nest-top", "steps": [{"id": "start", "type": "flow", "flow": "dev/main/nest-mid"}]}
    for document in (leaf, mid, top):
        assert put(server, document).status_code == 200
    response = post(server, "/seq/dev/main/nest-top/execute", {})
    assert response.status_code == 200 and response.json()["result"] == "leaf", response.text
    top_id = response.json()["executionId"]
    mid_id = child_run_id(top_id, "start", "0")
    leaf_id = child_run_id(mid_id, "down", "0")
    nested = [e for e in events(server, top_id) if e["eventType"] == "subflow_event"]
    by_run = {(e["childRunId"], e["parentStepId"], e["depth"], e["flow"]) for e in nested}
    assert by_run == {(mid_id, "start", 1, "dev/main/nest-mid"), (leaf_id, "down", 2, "dev/main/nest-leaf")}
    # The grandchild's entries, as its own log holds them, once each.
    assert [e["event"] for e in nested if e["childRunId"] == leaf_id] == events(server, leaf_id)
    assert (run_info(server, leaf_id)["parentRunId"], run_info(server, leaf_id)["depth"]) == (mid_id, 2)


def test_a_pinned_version_that_does_not_lead_back_is_no_cycle(server: ServerProcess) -> None:
    org_wide = server.create_key("dev")
    b_v1 = {"slug": "pin-b", "steps": [{"id": "plain", "type": "template", "template": "b one"}]}
    server.put_flow(org_wide, "dev", "main", b_v1, publish=True)
    a = {"slug": "pin-a", "steps": [{"id": "to_b", "type": "flow", "flow": "dev/main/pin-b", "version": 1}]}
    assert put(server, a).status_code == 200
    # b's draft now calls a, but a runs b's version 1, which calls nothing: no loop.
    b_draft = {"slug": "pin-b", "steps": [{"id": "to_a", "type": "flow", "flow": "dev/main/pin-a"}]}
    assert put(server, b_draft).status_code == 200
    assert post(server, "/seq/dev/main/pin-a/execute", {}).json()["result"] == "b one"
    # Pinning a to b's draft (version 0) closes the loop.
    a_draft = {
        "slug": "pin-a",
        "steps": [{"id": "to_b", "type": "flow", "flow": "dev/main/pin-b", "version": 0}],
    }
    detail = assert_error(put(server, a_draft), 422, "FLOW_CYCLE")
    assert "step 'to_b'" in detail["message"]


def test_the_sdk_types_the_nested_events_and_unwraps_the_childs(server: ServerProcess) -> None:
    assert put(server, CHILD).status_code == 200
    assert put(server, PARENT).status_code == 200
    with Noukai(api_key=server.dev_key, base_url=server.base_url) as client:
        streamed = list(client.flow("dev/main/sub-parent").events())
    nested = [event for event in streamed if isinstance(event, SubflowEvent)]
    assert nested and all(e.parent_step_id == "delegate" and e.depth == 1 for e in nested)
    inner = [e.child_event() for e in nested]
    assert isinstance(inner[0], RunStarted) and isinstance(inner[-1], FlowCompleted)
    assert inner[-1].result == "about cats"


# --- in process: what no request can provoke -------------------------------------------------------


class _BuggyEngine(FlowEngine):
    """An engine with a bug in one flow: its run raises what no step raises."""

    async def run(self, flow: FlowSpec, *args: Any, **kwargs: Any) -> Outcome:
        if flow.slug == "buggy":
            raise RuntimeError("a bug")
        return await super().run(flow, *args, **kwargs)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[tuple[Store, Worker]]:
    store = await Store.connect(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    engine = _BuggyEngine(ModelRegistry(ProviderSettings()), default_functions(), TemplateEngine())
    worker = Worker(store, MemoryBus(), engine, FlowCache(), poll_interval=0.05, worker_id="w1")
    try:
        yield store, worker
    finally:
        await worker.stop()
        await store.close()


async def _parent_of(store: Store, child_slug: str) -> RunRecord:
    await store.save_draft("acme", "web", child_slug, {"slug": child_slug, "steps": [TEMPLATE_STEP]}, None)
    document = {"slug": "holder", "steps": [{"id": "call", "type": "flow", "flow": f"acme/web/{child_slug}"}]}
    flow = await store.save_draft("acme", "web", "holder", document, None)
    new = NewRun(
        org_id=flow.org_id,
        project_id=flow.project_id,
        flow_id=flow.id,
        flow_version=0,
        flow_revision=flow.draft_revision,
        document=document,
        trigger_type="job",
    )
    return await store.create_run(new)


async def _ended(store: Store, run_id: str) -> RunRecord:
    for _ in range(500):
        run = await store.get_run(run_id)
        if run is not None and run.terminal:
            return run
        await asyncio.sleep(0.02)
    raise AssertionError(f"run {run_id} did not end")


TEMPLATE_STEP = {"id": "only", "type": "template", "template": "fine"}


@pytest.mark.anyio
async def test_a_child_that_breaks_inside_the_server_fails_with_internal_error(
    runtime: tuple[Store, Worker],
) -> None:
    store, worker = runtime
    parent = await _parent_of(store, "buggy")
    await worker.start()
    ended = await _ended(store, parent.id)
    assert ended.status == "failed" and ended.error["code"] == "SUBFLOW_FAILED"
    assert "failed inside the server" in ended.error["message"]
    child = await _ended(store, child_run_id(parent.id, "call", "0"))
    assert child.status == "failed" and child.error["code"] == "INTERNAL_ERROR"


@pytest.mark.anyio
async def test_a_child_cancelled_while_no_worker_held_it_is_cancelled_when_its_parent_resumes(
    runtime: tuple[Store, Worker],
) -> None:
    store, worker = runtime
    parent = await _parent_of(store, "fine")
    # The state a lost worker leaves: the child leased to it, and a cancel asked for meanwhile.
    head = await store.get_flow_head("acme", "web", "fine")
    assert head is not None
    child_id = child_run_id(parent.id, "call", "0")
    document = {"slug": "fine", "steps": [TEMPLATE_STEP]}
    orphan = NewRun(
        id=child_id,
        org_id=head.org_id,
        project_id=head.project_id,
        flow_id=head.id,
        flow_version=0,
        flow_revision=head.draft_revision,
        document=document,
        trigger_type="job",
        parent_run_id=parent.id,
        parent_step_id="call",
        depth=1,
    )
    await store.create_run(orphan, lease_to="gone", lease_seconds=3600)
    await store.request_cancel(child_id)
    await worker.start()
    ended = await _ended(store, parent.id)
    assert ended.status == "failed" and ended.error["code"] == "SUBFLOW_CANCELLED"
    child = await _ended(store, child_id)
    assert child.status == "cancelled" and child.attempt == 2  # taken over, then ended
