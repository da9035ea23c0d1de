"""Agents that delegate to flows (`tools: [flow:org/project/slug]`) over HTTP, on a real server with
the keyless `builtin:test` model, which calls every tool it is offered with arguments built from
the tool's schema: the flow's declared inputs become the tool, a call runs the flow as a child
run announced by `flow_transfer`, and the child's result (or its failure) is the tool's result."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest

from noukai_server.engine import Failed, FlowEngine, RunInputs, RunState, StepFailure, default_functions
from noukai_server.engine.subflow import (
    ChildRequest,
    ChildResult,
    FlowTool,
    FlowToolCall,
    run_flow_tool,
    use_host,
)
from noukai_server.flows import TemplateEngine, load_flow
from noukai_server.providers import ModelRegistry, ProviderSettings, ToolSpec
from tests.conftest import ServerProcess
from tests.server.test_execute_api import assert_error, post
from tests.server.test_subflows import events, put, run_info

SPECIALIST = {
    "slug": "agt-specialist",
    "description": "Knows everything about one topic.",
    "inputs": {"topic": {"type": "string", "description": "what to ask about"}},
    "steps": [{"id": "answer", "type": "template", "template": "expert on {{ parameters.topic }}"}],
}
CHATTY = {
    "slug": "agt-chatty",
    "steps": [{"id": "reply", "type": "llm", "model": "builtin:echo", "prompt": "heard {{ message }}"}],
}


def agent(slug: str, *tools: str) -> dict[str, Any]:
    return {
        "slug": slug,
        "steps": [
            {
                "id": "boss",
                "type": "agent",
                "model": "builtin:test",
                "prompt": "delegate",
                "tools": list(tools),
            },
        ],
    }


def test_an_agent_calls_a_flow_as_a_tool_and_reads_its_result(server: ServerProcess) -> None:
    assert put(server, SPECIALIST).status_code == 200
    assert put(server, agent("agt-boss", "flow:dev/main/agt-specialist")).status_code == 200
    response = post(server, "/seq/dev/main/agt-boss/execute", {})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["result"].startswith("tool results: agt-specialist=expert on ")
    run_id = body["executionId"]

    log = events(server, run_id)
    (started,) = [e for e in log if e["eventType"] == "tool_call_started"]
    # The tool is the flow: named after its slug, its arguments from its declared inputs.
    assert started["name"] == "agt-specialist" and started["side"] == "server"
    assert set(json.loads(started["arguments"])) == {"topic"}
    (transfer,) = [e for e in log if e["eventType"] == "flow_transfer"]
    assert transfer["stepId"] == "boss" and transfer["toolCallId"] == started["toolCallId"]
    assert transfer["flow"] == "dev/main/agt-specialist" and transfer["attempt"] == 1
    child_id = transfer["childRunId"]
    nested = [e for e in log if e["eventType"] == "subflow_event"]
    assert {(e["childRunId"], e["parentStepId"], e["depth"]) for e in nested} == {(child_id, "boss", 1)}
    assert nested[-1]["event"]["eventType"] == "flow_completed"
    # In order: the call, the transfer, the child's events, the call's result.
    (completed,) = [e for e in log if e["eventType"] == "tool_call_completed"]
    assert log.index(started) < log.index(transfer) < log.index(nested[0])
    assert log.index(nested[-1]) < log.index(completed)
    assert completed["result"] == nested[-1]["event"]["result"]

    child = run_info(server, child_id)
    assert child["status"] == "completed"
    assert (child["parentRunId"], child["parentStepId"], child["depth"]) == (run_id, "boss", 1)


def test_an_agent_in_a_foreach_runs_a_child_per_iteration(server: ServerProcess) -> None:
    """The model's tool call ids repeat across iterations (builtin:test's do): each iteration's
    call still gets a child run of its own."""
    assert put(server, SPECIALIST).status_code == 200
    looped = agent("agt-boss-loop", "flow:dev/main/agt-specialist")
    looped["steps"][0]["foreach"] = "{{ parameters.items }}"
    assert put(server, looped).status_code == 200
    response = post(server, "/seq/dev/main/agt-boss-loop/execute", {"parameters": {"items": [1, 2]}})
    assert response.status_code == 200, response.text
    assert len(response.json()["result"]) == 2
    transfers = [
        e for e in events(server, response.json()["executionId"]) if e["eventType"] == "flow_transfer"
    ]
    assert len(transfers) == 2 and transfers[0]["toolCallId"] == transfers[1]["toolCallId"]
    assert transfers[0]["childRunId"] != transfers[1]["childRunId"]


def test_a_flow_without_inputs_is_offered_as_a_tool_taking_a_message(server: ServerProcess) -> None:
    assert put(server, CHATTY).status_code == 200
    assert put(server, agent("agt-boss-chat", "flow:dev/main/agt-chatty")).status_code == 200
    response = post(server, "/seq/dev/main/agt-boss-chat/execute", {})
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert result.startswith("tool results: agt-chatty=heard ")
    log = events(server, response.json()["executionId"])
    (started,) = [e for e in log if e["eventType"] == "tool_call_started"]
    assert set(json.loads(started["arguments"])) == {"message"}


def test_a_failing_flow_is_the_tools_error_and_the_agent_goes_on(server: ServerProcess) -> None:
    broken = {
        "slug": "agt-broken",
        "steps": [{"id": "boom", "type": "template", "template": "{{ parameters.a.b.c }}"}],
    }
    assert put(server, broken).status_code == 200
    assert put(server, agent("agt-boss-broken", "flow:dev/main/agt-broken")).status_code == 200
    response = post(server, "/seq/dev/main/agt-boss-broken/execute", {})
    assert response.status_code == 200, response.text
    assert "agt-broken=error: SUBFLOW_FAILED" in response.json()["result"]
    log = events(server, response.json()["executionId"])
    (completed,) = [e for e in log if e["eventType"] == "tool_call_completed"]
    assert completed["error"].startswith("SUBFLOW_FAILED") and "TEMPLATE_ERROR" in completed["error"]
    assert "result" not in completed


def test_a_flow_tool_naming_no_flow_fails_the_agent_step(server: ServerProcess) -> None:
    assert put(server, agent("agt-boss-lost", "flow:dev/main/agt-nowhere")).status_code == 200
    detail = assert_error(post(server, "/seq/dev/main/agt-boss-lost/execute", {}), 422, "SUBFLOW_INVALID")
    assert "no flow dev/main/agt-nowhere" in detail["message"] and detail["stepId"] == "boss"


def test_a_malformed_flow_tool_is_refused_at_push(server: ServerProcess) -> None:
    detail = assert_error(put(server, agent("agt-boss-bad", "flow:nowhere")), 400, "INVALID_TREE")
    assert "flow:org/project/slug" in detail["message"]


# --- the parts a real server cannot be made to reach -------------------------------------------------


class _Sink:
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    async def emit(self, event_type: str, payload: Any) -> None:
        self.events.append((event_type, payload))

    async def checkpoint(self, next_step_index: int, state: RunState) -> None:
        return None


class _Host:
    """Answers with the arguments it was given, so the test sees how they were split."""

    async def run_child(
        self, request: ChildRequest, sink: Any, on_start: Callable[[str], Awaitable[None]] | None = None
    ) -> ChildResult:
        if on_start is not None:
            await on_start("child-1")
        return ChildResult("child-1", {"parameters": dict(request.parameters), "message": request.message})

    async def flow_tool(self, flow: str) -> FlowTool:
        raise AssertionError("not asked here")


async def _with_host(host: Any, work: Callable[[], Awaitable[Any]]) -> Any:
    """`work()` in a run's task with `host` as its run host (set in the task: nothing leaks out)."""
    use_host(host)
    return await work()


