"""The AG-UI endpoint: recorded streams of real runs, every event validated with `ag_ui.core`'s own
models (and refused if it carries a key the protocol does not define), the protocol's ordering
rules checked, a frontend tool pause and its resume, failures, and every refusal."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from ag_ui.core import Event, RunAgentInput
from pydantic import BaseModel, TypeAdapter

from tests.conftest import ServerProcess, _server_env, free_port
from tests.fakeprovider import FakeProvider, Reply
from tests.protocols.conftest import WEATHER, Tenant
from tests.sse_client import iter_frames

EVENT: TypeAdapter[Any] = TypeAdapter(Event)
TOOL = {
    "name": WEATHER["function"]["name"],
    "description": WEATHER["function"]["description"],
    "parameters": WEATHER["function"]["parameters"],
}


def run_input(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    body = {
        "threadId": "thread-1",
        "runId": str(uuid.uuid4()),
        "messages": list(messages),
        "tools": [],
        "state": {},
        "context": [],
        "forwardedProps": {},
        **extra,
    }
    RunAgentInput.model_validate(body)  # what we send is a valid AG-UI input
    return body


def user(text: str) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "role": "user", "content": text}


def _no_extras(value: Any, where: str) -> None:
    if isinstance(value, BaseModel):
        assert not value.model_extra, f"{where}: keys AG-UI does not define: {value.model_extra}"
        for name in type(value).model_fields:
            _no_extras(getattr(value, name), f"{where}.{name}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _no_extras(item, f"{where}[{index}]")


def validate(events: list[dict[str, Any]]) -> None:
    """Every event is an AG-UI event, and the stream keeps the protocol's order."""
    for index, raw in enumerate(events):
        _no_extras(EVENT.validate_python(raw), f"event {index} ({raw['type']})")
    kinds = [e["type"] for e in events]
    assert kinds[0] == "RUN_STARTED" and kinds[-1] in ("RUN_FINISHED", "RUN_ERROR")
    assert kinds.count("RUN_STARTED") == 1 and kinds.count("RUN_FINISHED") + kinds.count("RUN_ERROR") == 1
    open_steps: set[str] = set()
    open_messages: set[str] = set()
    open_calls: set[str] = set()
    started_calls: set[str] = set()
    for event in events:
        kind = event["type"]
        if kind == "STEP_STARTED":
            assert event["stepName"] not in open_steps
            open_steps.add(event["stepName"])
        elif kind == "STEP_FINISHED":
            open_steps.remove(event["stepName"])
        elif kind in ("TEXT_MESSAGE_START", "REASONING_MESSAGE_START"):
            open_messages.add(event["messageId"])
        elif kind in ("TEXT_MESSAGE_CONTENT", "REASONING_MESSAGE_CONTENT"):
            assert event["messageId"] in open_messages and event["delta"]
        elif kind in ("TEXT_MESSAGE_END", "REASONING_MESSAGE_END"):
            open_messages.remove(event["messageId"])
        elif kind == "TOOL_CALL_START":
            assert event["toolCallId"] not in started_calls  # ids never repeat within a run
            open_calls.add(event["toolCallId"])
            started_calls.add(event["toolCallId"])
        elif kind == "TOOL_CALL_ARGS":
            assert event["toolCallId"] in open_calls
        elif kind == "TOOL_CALL_END":
            open_calls.remove(event["toolCallId"])
        elif kind == "TOOL_CALL_RESULT":
            assert event["toolCallId"] in started_calls
    assert not open_steps and not open_messages and not open_calls


def post(server: ServerProcess, key: str, path: str, body: Any) -> list[dict[str, Any]]:
    with httpx.stream(
        "POST",
        f"{server.api_url}/seq/{path}/agui",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    ) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [frame.json for frame in iter_frames(response) if frame.data]
    validate(events)
    return events


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def text(events: list[dict[str, Any]]) -> str:
    return "".join(e["delta"] for e in events if e["type"] == "TEXT_MESSAGE_CONTENT")


