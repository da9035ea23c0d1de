"""Tool calls over HTTP: agent steps with server- and client-side tools, pauses that survive a
restart, tool events on the native stream, and every tool error code."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess
from tests.server.test_execute_api import assert_error, post
from tests.server.test_streams import STEP_BODY, events_only, read_stream
from tests.sse_client import iter_frames

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def pause(server: ServerProcess, **extra: Any) -> dict[str, Any]:
    response = post(
        server, "/seq/dev/main/assistant/execute", {"message": "weather?", "tools": [WEATHER], **extra}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == "tool_calls_required"
    return body


def resume(
    server: ServerProcess, paused: dict[str, Any], results: list[dict[str, Any]], **overrides: Any
) -> httpx.Response:
    body = {
        "parameters": {},
        "tools": [WEATHER],
        "executionId": paused["executionId"],
        "pausedAtStep": paused["pausedAtStep"],
        "iterationsUsed": paused["iterationsUsed"],
        "toolCallMessages": paused["toolCallMessages"] + results,
        "accumulatedOutputs": paused["accumulatedOutputs"],
        "trace": False,
        **overrides,
    }
    return post(server, "/seq/dev/main/assistant/execute", body)


def answer(paused: dict[str, Any], text: str = "sunny") -> list[dict[str, Any]]:
    return [{"role": "tool", "tool_call_id": c["id"], "content": text} for c in paused["toolCalls"]]


def test_paused_result_has_every_field_of_the_contract(server: ServerProcess) -> None:
    paused = pause(server)
    assert uuid.UUID(paused["executionId"])
    assert paused["pausedAtStep"] == "agent"
    assert paused["iterationsUsed"] == 1
    call = paused["toolCalls"][0]
    assert call["type"] == "function" and call["function"]["name"] == "get_weather"
    assert isinstance(call["function"]["arguments"], str)
    assert paused["accumulatedOutputs"] == {"prepare": "Question: weather?"}
    assert paused["blockCount"] == 3 and paused["flowId"]
    second = resume(server, paused, answer(paused)).json()
    assert second["status"] == "tool_calls_required" and second["pausedAtStep"] == "follow_up"
    done = resume(server, second, answer(second, "done")).json()
    assert done == {
        **done,
        "status": "completed",
        "result": "tool results: get_weather=done",
        "executionId": paused["executionId"],
    }


def test_the_native_stream_shows_tool_events_and_the_waiting_state(server: ServerProcess) -> None:
    paused = pause(server)
    run_id = paused["executionId"]
    waiting = httpx.get(
        f"{server.api_url}/runs/{run_id}", headers={"Authorization": f"Bearer {server.dev_key}"}
    ).json()
    assert waiting["status"] == "waiting"
    with httpx.stream(
        "GET",
        f"{server.api_url}/runs/{run_id}/events",
        headers={"Authorization": f"Bearer {server.dev_key}"},
        timeout=30,
    ) as stream:
        frames = []
        for frame in iter_frames(stream):
            if frame.id is not None:
                frames.append(frame)
            if frame.event == "step_paused_for_tool_calls":
                break
    started = next(f.json for f in frames if f.event == "tool_call_started")
    assert started["name"] == "get_weather" and started["side"] == "client"
    second = resume(server, paused, answer(paused)).json()
    resume(server, second, answer(second))  # the flow's second agent step pauses too
    all_events = events_only(read_stream(server, run_id, since=0))
    completed = [f.json for f in all_events if f.event == "tool_call_completed"]
    assert completed[0]["result"] == "sunny" and completed[0]["side"] == "client"
    assert isinstance(completed[0]["durationMs"], int)  # how long the caller took


def test_server_side_tool_events(server: ServerProcess) -> None:
    response = post(server, "/seq/dev/main/counter/execute", {"message": "a b"})
    run_id = response.json()["executionId"]
    names = [
        (f.event, f.json.get("side"))
        for f in events_only(read_stream(server, run_id))
        if f.event and f.event.startswith("tool_call")
    ]
    assert names == [("tool_call_started", "server"), ("tool_call_completed", "server")]
    done = next(f.json for f in events_only(read_stream(server, run_id)) if f.event == "tool_call_completed")
    assert done["result"] == "1" and isinstance(done["durationMs"], int)


def test_step_path_pauses_with_a_flow_absolute_index_and_resumes(server: ServerProcess) -> None:
    body = {**STEP_BODY, "message": "w?", "tools": [WEATHER], "runRemaining": True}
    with httpx.stream(
        "POST",
        f"{server.api_url}/seq/dev/main/assistant/step",
        json=body,
        headers={"Authorization": f"Bearer {server.dev_key}"},
        timeout=30,
    ) as stream:
        frames = [f for f in iter_frames(stream) if f.id is not None]
    paused = frames[-1]
    assert paused.event == "step_paused_for_tool_calls"
    data = paused.json
    for field in (
        "runId",
        "executionId",
        "stepId",
        "stepIndex",
        "iterationsUsed",
        "toolCallMessages",
        "toolCalls",
        "accumulatedOutputs",
    ):
        assert field in data, field
    assert data["stepIndex"] == 1 and data["runId"] == data["executionId"]
    resumed = {
        **STEP_BODY,
        "executionId": data["executionId"],
        "stepIndex": data["stepIndex"],
        "accumulatedOutputs": data["accumulatedOutputs"],
        "runRemaining": True,
        "iterationsUsed": data["iterationsUsed"],
        "toolCallMessages": data["toolCallMessages"]
        + [{"role": "tool", "tool_call_id": c["id"], "content": "ok"} for c in data["toolCalls"]],
    }
    with httpx.stream(
        "POST",
        f"{server.api_url}/seq/dev/main/assistant/step",
        json=resumed,
        headers={"Authorization": f"Bearer {server.dev_key}"},
        timeout=30,
    ) as stream:
        more = [f for f in iter_frames(stream) if f.id is not None]
    assert more[-1].event == "step_paused_for_tool_calls"
    assert more[-1].json["stepIndex"] == 2


def test_a_pause_survives_a_restart(make_server: Any) -> None:
    server = make_server()
    paused = pause(server)
    server.restart(kill=True)
    second = resume(server, paused, answer(paused)).json()
    assert second["executionId"] == paused["executionId"]
    done = resume(server, second, answer(second, "after restart")).json()
    assert done["status"] == "completed"
    assert done["executionId"] == paused["executionId"]
    assert done["result"] == "tool results: get_weather=after restart"


@pytest.mark.parametrize(
    ("tools", "code"),
    [
        ([{"type": "function"}], "TOOLS_INVALID"),
        ([{"type": "retrieval", "function": {"name": "x"}}], "TOOLS_INVALID"),
        ([{"type": "function", "function": {"name": "bad name!"}}], "TOOL_NAME_INVALID"),
        ([WEATHER, WEATHER], "TOOL_NAME_INVALID"),
        ([{"type": "function", "function": {"name": f"t{i}"}} for i in range(65)], "TOOLS_INVALID"),
    ],
)
def test_bad_tool_definitions(server: ServerProcess, tools: list[Any], code: str) -> None:
    assert_error(post(server, "/seq/dev/main/assistant/execute", {"message": "x", "tools": tools}), 400, code)


def test_tools_for_a_flow_without_agent_steps(server: ServerProcess) -> None:
    assert_error(
        post(server, "/seq/dev/main/echo/execute", {"message": "x", "tools": [WEATHER]}),
        400,
        "TOOLS_NOT_ENABLED",
    )


def test_resume_errors(server: ServerProcess) -> None:
    paused = pause(server)
    assert_error(
        resume(server, paused, [{"role": "tool", "tool_call_id": "wrong", "content": "x"}]),
        400,
        "TOOL_RESULTS_MISMATCH",
    )
    assert_error(resume(server, paused, answer(paused), pausedAtStep="prepare"), 400, "PAUSED_STEP_INVALID")
    assert_error(
        resume(server, paused, answer(paused), executionId=str(uuid.uuid4())), 400, "EXECUTION_ID_INVALID"
    )
    assert_error(resume(server, paused, answer(paused), executionId="not-an-id"), 400, "EXECUTION_ID_INVALID")
    big = [{"role": "tool", "tool_call_id": paused["toolCalls"][0]["id"], "content": "x" * (1 << 20)}]
    assert_error(resume(server, paused, big), 413, "MESSAGES_TOO_LARGE")
    second = resume(server, paused, answer(paused)).json()
    # The same results again: that pause is over and the run waits at its next agent step.
    assert_error(resume(server, paused, answer(paused)), 400, "PAUSED_STEP_INVALID")
    assert resume(server, second, answer(second)).json()["status"] == "completed"
    # A finished run takes no tool results at all.
    assert_error(resume(server, second, answer(second)), 400, "EXECUTION_ID_INVALID")


def test_iteration_limit(server: ServerProcess) -> None:
    slug = f"loop-{uuid.uuid4().hex[:6]}"
    server.put_flow(
        server.dev_key,
        "dev",
        "main",
        {
            "slug": slug,
            "steps": [
                {
                    "id": "agent",
                    "type": "agent",
                    "model": "builtin:test",
                    "prompt": "go",
                    "tools": ["word_count"],
                    "max_iterations": 1,
                }
            ],
        },
    )
    detail = assert_error(post(server, f"/seq/dev/main/{slug}/execute", {}), 422, "TOOL_ITERATION_LIMIT")
    assert detail["stepId"] == "agent"


def test_unknown_server_tool_is_refused_when_the_flow_is_saved(server: ServerProcess) -> None:
    response = httpx.put(
        f"{server.api_url}/flows/dev/main/bad-tools",
        json={
            "steps": [
                {"id": "a", "type": "agent", "model": "builtin:test", "prompt": "x", "tools": ["rm_rf"]}
            ]
        },
        headers={"Authorization": f"Bearer {server.dev_key}"},
    )
    assert_error(response, 400, "INVALID_TREE")


def test_messages_input_is_the_conversation(server: ServerProcess) -> None:
    response = post(
        server,
        "/seq/dev/main/echo/execute",
        {
            "messages": [
                {"role": "user", "content": "first"},
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": "latest turn"},
            ]
        },
    )
    assert response.json()["result"] == "latest turn"