TOOL = FlowTool("dev/main/x", ToolSpec("x", "", {"type": "object"}), takes_message=True)
CALL = FlowToolCall("boss", 0, 1, "call_1", "")


@pytest.mark.parametrize(
    ("arguments", "error"),
    [("{not json", "the arguments are not JSON"), ("[1, 2]", "the arguments must be a JSON object")],
)
def test_flow_tool_arguments_that_are_not_a_json_object_are_the_tools_error(
    arguments: str, error: str
) -> None:
    call = replace(CALL, arguments=arguments)
    with pytest.raises(StepFailure) as refused:
        asyncio.run(_with_host(_Host(), lambda: run_flow_tool(TOOL, call, _Sink())))
    assert refused.value.code == "SUBFLOW_INVALID" and error in refused.value.message


def test_a_flow_tool_call_splits_the_message_off_and_announces_the_transfer() -> None:
    sink = _Sink()
    call = replace(CALL, arguments=json.dumps({"message": "hi", "extra": 1}))
    result = json.loads(asyncio.run(_with_host(_Host(), lambda: run_flow_tool(TOOL, call, sink))))
    assert result == {"parameters": {"extra": 1}, "message": "hi"}
    assert sink.events == [
        (
            "flow_transfer",
            {"stepId": "boss", "stepIndex": 0, "attempt": 1, "toolCallId": "call_1", "childRunId": "child-1",
             "flow": "dev/main/x"},
        )
    ]  # fmt: skip


def test_a_flow_step_on_an_engine_without_a_runtime_fails_with_subflow_invalid() -> None:
    """A bare engine (a script, a unit test) has no store to keep a child run in."""
    spec = load_flow({"slug": "p", "steps": [{"id": "call", "type": "flow", "flow": "dev/main/x"}]})
    engine = FlowEngine(ModelRegistry(ProviderSettings()), default_functions(), TemplateEngine())
    run = {"id": "r", "flow": "p", "version": 0}
    outcome = asyncio.run(
        _with_host(None, lambda: engine.run(spec, RunInputs(), RunState(), _Sink(), run=run))
    )
    assert isinstance(outcome, Failed) and outcome.code == "SUBFLOW_INVALID"
    assert "needs the server's runtime" in outcome.message