def test_an_llm_step(tenant: Tenant) -> None:
    body = run_input(user("hello big world"))
    events = post(tenant.server, tenant.key, "proto/chat/echo", body)
    assert kinds(events) == [
        "RUN_STARTED",
        "STEP_STARTED",
        "TEXT_MESSAGE_START",
        "TEXT_MESSAGE_CONTENT",
        "TEXT_MESSAGE_CONTENT",
        "TEXT_MESSAGE_CONTENT",
        "TEXT_MESSAGE_END",
        "STEP_FINISHED",
        "STATE_SNAPSHOT",
        "RUN_FINISHED",
    ]
    assert events[0]["threadId"] == "thread-1" and events[0]["runId"] == body["runId"]
    assert text(events) == "hello big world"
    assert events[1]["stepName"] == "say" and events[2]["role"] == "assistant"
    snapshot = events[-2]["snapshot"]
    assert snapshot["outputs"] == {"say": "hello big world"} and uuid.UUID(snapshot["executionId"])
    finished = events[-1]
    assert finished["result"] == "hello big world" and finished["runId"] == body["runId"]
    assert "outcome" not in finished  # absent means success
    assert finished["usage"][0]["outputTokens"] == 3


def test_only_the_answer_step_is_the_message_and_every_step_is_in_the_state(tenant: Tenant) -> None:
    events = post(tenant.server, tenant.key, "proto/chat/chain", run_input(user("hi")))
    assert text(events) == "then first hi" and kinds(events).count("TEXT_MESSAGE_START") == 1
    assert [e["stepName"] for e in events if e["type"] == "STEP_STARTED"] == ["one", "two"]
    snapshots = [e["snapshot"]["outputs"] for e in events if e["type"] == "STATE_SNAPSHOT"]
    assert snapshots == [{"one": "first hi"}, {"one": "first hi", "two": "then first hi"}]


def test_a_template_result_is_one_message_and_forwarded_parameters_are_the_inputs(tenant: Tenant) -> None:
    body = run_input(user("-"), forwardedProps={"parameters": {"name": "Ada"}})
    events = post(tenant.server, tenant.key, "proto/chat/greet", body)
    assert text(events) == '{"greeting":"Hello, Ada!","excited":false}'
    assert events[-1]["result"] == {"greeting": "Hello, Ada!", "excited": False}


def test_a_frontend_tool_pause_and_resume(tenant: Tenant) -> None:
    question = user("weather in Paris?")
    first = post(tenant.server, tenant.key, "proto/chat/agent", run_input(question, tools=[TOOL]))
    assert kinds(first) == [
        "RUN_STARTED",
        "STEP_STARTED",
        "TOOL_CALL_START",
        "TOOL_CALL_ARGS",
        "TOOL_CALL_END",
        "STEP_FINISHED",
        "RUN_FINISHED",
    ]
    start = first[2]
    assert start["toolCallName"] == "get_weather" and start["toolCallId"].startswith("call_nk_")
    assert json.loads(first[3]["delta"]) == {"city": "a"}
    outcome = first[-1]["outcome"]
    assert outcome == {"type": "success", "pendingToolCallIds": [start["toolCallId"]]}

    # The application runs the tool and sends the conversation back with the result.
    call = {
        "id": start["toolCallId"],
        "type": "function",
        "function": {"name": "get_weather", "arguments": "{}"},
    }
    answer = {"id": str(uuid.uuid4()), "role": "tool", "toolCallId": start["toolCallId"], "content": "sunny"}
    assistant = {"id": str(uuid.uuid4()), "role": "assistant", "toolCalls": [call]}
    second = post(
        tenant.server, tenant.key, "proto/chat/agent", run_input(question, assistant, answer, tools=[TOOL])
    )
    assert kinds(second)[:2] == ["RUN_STARTED", "STEP_STARTED"] and second[1]["stepName"] == "agent"
    assert text(second) == "tool results: get_weather=sunny"
    assert "TOOL_CALL_RESULT" not in kinds(second)  # the client sent that result itself
    assert second[-1]["type"] == "RUN_FINISHED" and second[-1]["result"] == text(second)
    assert second[-2]["snapshot"]["outputs"] == {"agent": text(second)}

    # The run is no longer waiting: the same answer again is refused.
    again = httpx.post(
        f"{tenant.server.api_url}/seq/proto/chat/agent/agui",
        json=run_input(question, assistant, answer, tools=[TOOL]),
        headers={"Authorization": f"Bearer {tenant.key}"},
    )
    assert again.status_code == 400 and again.json()["detail"]["code"] == "EXECUTION_ID_INVALID"


def test_server_tools_report_their_results(server: ServerProcess) -> None:
    events = post(server, server.dev_key, "dev/main/counter", run_input(user("a b c")))
    result = next(e for e in events if e["type"] == "TOOL_CALL_RESULT")
    start = next(e for e in events if e["type"] == "TOOL_CALL_START")
    assert result["toolCallId"] == start["toolCallId"] and result["content"] == "1"
    assert start["toolCallName"] == "word_count"


