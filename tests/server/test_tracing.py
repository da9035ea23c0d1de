"""OpenTelemetry traces from a real `noukai serve`, received over OTLP/HTTP by the test: one trace
per run, GenAI span names and attributes, parentage, the caller's `traceparent`, the run info's
`traceId`, trace ids in the log, and nothing exported when the `OTEL_*` variables ask for nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from noukai_server.telemetry import semconv as sc
from tests.conftest import ServerProcess, _server_env, free_port
from tests.fakeprovider import FakeProvider, Reply
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.server.test_execute_api import post
from tests.server.test_tools_api import WEATHER

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
ERROR = 2  # OTLP Status.STATUS_CODE_ERROR
CLIENT = 3  # OTLP Span.SPAN_KIND_CLIENT


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    with FakeProvider() as provider:
        yield provider


@pytest.fixture(scope="module")
def traced(
    tmp_path_factory: pytest.TempPathFactory, receiver: OtlpReceiver, fake: FakeProvider
) -> Iterator[ServerProcess]:
    """A server exporting to the receiver, with an OpenAI-compatible provider (the fake)."""
    env = {
        **_server_env(),
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test",
        "OPENAI_BASE_URL": fake.openai_base_url,
        "OPENAI_API_KEY": fake.api_key or "sk-any",
    }
    env.pop("OTEL_SERVICE_NAME", None)
    server = ServerProcess(free_port(), tmp_path_factory.mktemp("traced"), env, ("--log-format", "json"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def put(server: ServerProcess, document: dict[str, Any]) -> str:
    slug = f"{document['slug']}-{uuid.uuid4().hex[:8]}"
    server.put_flow(server.dev_key, "dev", "main", {**document, "slug": slug})
    return slug


def run_info(server: ServerProcess, run_id: str) -> dict[str, Any]:
    response = httpx.get(
        f"{server.api_url}/runs/{run_id}", headers={"Authorization": f"Bearer {server.dev_key}"}
    )
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def of_trace(receiver: OtlpReceiver, trace_id: str, workflow: str) -> list[ReceivedSpan]:
    """The trace's spans, once its workflow span (the last one emitted) has arrived."""
    spans = receiver.wait_for(lambda spans: any(s.trace_id == trace_id and s.name == workflow for s in spans))
    return [s for s in spans if s.trace_id == trace_id]


