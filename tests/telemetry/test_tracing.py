"""Spans of the real engine (builtin models, default tools) recorded in memory: names, parentage,
GenAI attributes, retries, tool calls, content only as the flow's capture mode allows, the
workflow span's stored ids, and log lines carrying the trace id."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import orjson
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode, format_span_id, format_trace_id

from noukai_server import logs
from noukai_server.engine import (
    Completed,
    FlowEngine,
    PausedForTools,
    RunInputs,
    RunState,
    default_functions,
    default_tools,
)
from noukai_server.flows import TemplateEngine, load_flow
from noukai_server.providers import ModelRegistry, ProviderSettings
from noukai_server.telemetry import semconv as sc
from noukai_server.telemetry import tracing
from noukai_server.telemetry.trace_context import new_run_trace
from tests.engine.conftest import Harness, MemorySink

pytestmark = pytest.mark.anyio
T = TypeVar("T")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def harness() -> Harness:
    """The engine tests' harness, with the default server tools."""
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    models = ModelRegistry(ProviderSettings())
    engine = FlowEngine(
        models, default_functions(), TemplateEngine(), sleep=sleep, jitter=lambda: 0.5, tools=default_tools()
    )
    return Harness(engine, sleeps)


@pytest.fixture
def exported(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    monkeypatch.delenv(tracing.CONTENT_SWITCH, raising=False)
    exporter = InMemorySpanExporter()
    assert tracing.start(processor=SimpleSpanProcessor(exporter))
    try:
        yield exporter
    finally:
        tracing.shutdown()


@dataclass
class Run:
    """The columns of a run the tracing hooks read (a `RunRecord` in the server)."""

    traceparent: str | None
    trace_parent_span_id: str | None = None
    id: str = "9b1c3a52-0000-4000-8000-000000000001"
    org_id: str = "dev"
    project_id: str = "p-1"
    flow_id: str = "f-1"
    flow_version: int = 3
    document: dict[str, Any] = field(default_factory=lambda: {"slug": "grader"})
    trigger_type: str = "execute"
    attempt: int = 1
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC) - timedelta(seconds=2))
    session_id: str | None = None
    thread_id: str | None = "thread-1"


def new_run(incoming: str | None = None) -> Run:
    trace = new_run_trace(incoming, tracing_on=True)
    assert trace is not None
    return Run(trace.span.traceparent(), trace.parent_span_id)


async def in_run(run: Run, body: Callable[[], Awaitable[T]]) -> T:
    """`body` in a task of its own bound to `run`, as the worker runs each run."""

    async def task() -> T:
        tracing.bind_run(run)
        return await body()

    return await asyncio.create_task(task())