def test_a_failure_is_a_run_error(tenant: Tenant) -> None:
    events = post(tenant.server, tenant.key, "proto/chat/broken", run_input(user("hi")))
    assert kinds(events)[-4:] == ["STATE_SNAPSHOT", "STEP_STARTED", "STEP_FINISHED", "RUN_ERROR"]
    assert events[-1]["code"] == "TEMPLATE_ERROR" and events[-1]["message"]
    assert [e["stepName"] for e in events if e["type"] == "STEP_STARTED"] == ["ok", "boom"]


def test_a_version_path(tenant: Tenant) -> None:
    events = post(tenant.server, tenant.key, "proto/chat/echo/v1", run_input(user("v one")))
    assert text(events) == "v one"


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("proto/chat/nothing", run_input(user("x")), 404, "FLOW_NOT_FOUND"),
        ("proto/chat/echo/v9", run_input(user("x")), 404, "FLOW_NOT_FOUND"),
        ("dev/main/echo", run_input(user("x")), 403, "FORBIDDEN"),
        ("proto/chat/echo", {"runId": "r", "messages": []}, 422, "VALIDATION_ERROR"),
        ("proto/chat/echo", run_input(), 400, "MISSING_MESSAGE"),
        ("proto/chat/echo", {**run_input(user("x")), "messages": [{"id": "1", "role": "wizard"}]}, 422,
         "VALIDATION_ERROR"),
        ("proto/chat/echo", {**run_input(user("x")), "tools": [TOOL]}, 400, "TOOLS_NOT_ENABLED"),
        ("proto/chat/greet", run_input(user("x"), forwardedProps={"parameters": "Ada"}), 422,
         "VALIDATION_ERROR"),
        ("proto/chat/greet", run_input(user("x")), 422, "VALIDATION_ERROR"),
        ("proto/chat/agent", run_input(user("x"), {"id": "t", "role": "tool", "toolCallId": "call_1",
                                                   "content": "x"}), 400, "EXECUTION_ID_INVALID"),
    ],
)  # fmt: skip
def test_refusals(tenant: Tenant, path: str, body: Any, status: int, code: str) -> None:
    response = httpx.post(
        f"{tenant.server.api_url}/seq/{path}/agui",
        json=body,
        headers={"Authorization": f"Bearer {tenant.key}"},
    )
    assert response.status_code == status, response.text
    assert response.json()["detail"]["code"] == code


def test_no_key_is_refused(tenant: Tenant) -> None:
    response = httpx.post(f"{tenant.server.api_url}/seq/proto/chat/echo/agui", json=run_input(user("x")))
    assert response.status_code == 401


@pytest.fixture(scope="module")
def reasoning_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServerProcess, FakeProvider]]:
    with FakeProvider(api_key="sk-right") as fake:
        env = {**_server_env(), "OPENAI_BASE_URL": fake.openai_base_url, "OPENAI_API_KEY": "sk-right"}
        server = ServerProcess(free_port(), tmp_path_factory.mktemp("agui"), env)
        server.start()
        try:
            yield server, fake
        finally:
            server.stop()


def test_reasoning_is_a_reasoning_message(reasoning_server: tuple[ServerProcess, FakeProvider]) -> None:
    server, fake = reasoning_server
    document = {
        "slug": "think",
        "steps": [{"id": "ask", "type": "llm", "model": "openai:gpt-4o-mini", "prompt": "{{ message }}"}],
    }
    server.put_flow(server.dev_key, "dev", "main", document)
    fake.script(Reply(reasoning=["Let me", " think."], chunks=["4", "2"], usage=(5, 2)))
    events = post(server, server.dev_key, "dev/main/think", run_input(user("the answer?")))
    assert kinds(events) == [
        "RUN_STARTED",
        "STEP_STARTED",
        "REASONING_START",
        "REASONING_MESSAGE_START",
        "REASONING_MESSAGE_CONTENT",
        "REASONING_MESSAGE_CONTENT",
        "REASONING_MESSAGE_END",
        "REASONING_END",
        "TEXT_MESSAGE_START",
        "TEXT_MESSAGE_CONTENT",
        "TEXT_MESSAGE_CONTENT",
        "TEXT_MESSAGE_END",
        "STEP_FINISHED",
        "STATE_SNAPSHOT",
        "RUN_FINISHED",
    ]
    reasoning = "".join(e["delta"] for e in events if e["type"] == "REASONING_MESSAGE_CONTENT")
    assert reasoning == "Let me think." and text(events) == "42"
    assert events[-1]["usage"] == [{"inputTokens": 5, "outputTokens": 2, "totalTokens": 7}]