def one(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


def test_an_llm_step_under_the_callers_trace(
    traced: ServerProcess, receiver: OtlpReceiver, fake: FakeProvider
) -> None:
    slug = put(
        traced,
        {
            "slug": "ask",
            "steps": [
                {"id": "ask", "type": "llm", "model": "openai:gpt-4o-mini", "prompt": "{{ message }}"},
                {"id": "shape", "type": "template", "template": "<{{ steps.ask.output }}>"},
            ],
        },
    )
    fake.script(Reply(chunks=["Hel", "lo"], usage=(7, 2)))
    header = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
    response = post(
        traced, f"/seq/dev/main/{slug}/execute", {"message": "hi"}, headers={"traceparent": header}
    )
    assert response.status_code == 200, response.text
    run_id = response.json()["executionId"]
    assert run_info(traced, run_id)["traceId"] == CALLER_TRACE

    spans = of_trace(receiver, CALLER_TRACE, f"invoke_workflow {slug}")
    workflow = one(spans, f"invoke_workflow {slug}")
    assert workflow.parent_span_id == CALLER_SPAN
    assert workflow.attributes[sc.RUN_ID] == run_id
    assert workflow.attributes[sc.GEN_AI_OPERATION_NAME] == "invoke_workflow"
    assert workflow.attributes[sc.RUN_STATUS] == "completed"
    assert workflow.resource["service.name"] == "noukai"
    assert workflow.resource["deployment.environment"] == "test"

    step = one(spans, "step ask")
    assert step.parent_span_id == workflow.span_id
    assert step.attributes[sc.STEP_ATTEMPT] == 1
    assert workflow.start_ns <= step.start_ns and step.end_ns <= workflow.end_ns
    chat = one(spans, "chat gpt-4o-mini")
    assert chat.parent_span_id == step.span_id and chat.kind == CLIENT
    assert chat.attributes[sc.GEN_AI_OPERATION_NAME] == "chat"
    assert chat.attributes[sc.GEN_AI_PROVIDER_NAME] == "openai"
    assert chat.attributes[sc.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"
    assert chat.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == 7
    assert chat.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 2
    assert chat.attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ["stop"]
    assert orjson.loads(chat.attributes[sc.GEN_AI_INPUT_MESSAGES])[0]["parts"][0]["content"] == "hi"
    assert one(spans, "step shape").parent_span_id == workflow.span_id

    # The run's log lines carry its trace id (JSON log).
    lines = [orjson.loads(line) for line in traced.log_text().splitlines() if line.startswith("{")]
    of_run = [line for line in lines if line.get("run_id") == run_id]
    assert of_run and all(line.get("trace_id") == CALLER_TRACE for line in of_run)


def test_an_agent_step_with_a_tool_call_is_a_trace_of_its_own(
    traced: ServerProcess, receiver: OtlpReceiver
) -> None:
    slug = put(
        traced,
        {
            "slug": "calc",
            "steps": [
                {"id": "agent", "type": "agent", "model": "builtin:test", "prompt": "add", "tools": ["add"]}
            ],
        },
    )
    response = post(traced, f"/seq/dev/main/{slug}/execute", {"message": "go"})
    assert response.status_code == 200, response.text
    trace_id = run_info(traced, response.json()["executionId"])["traceId"]
    assert isinstance(trace_id, str) and len(trace_id) == 32 and trace_id != CALLER_TRACE

    spans = of_trace(receiver, trace_id, f"invoke_workflow {slug}")
    workflow = one(spans, f"invoke_workflow {slug}")
    assert workflow.parent_span_id is None
    agent = one(spans, "invoke_agent agent")
    assert agent.parent_span_id == workflow.span_id
    assert agent.attributes[sc.GEN_AI_AGENT_NAME] == "agent"
    tool = one(spans, "execute_tool add")
    assert tool.parent_span_id == agent.span_id
    assert tool.attributes[sc.GEN_AI_TOOL_NAME] == "add" and tool.attributes[sc.GEN_AI_TOOL_CALL_ID]
    chats = [s for s in spans if s.name == "chat test"]
    assert len(chats) == 2 and all(c.parent_span_id == agent.span_id for c in chats)


def test_a_retried_step_has_a_span_per_attempt(traced: ServerProcess, receiver: OtlpReceiver) -> None:
    slug = put(
        traced,
        {
            "slug": "flaky",
            "retry": {"initial_backoff_seconds": 0.01, "max_backoff_seconds": 0.05},
            "steps": [
                {
                    "id": "ask",
                    "type": "llm",
                    "model": "builtin:flaky",
                    "prompt": "x",
                    "params": {"fail_times": 1},
                }
            ],
        },
    )
    response = post(traced, f"/seq/dev/main/{slug}/execute", {"message": "go"})
    assert response.status_code == 200, response.text
    trace_id = run_info(traced, response.json()["executionId"])["traceId"]
    spans = of_trace(receiver, trace_id, f"invoke_workflow {slug}")
    workflow = one(spans, f"invoke_workflow {slug}")
    first, second = sorted((s for s in spans if s.name == "step ask"), key=lambda s: s.start_ns)
    assert [first.attributes[sc.STEP_ATTEMPT], second.attributes[sc.STEP_ATTEMPT]] == [1, 2]
    assert first.status_code == ERROR and first.attributes[sc.ERROR_TYPE] == "PROVIDER_ERROR"
    assert second.status_code != ERROR
    assert first.parent_span_id == second.parent_span_id == workflow.span_id


def test_a_run_cancelled_while_waiting_for_tools_still_ends_its_trace(
    traced: ServerProcess, receiver: OtlpReceiver
) -> None:
    response = post(traced, "/seq/dev/main/assistant/execute", {"message": "weather?", "tools": [WEATHER]})
    assert response.status_code == 200 and response.json()["status"] == "tool_calls_required", response.text
    run_id = response.json()["executionId"]
    assert post(traced, f"/runs/{run_id}/cancel").status_code == 200
    trace_id = run_info(traced, run_id)["traceId"]
    spans = of_trace(receiver, trace_id, "invoke_workflow assistant")
    workflow = one(spans, "invoke_workflow assistant")
    assert workflow.status_code == ERROR and workflow.attributes[sc.ERROR_TYPE] == "RUN_CANCELLED"
    agent = one(spans, "invoke_agent agent")
    assert agent.parent_span_id == workflow.span_id
    assert agent.attributes[sc.STEP_OUTCOME] == "paused_for_tools"


@pytest.mark.parametrize("protocol", ["openai", "agui"])
def test_the_protocol_routes_take_the_callers_trace(
    traced: ServerProcess, receiver: OtlpReceiver, protocol: str
) -> None:
    """OpenAI chat completions and AG-UI runs join the caller's trace as `/execute` runs do."""
    slug = put(traced, {"slug": f"proto-{protocol}", "steps": [ECHO_STEP]})
    caller_trace = uuid.uuid4().hex
    headers = {
        "Authorization": f"Bearer {traced.dev_key}",
        "traceparent": f"00-{caller_trace}-{CALLER_SPAN}-01",
    }
    message = {"role": "user", "content": "traced"}
    if protocol == "openai":
        body: dict[str, Any] = {"model": f"dev/main/{slug}", "messages": [message]}
        url = f"{traced.base_url}/openai/v1/chat/completions"
    else:
        body = {
            "threadId": "t-1",
            "runId": str(uuid.uuid4()),
            "messages": [{"id": "m-1", **message}],
            "tools": [],
            "state": {},
            "context": [],
            "forwardedProps": {},
        }
        url = f"{traced.api_url}/seq/dev/main/{slug}/agui"
    response = httpx.post(url, json=body, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    workflow = one(of_trace(receiver, caller_trace, f"invoke_workflow {slug}"), f"invoke_workflow {slug}")
    assert workflow.parent_span_id == CALLER_SPAN
    assert workflow.attributes[sc.RUN_STATUS] == "completed"


ECHO_STEP = {"id": "say", "type": "llm", "model": "builtin:echo", "prompt": "{{ message }}"}


def test_with_tracing_asked_off_nothing_is_exported(make_server: Any, receiver: OtlpReceiver) -> None:
    """`OTEL_TRACES_EXPORTER=none` wins over an endpoint: runs work, no span leaves, and the run
    info names only a caller's trace."""
    server = make_server(
        env={"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_TRACES_EXPORTER": "none"}
    )
    before = receiver.requests
    response = post(server, "/seq/dev/main/echo/execute", {"message": "quiet"})
    assert response.status_code == 200, response.text
    assert run_info(server, response.json()["executionId"])["traceId"] is None
    header = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
    kept = post(server, "/seq/dev/main/echo/execute", {"message": "x"}, headers={"traceparent": header})
    assert run_info(server, kept.json()["executionId"])["traceId"] == CALLER_TRACE
    server.stop()  # shutting down flushes whatever a tracer had buffered
    assert receiver.requests == before
    assert all(s.attributes.get(sc.RUN_ID) != response.json()["executionId"] for s in receiver.snapshot())