def by_name(spans: tuple[ReadableSpan, ...] | list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def ids(run: Run) -> tuple[int, int]:
    _, trace_id, span_id, _ = str(run.traceparent).split("-")
    return int(trace_id, 16), int(span_id, 16)


def llm_flow(capture: str = "full", **extra: Any) -> dict[str, Any]:
    return {
        "slug": "grader",
        "trace_capture_mode": capture,
        **extra,
        "steps": [
            {
                "id": "ask",
                "type": "llm",
                "model": "builtin:echo",
                "system": "Be brief.",
                "prompt": "{{ message }}",
            },
            {"id": "shape", "type": "template", "template": "{{ steps.ask.output }}!"},
        ],
    }


async def test_an_llm_step_is_a_step_span_with_a_chat_span_under_the_run(
    harness: Harness, exported: InMemorySpanExporter
) -> None:
    run = new_run()
    outcome, _, _ = await in_run(run, lambda: harness.run(llm_flow(), message="hello there"))
    assert outcome == Completed("hello there!")
    tracing.end_run(run, "completed")
    spans = exported.get_finished_spans()
    trace_id, run_span_id = ids(run)
    assert {span.context.trace_id for span in spans} == {trace_id}

    [step] = by_name(spans, "step ask")
    assert step.parent is not None and step.parent.span_id == run_span_id and step.parent.is_remote
    attributes = dict(step.attributes or {})
    assert attributes[sc.STEP_ID] == "ask" and attributes[sc.STEP_TYPE] == "llm"
    assert attributes[sc.STEP_ATTEMPT] == 1 and attributes[sc.STEP_OUTCOME] == "completed"
    assert attributes[sc.GEN_AI_PROVIDER_NAME] == "builtin" and attributes[sc.GEN_AI_REQUEST_MODEL] == "echo"

    [chat] = by_name(spans, "chat echo")
    assert chat.parent is not None and chat.parent.span_id == step.context.span_id
    chat_attributes = dict(chat.attributes or {})
    assert chat_attributes[sc.GEN_AI_OPERATION_NAME] == "chat"
    assert chat_attributes[sc.GEN_AI_PROVIDER_NAME] == "builtin"
    assert chat_attributes[sc.GEN_AI_REQUEST_MODEL] == "echo"
    prompt_tokens = chat_attributes[sc.GEN_AI_USAGE_INPUT_TOKENS]
    assert isinstance(prompt_tokens, int) and prompt_tokens > 0
    assert chat_attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 2
    messages = orjson.loads(str(chat_attributes[sc.GEN_AI_INPUT_MESSAGES]))
    assert messages == [{"role": "user", "parts": [{"type": "text", "content": "hello there"}]}]
    assert orjson.loads(str(chat_attributes[sc.GEN_AI_SYSTEM_INSTRUCTIONS])) == [
        {"type": "text", "content": "Be brief."}
    ]
    [answer] = orjson.loads(str(chat_attributes[sc.GEN_AI_OUTPUT_MESSAGES]))
    assert answer["role"] == "assistant" and answer["parts"] == [{"type": "text", "content": "hello there"}]

    [template] = by_name(spans, "step shape")
    assert template.parent is not None and template.parent.span_id == run_span_id
    assert sc.GEN_AI_OPERATION_NAME not in (template.attributes or {})

    [workflow] = by_name(spans, "invoke_workflow grader")
    assert (workflow.context.trace_id, workflow.context.span_id) == (trace_id, run_span_id)
    assert workflow.parent is None  # no caller's traceparent: the trace's root
    assert workflow.start_time == int(run.created_at.timestamp() * 1e9)
    assert workflow.start_time is not None and step.start_time is not None
    assert workflow.start_time < step.start_time
    workflow_attributes = dict(workflow.attributes or {})
    assert workflow_attributes[sc.GEN_AI_OPERATION_NAME] == "invoke_workflow"
    assert workflow_attributes[sc.GEN_AI_WORKFLOW_NAME] == "grader"
    assert workflow_attributes[sc.RUN_ID] == run.id and workflow_attributes[sc.RUN_STATUS] == "completed"
    assert workflow_attributes[sc.GEN_AI_CONVERSATION_ID] == "thread-1"
    assert workflow.status.status_code is StatusCode.UNSET


async def test_the_workflow_span_is_a_child_of_the_callers_span(exported: InMemorySpanExporter) -> None:
    caller_trace, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    run = new_run(f"00-{caller_trace}-{caller_span}-01")
    tracing.end_run(run, "failed", "PROVIDER_TIMEOUT", "the provider did not answer")
    [workflow] = exported.get_finished_spans()
    assert format_trace_id(workflow.context.trace_id) == caller_trace
    assert format_span_id(workflow.context.span_id) == str(run.traceparent).split("-")[2]
    assert workflow.parent is not None and format_span_id(workflow.parent.span_id) == caller_span
    assert workflow.status.status_code is StatusCode.ERROR
    assert workflow.status.description == "the provider did not answer"
    assert (workflow.attributes or {})[sc.ERROR_TYPE] == "PROVIDER_TIMEOUT"


async def test_an_unsampled_caller_means_no_spans(harness: Harness, exported: InMemorySpanExporter) -> None:
    run = new_run("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
    await in_run(run, lambda: harness.run(llm_flow()))
    tracing.end_run(run, "completed")
    assert exported.get_finished_spans() == ()


async def test_a_retried_step_has_one_span_per_attempt(
    harness: Harness, exported: InMemorySpanExporter
) -> None:
    flow = {
        "slug": "flaky",
        "steps": [
            {
                "id": "ask",
                "type": "llm",
                "model": "builtin:flaky",
                "prompt": "hi",
                "params": {"fail_times": 1},
            }
        ],
    }
    run = new_run()
    outcome, _, _ = await in_run(run, lambda: harness.run(flow))
    assert isinstance(outcome, Completed)
    first, second = sorted(
        by_name(exported.get_finished_spans(), "step ask"), key=lambda s: s.start_time or 0
    )
    assert [(s.attributes or {})[sc.STEP_ATTEMPT] for s in (first, second)] == [1, 2]
    assert first.status.status_code is StatusCode.ERROR
    assert (first.attributes or {})[sc.ERROR_TYPE] == "PROVIDER_ERROR"
    assert (first.attributes or {})[sc.STEP_OUTCOME] == "failed"
    assert second.status.status_code is StatusCode.UNSET
    assert (second.attributes or {})[sc.STEP_OUTCOME] == "completed"
    chats = by_name(exported.get_finished_spans(), "chat flaky")
    failed_chat = next(c for c in chats if c.parent is not None and c.parent.span_id == first.context.span_id)
    assert (failed_chat.attributes or {})[sc.ERROR_TYPE] == "PROVIDER_ERROR"


async def test_an_agent_step_with_a_server_tool(harness: Harness, exported: InMemorySpanExporter) -> None:
    flow = {
        "slug": "helper",
        "steps": [
            {
                "id": "agent",
                "name": "Calculator",
                "type": "agent",
                "model": "builtin:test",
                "prompt": "add things",
                "tools": ["add"],
            }
        ],
    }
    run = new_run()
    outcome, _, _ = await in_run(run, lambda: harness.run(flow))
    assert isinstance(outcome, Completed)
    spans = exported.get_finished_spans()
    [agent] = by_name(spans, "invoke_agent Calculator")
    attributes = dict(agent.attributes or {})
    assert attributes[sc.GEN_AI_OPERATION_NAME] == "invoke_agent"
    assert attributes[sc.GEN_AI_AGENT_NAME] == "Calculator"
    assert attributes[sc.GEN_AI_REQUEST_MODEL] == "test"
    chats = by_name(spans, "chat test")
    assert len(chats) == 2
    assert all(c.parent is not None and c.parent.span_id == agent.context.span_id for c in chats)
    [tool] = by_name(spans, "execute_tool add")
    assert tool.parent is not None and tool.parent.span_id == agent.context.span_id
    tool_attributes = dict(tool.attributes or {})
    assert tool_attributes[sc.GEN_AI_OPERATION_NAME] == "execute_tool"
    assert tool_attributes[sc.GEN_AI_TOOL_NAME] == "add" and tool_attributes[sc.TOOL_SIDE] == "server"
    assert str(tool_attributes[sc.GEN_AI_TOOL_CALL_ID])
    assert set(orjson.loads(str(tool_attributes[sc.GEN_AI_TOOL_CALL_ARGUMENTS]))) == {"a", "b"}
    assert sc.GEN_AI_TOOL_CALL_RESULT in tool_attributes
    first_chat = min(chats, key=lambda c: c.start_time or 0)
    [asked] = orjson.loads(str((first_chat.attributes or {})[sc.GEN_AI_OUTPUT_MESSAGES]))
    assert asked["parts"][0]["type"] == "tool_call" and asked["parts"][0]["name"] == "add"


async def test_a_failing_tool_is_an_error_span(harness: Harness, exported: InMemorySpanExporter) -> None:
    harness.engine.tools.register(_broken, name="broken")  # type: ignore[attr-defined]  # a ToolRegistry
    flow = {
        "slug": "helper",
        "steps": [
            {"id": "agent", "type": "agent", "model": "builtin:test", "prompt": "go", "tools": ["broken"]}
        ],
    }
    run = new_run()
    outcome, _, _ = await in_run(run, lambda: harness.run(flow))
    assert isinstance(outcome, Completed)  # the error went back to the model
    [tool] = by_name(exported.get_finished_spans(), "execute_tool broken")
    assert tool.status.status_code is StatusCode.ERROR
    assert (tool.attributes or {})[sc.ERROR_TYPE] == sc.TOOL_ERROR


def _broken(text: str) -> str:
    raise RuntimeError("out of order")


async def test_a_client_tool_pause_and_resume(harness: Harness, exported: InMemorySpanExporter) -> None:
    flow = {
        "slug": "client",
        "steps": [{"id": "agent", "type": "agent", "model": "builtin:test", "prompt": "go"}],
    }
    tool = {
        "type": "function",
        "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
    }
    run = new_run()
    state = RunState()
    inputs = RunInputs(message="hi", tools=[tool])
    spec = harness_spec(flow)
    paused = await in_run(run, lambda: harness.engine.run(spec, inputs, state, MemorySink(), run={"id": "r"}))
    assert isinstance(paused, PausedForTools)
    [pending] = paused.pause["pending"]
    assert state.agent is not None
    state.agent = {**state.agent, "results": [{"tool_call_id": pending["id"], "content": "found"}]}
    resumed = await in_run(
        run, lambda: harness.engine.run(spec, inputs, state, MemorySink(), run={"id": "r"})
    )
    assert isinstance(resumed, Completed)
    spans = exported.get_finished_spans()
    first, second = sorted(by_name(spans, "invoke_agent agent"), key=lambda s: s.start_time or 0)
    assert (first.attributes or {})[sc.STEP_OUTCOME] == "paused_for_tools"
    assert first.status.status_code is StatusCode.UNSET
    assert (second.attributes or {})[sc.STEP_RESUMED] is True
    assert (second.attributes or {})[sc.STEP_ATTEMPT] == 1
    [client] = by_name(spans, "execute_tool lookup")
    assert (client.attributes or {})[sc.TOOL_SIDE] == "client"
    assert (client.attributes or {})[sc.GEN_AI_TOOL_CALL_ID] == pending["id"]
    assert client.parent is not None and client.parent.span_id == second.context.span_id
    assert client.start_time is not None and second.start_time is not None
    assert client.start_time <= second.start_time  # from the pause, before the resumed attempt


def harness_spec(document: dict[str, Any]) -> Any:
    return load_flow(document, known_functions=set(default_functions().names()))


CONTENT = (
    sc.GEN_AI_INPUT_MESSAGES,
    sc.GEN_AI_OUTPUT_MESSAGES,
    sc.GEN_AI_SYSTEM_INSTRUCTIONS,
    sc.GEN_AI_TOOL_CALL_ARGUMENTS,
    sc.GEN_AI_TOOL_CALL_RESULT,
)


def agent_flow(capture: str, **extra: Any) -> dict[str, Any]:
    step = {"id": "a", "type": "agent", "model": "builtin:test", "system": "S", "prompt": "{{ message }}"}
    return {"slug": "c", "trace_capture_mode": capture, **extra, "steps": [{**step, "tools": ["word_count"]}]}


@pytest.mark.parametrize("capture", ["off", "metadata_only"])
async def test_no_content_when_the_capture_mode_forbids_it(
    harness: Harness, exported: InMemorySpanExporter, capture: str
) -> None:
    run = new_run()
    await in_run(run, lambda: harness.run(agent_flow(capture), message="secret plan"))
    spans = exported.get_finished_spans()
    assert {"chat test", "execute_tool word_count", "invoke_agent a"} <= {s.name for s in spans}
    for span in spans:
        attributes = dict(span.attributes or {})
        assert not set(CONTENT) & set(attributes), span.name
        assert "secret plan" not in orjson.dumps(attributes, default=str).decode()
    usage = [(s.attributes or {}).get(sc.GEN_AI_USAGE_INPUT_TOKENS) for s in by_name(spans, "chat test")]
    assert usage and all(isinstance(tokens, int) and tokens > 0 for tokens in usage)  # metadata is kept


async def test_redacted_content_is_redacted(harness: Harness, exported: InMemorySpanExporter) -> None:
    run = new_run()
    secret = "sk-abcdefghijklmnop"
    await in_run(run, lambda: harness.run(agent_flow("redacted"), message=f"use {secret} now"))
    spans = exported.get_finished_spans()
    text = orjson.dumps([dict(s.attributes or {}) for s in spans], default=str).decode()
    assert secret not in text
    assert "[redacted]" in text and "use" in text  # content is kept, the secret is masked


async def test_the_content_switch_turns_content_off(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    exporter = InMemorySpanExporter()
    assert tracing.start({tracing.CONTENT_SWITCH: "false"}, processor=SimpleSpanProcessor(exporter))
    try:
        await in_run(new_run(), lambda: harness.run(agent_flow("full"), message="private"))
    finally:
        tracing.shutdown()
    spans = exporter.get_finished_spans()
    assert spans
    assert not any(set(CONTENT) & set(s.attributes or {}) for s in spans)


async def test_off_nothing_is_recorded_and_the_hooks_are_shared_no_ops(harness: Harness) -> None:
    assert not tracing.enabled()
    assert not tracing.start({})  # no OTEL_* variable: stays off
    run = new_run()
    outcome, _, _ = await in_run(run, lambda: harness.run(llm_flow()))
    assert isinstance(outcome, Completed)
    tracing.end_run(run, "completed")  # nothing to emit to, and no error
    flow, step = harness_spec(llm_flow()), harness_spec(llm_flow()).steps[0]
    assert tracing.step_attempt(flow, step, 0, 1) is tracing.step_attempt(flow, step, 1, 2)


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.addFilter(logs.ContextFilter())
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def lines() -> Iterator[Lines]:
    handler = Lines()
    logger = logging.getLogger("noukai.test_tracing")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


async def test_log_lines_carry_the_span_or_the_runs_trace(
    harness: Harness, exported: InMemorySpanExporter, lines: Lines
) -> None:
    logger = logging.getLogger("noukai.test_tracing")
    run = new_run()
    trace_id = str(run.traceparent).split("-")[1]

    async def body() -> None:
        logger.info("in the run")  # only the run's (non-recording) span is current
        flow = harness_spec(llm_flow())
        with tracing.step_attempt(flow, flow.steps[0], 0, 1):
            logger.info("in a step")

    await in_run(run, body)
    logger.info("outside")
    in_run_line, in_step, outside = lines.records
    assert (in_run_line.trace_id, in_run_line.span_id) == (trace_id, None)  # type: ignore[attr-defined]
    [step] = by_name(exported.get_finished_spans(), "step ask")
    assert in_step.trace_id == trace_id  # type: ignore[attr-defined]
    assert in_step.span_id == format_span_id(step.context.span_id)  # type: ignore[attr-defined]
    assert (outside.trace_id, outside.span_id) == (None, None)  # type: ignore[attr-defined]
    assert f'"trace_id":"{trace_id}"' in logs.JsonFormatter().format(in_step)


async def test_with_tracing_off_log_lines_still_name_the_callers_trace(lines: Lines) -> None:
    """A caller's `traceparent` is kept on the run even when this server exports nothing."""
    trace = new_run_trace("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", tracing_on=False)
    assert trace is not None and not tracing.enabled()
    run = Run(trace.span.traceparent(), trace.parent_span_id)

    async def body() -> None:
        logging.getLogger("noukai.test_tracing").info("hello")

    await in_run(run, body)
    [line] = lines.records
    assert line.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"  # type: ignore[attr-defined]
    assert line.span_id is None  # type: ignore[attr-defined]