def test_a_resumed_run_may_stop_on_tools_again(server: ServerProcess) -> None:
    """dev/main/assistant has two agent steps: each stops on the frontend tool once."""
    question = user("weather?")
    messages: list[dict[str, Any]] = [question]
    runs = []
    for _ in range(3):
        events = post(server, server.dev_key, "dev/main/assistant", run_input(*messages, tools=[TOOL]))
        runs.append(events)
        pending = events[-1].get("outcome", {}).get("pendingToolCallIds")
        if not pending:
            break
        calls = [
            {"id": i, "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
            for i in pending
        ]
        messages.append({"id": str(uuid.uuid4()), "role": "assistant", "toolCalls": calls})
        messages += [
            {"id": str(uuid.uuid4()), "role": "tool", "toolCallId": i, "content": "sunny"} for i in pending
        ]
    assert len(runs) == 3
    second = runs[1]
    assert [e.get("stepName") for e in second if e["type"] == "STEP_STARTED"] == ["agent", "follow_up"]
    assert (
        second[-1]["outcome"]["type"] == "success" and len(second[-1]["outcome"]["pendingToolCallIds"]) == 1
    )
    assert runs[0][-1]["outcome"]["pendingToolCallIds"] != second[-1]["outcome"]["pendingToolCallIds"]
    assert text(runs[2]) == "tool results: get_weather=sunny"
    assert set(runs[2][-2]["snapshot"]["outputs"]) == {"prepare", "agent", "follow_up"}


COUNTER = {
    "slug": "counted",
    "steps": [{"id": "say", "type": "template", "template": "{{ messages | length }} {{ message }}"}],
}


def _thread_messages(tenant: Tenant, thread_id: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{tenant.server.api_url}/threads/{thread_id}/messages",
        headers={"Authorization": f"Bearer {tenant.key}"},
    )
    assert response.status_code == 200, response.text
    return [m["message"] for m in response.json()["messages"]]


def test_a_uuid_thread_id_is_a_server_thread_seeded_by_the_first_request(tenant: Tenant) -> None:
    """The first request's messages become the thread's history; later requests are turns of it,
    whatever history the client sends along (here a stale one, which the server ignores)."""
    tenant.server.put_flow(tenant.key, tenant.org, tenant.project, COUNTER)
    thread_id = str(uuid.uuid4())
    earlier = [user("hi"), {"id": str(uuid.uuid4()), "role": "assistant", "content": "hello"}]
    first = post(
        tenant.server,
        tenant.key,
        "proto/chat/counted/v0",
        run_input(*earlier, user("one"), threadId=thread_id),
    )
    assert first[0]["threadId"] == thread_id and text(first) == "3 one"
    second = post(
        tenant.server, tenant.key, "proto/chat/counted/v0", run_input(user("two"), threadId=thread_id)
    )
    assert text(second) == "5 two"  # hi, hello, one, its answer, two
    assert _thread_messages(tenant, thread_id) == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "3 one"},
        {"role": "user", "content": "two"},
        {"role": "assistant", "content": "5 two"},
    ]


def test_a_thread_id_that_is_not_a_uuid_keeps_nothing(tenant: Tenant) -> None:
    tenant.server.put_flow(tenant.key, tenant.org, tenant.project, COUNTER)
    for word in ("one", "two"):
        events = post(
            tenant.server, tenant.key, "proto/chat/counted/v0", run_input(user(word), threadId="chat-7")
        )
        assert text(events) == f"1 {word}"


def test_another_tenants_thread_id_is_not_found(tenant: Tenant) -> None:
    other = tenant.server.create_key("elsewhere")
    tenant.server.put_flow(other, "elsewhere", "main", COUNTER)
    thread_id = str(uuid.uuid4())
    post(tenant.server, other, "elsewhere/main/counted/v0", run_input(user("mine"), threadId=thread_id))
    response = httpx.post(
        f"{tenant.server.api_url}/seq/proto/chat/echo/agui",
        json=run_input(user("x"), threadId=thread_id),
        headers={"Authorization": f"Bearer {tenant.key}"},
    )
    assert response.status_code == 404 and response.json()["detail"]["code"] == "THREAD_NOT_FOUND"
