"""OpenTelemetry traces of runs: set-up from the standard `OTEL_*` variables, and the spans.

Off unless `trace_context.tracing_configured()` (an OTLP endpoint or a traces exporter is named):
then `start` installs nothing and every hook below returns after one test of the module's `_state`,
handing back a shared do-nothing context manager.

When on, every process that executes runs (`noukai serve`, `noukai worker`) has one SDK
`BatchSpanProcessor` (`OTEL_BSP_*`) in front of the SDK's OTLP/HTTP exporter
(`OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`, `_HEADERS`, `_TIMEOUT`, `_COMPRESSION`; with a leaner
encoder, `tracing_otlp`) or the console (`OTEL_TRACES_EXPORTER=console`), and a resource from
`OTEL_RESOURCE_ATTRIBUTES` / `OTEL_SERVICE_NAME` (default service name `noukai`).

A run's trace is fixed when the run is created (`trace_context`): its trace id and the span id of
its workflow span are stored on it. A run can move between processes (a crash, a resume after a
client-tool pause), so no process keeps its workflow span open: each step attempt's span is the
child of the stored workflow span id, and the process that ends the run emits the workflow span
then (`end_run`), started at the run's creation, with the stored ids.

The spans are the SDK's `ReadableSpan`s handed to the SDK's span processor, but made here rather
than by an SDK `Tracer`: the tracer's spans validate every attribute through locks and generic
checks, about 45 µs a span against 8 µs for these (our attributes are known, primitive values),
which was most of what tracing cost a run. So the ids come straight from the stored run (no id
generator trick for the workflow span), a span's parent is the current one in `_current` (a
context variable, inherited by the tasks a run starts), and a trace is recorded when its sampled
flag says so: the caller's decision from its `traceparent`, else always (`OTEL_TRACES_SAMPLER` is
not consulted; sample in the collector). String attributes are cut to
`OTEL_[SPAN_]ATTRIBUTE_VALUE_LENGTH_LIMIT` characters when it is set.

Content (messages, tool arguments and results) is recorded only when the flow's
`trace_capture_mode` keeps content (`full`, or `redacted` with the engine's redaction applied), and
`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=false` turns it off for the whole server. Never
headers, keys or provider settings.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, Protocol

import orjson
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    format_span_id,
    format_trace_id,
)

from noukai_server import __version__, logs
from noukai_server.telemetry import semconv as sc
from noukai_server.telemetry.trace_context import SpanRef, stored_run_trace, tracing_configured

logger = logging.getLogger("noukai.tracing")

CONTENT_SWITCH: Final = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_CONTENT_MODES: Final = frozenset({"full", "redacted"})

# -- what the hooks are given (structural, so that telemetry imports nothing of the engine) -------


class TracedRun(Protocol):
    """The run columns the workflow span is made of (a `store.RunRecord`)."""

    @property
    def id(self) -> str: ...
    @property
    def org_id(self) -> str: ...
    @property
    def project_id(self) -> str: ...
    @property
    def flow_id(self) -> str: ...
    @property
    def flow_version(self) -> int: ...
    @property
    def document(self) -> dict[str, Any]: ...
    @property
    def trigger_type(self) -> str: ...
    @property
    def attempt(self) -> int: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def session_id(self) -> str | None: ...
    @property
    def thread_id(self) -> str | None: ...
    @property
    def traceparent(self) -> str | None: ...
    @property
    def trace_parent_span_id(self) -> str | None: ...


class TracedFlow(Protocol):
    @property
    def trace_capture_mode(self) -> str: ...
    @property
    def redact_fields(self) -> Sequence[str]: ...


class TracedStep(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def name(self) -> str | None: ...


class _ToolCall(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def arguments(self) -> str: ...


class _Message(Protocol):
    @property
    def role(self) -> str: ...
    @property
    def content(self) -> str | None: ...
    @property
    def tool_calls(self) -> Sequence[_ToolCall]: ...
    @property
    def tool_call_id(self) -> str | None: ...


class _Request(Protocol):
    """A `providers.ModelRequest`."""

    @property
    def model(self) -> str: ...
    @property
    def messages(self) -> Sequence[_Message]: ...
    @property
    def system(self) -> str | None: ...
    @property
    def temperature(self) -> float | None: ...
    @property
    def max_tokens(self) -> int | None: ...


class _Usage(Protocol):
    @property
    def prompt_tokens(self) -> int: ...
    @property
    def completion_tokens(self) -> int: ...


class _Response(Protocol):
    """A `providers.ModelResponse`."""

    @property
    def text(self) -> str: ...
    @property
    def tool_calls(self) -> Sequence[_ToolCall]: ...
    @property
    def usage(self) -> _Usage: ...
    @property
    def finish_reason(self) -> str | None: ...
    @property
    def model(self) -> str | None: ...


Redactor = Callable[[Any, Collection[str]], Any]
"""`engine.capture.redact`: passed in by the engine, which owns the redaction rules."""

# -- set-up ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Tracing:
    processor: SpanProcessor
    resource: Resource
    scope: InstrumentationScope
    content: bool
    """False: `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=false`, no content whatever the flow."""
    value_limit: int | None
    """`OTEL_[SPAN_]ATTRIBUTE_VALUE_LENGTH_LIMIT`: the longest string attribute kept."""


_state: _Tracing | None = None
_current: ContextVar[SpanContext | None] = ContextVar("noukai_current_span", default=None)
"""The span new spans are children of: a run's stored workflow span (remote: emitted by whoever
ends the run), or the step attempt, model call or tool call running now."""


def enabled() -> bool:
    return _state is not None


def start(environ: Mapping[str, str] | None = None, *, processor: SpanProcessor | None = None) -> bool:
    """Start tracing in this process if the environment asks for it (or `processor` is given:
    tests); True when it is on. Idempotent: a second call keeps the first set-up.

    Nothing is installed as OpenTelemetry's global tracer provider: FastAPI's own telemetry would
    then record three spans per HTTP request (measured: a quarter more CPU per run)."""
    global _state
    if _state is not None:
        return True
    env = os.environ if environ is None else environ
    if processor is None and not tracing_configured(env):
        return False
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "noukai"}))
    scope = InstrumentationScope(sc.INSTRUMENTATION_NAME, __version__, sc.SCHEMA_URL)
    content = env.get(CONTENT_SWITCH, "").strip().lower() != "false"
    limit = env.get("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT") or env.get("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT")
    value_limit = int(limit) if limit and limit.strip().isdigit() else None
    chosen = processor or BatchSpanProcessor(_exporter(env))
    _state = _Tracing(chosen, resource, scope, content, value_limit)
    logs.set_span_source(_current_span_ids)
    return True


def _exporter(env: Mapping[str, str]) -> SpanExporter:
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if n.strip()]
    if names == ["console"]:
        return ConsoleSpanExporter()
    if names and names != ["otlp"]:
        logger.warning("OTEL_TRACES_EXPORTER=%s: only otlp and console are supported; using otlp", names)
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    if protocol and protocol.strip().lower() != "http/protobuf":
        logger.warning("OTLP protocol %s is not supported; traces are sent as http/protobuf", protocol)
    from noukai_server.telemetry.tracing_otlp import LeanOTLPSpanExporter  # imports the SDK exporter

    return LeanOTLPSpanExporter()


def shutdown() -> None:
    """Export what is buffered and stop (at process exit). Tracing can be started again."""
    global _state
    state, _state = _state, None
    logs.set_span_source(None)
    if state is not None:
        state.processor.shutdown()


def force_flush(timeout_millis: int = 5000) -> bool:
    return _state is None or _state.processor.force_flush(timeout_millis)


class _Span:
    """A span being recorded: emitted as a `ReadableSpan` to the processor by `end`."""

    __slots__ = ("attributes", "context", "kind", "name", "parent", "start", "status")

    def __init__(
        self,
        name: str,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: dict[str, Any],
        *,
        own: SpanContext | None = None,
        start: int | None = None,
    ) -> None:
        """A child of `parent`, or (`own`: a workflow span) the span of those stored ids."""
        self.name = name
        self.parent = parent
        self.kind = kind
        self.attributes = attributes
        if own is None:
            assert parent is not None
            own = SpanContext(
                parent.trace_id, _random_span_id(), is_remote=False, trace_flags=parent.trace_flags
            )
        self.context = own
        self.start = start if start is not None else time.time_ns()
        self.status = _UNSET

    def fail(self, code: str, message: str | None) -> None:
        self.attributes[sc.ERROR_TYPE] = code
        self.status = Status(StatusCode.ERROR, message)

    def end(self, state: _Tracing) -> None:
        """Hand the span to the processor (when its trace is sampled)."""
        if not self.context.trace_flags.sampled:
            return
        attributes = self.attributes
        limit = state.value_limit
        if limit is not None:
            for key, value in attributes.items():
                if isinstance(value, str) and len(value) > limit:
                    attributes[key] = value[:limit]
        span = ReadableSpan(
            name=self.name,
            context=self.context,
            parent=self.parent,
            resource=state.resource,
            attributes=attributes,
            kind=self.kind,
            status=self.status,
            start_time=self.start,
            end_time=time.time_ns(),
            instrumentation_scope=state.scope,
        )
        state.processor.on_end(span)


_UNSET: Final = Status(StatusCode.UNSET)


def _random_span_id() -> int:
    while True:
        span_id = random.getrandbits(64)
        if span_id:
            return span_id


# -- a run's context -------------------------------------------------------------------------------


def bind_run(run: TracedRun) -> None:
    """In the task that executes `run`: its log lines carry its trace id, and the spans started in
    it are children of its (stored) workflow span."""
    run_trace = stored_run_trace(run.traceparent, run.trace_parent_span_id)
    if run_trace is None:
        return
    logs.trace_id_var.set(run_trace.trace_id)
    if _state is not None:  # the task is the run's own: nothing to reset
        _current.set(_span_context(run_trace.span))


def _span_context(span: SpanRef) -> SpanContext:
    return SpanContext(
        int(span.trace_id, 16), int(span.span_id, 16), is_remote=True, trace_flags=TraceFlags(span.flags)
    )


def _current_span_ids() -> tuple[str, str] | None:
    """The trace and span ids of the span being recorded here, if any (for log lines); the run's
    own (remote) span is not recorded here."""
    current = _current.get()
    if current is None or current.is_remote:
        return None
    return format_trace_id(current.trace_id), format_span_id(current.span_id)


def current_traceparent() -> str | None:
    """The W3C `traceparent` of the span current here (a step attempt's, or the run's own): a run
    started from here (a child run of a `flow` step) takes it as its caller, so its workflow span
    is that span's child. None outside of a traced run."""
    current = _current.get()
    if current is None:
        return None
    trace_id, span_id = format_trace_id(current.trace_id), format_span_id(current.span_id)
    return f"00-{trace_id}-{span_id}-{int(current.trace_flags):02x}"


def child_run(run_id: str) -> None:
    """The step attempt running here started (or took over) the child run `run_id`: its span
    lists it (`noukai.step.child_run_ids`), the link from parent to child; the child's workflow
    span, a child of this span, is the link back."""
    span = _attempt_var.get()
    if span is not None:
        known = span.attributes.get(sc.CHILD_RUN_IDS, ())
        span.attributes[sc.CHILD_RUN_IDS] = (*known, run_id)


def end_run(
    run: TracedRun, status: str, error_code: str | None = None, error_message: str | None = None
) -> None:
    """Emit the run's workflow span; called once, by whoever records the run's terminal status."""
    state = _state
    if state is None:
        return
    run_trace = stored_run_trace(run.traceparent, run.trace_parent_span_id)
    if run_trace is None:  # created while this deployment did not trace, and no caller trace
        return
    slug = str(run.document.get("slug") or run.flow_id)
    attributes: dict[str, Any] = {
        sc.GEN_AI_OPERATION_NAME: sc.INVOKE_WORKFLOW,
        sc.GEN_AI_WORKFLOW_NAME: slug,
        sc.RUN_ID: run.id,
        sc.RUN_STATUS: status,
        sc.RUN_TRIGGER: run.trigger_type,
        sc.RUN_ATTEMPT: run.attempt,
        sc.ORG: run.org_id,
        sc.PROJECT_ID: run.project_id,
        sc.FLOW_ID: run.flow_id,
        sc.FLOW_VERSION: run.flow_version,
    }
    conversation = run.thread_id or run.session_id
    if conversation is not None:
        attributes[sc.GEN_AI_CONVERSATION_ID] = conversation
    callers = None
    if run_trace.parent_span_id is not None:  # the caller's span (remote); else the trace's root
        callers = _span_context(SpanRef(run_trace.trace_id, run_trace.parent_span_id, run_trace.span.flags))
    own = _span_context(run_trace.span)
    own = SpanContext(own.trace_id, own.span_id, is_remote=False, trace_flags=own.trace_flags)
    name = f"{sc.INVOKE_WORKFLOW} {slug}"
    span = _Span(name, callers, SpanKind.INTERNAL, attributes, own=own, start=_nanoseconds(run.created_at))
    if error_code is not None:
        span.fail(error_code, error_message)
    span.end(state)


def _nanoseconds(moment: datetime) -> int:
    if moment.tzinfo is None:  # the stores keep UTC
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1e9)


# -- step attempts ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Capture:
    """What the current step attempt's spans may record of content."""

    redact: Redactor | None
    """None: as is (`full`)."""
    fields: tuple[str, ...]


_capture_var: ContextVar[_Capture | None] = ContextVar("noukai_trace_capture", default=None)
_attempt_var: ContextVar[_Span | None] = ContextVar("noukai_trace_attempt", default=None)
"""The span of the step attempt running here (`child_run`)."""


class AttemptSpan:
    """A step attempt's span while it runs (`step_attempt`)."""

    __slots__ = ("_attempt_token", "_capture_token", "_current_token", "_outcome", "_span", "_state")

    def __init__(self, state: _Tracing, span: _Span, capture: _Capture | None) -> None:
        self._state = state
        self._span = span
        self._outcome: str | None = None
        self._current_token = _current.set(span.context)
        self._capture_token = _capture_var.set(capture)
        self._attempt_token = _attempt_var.set(span)

    def paused(self) -> None:
        """The attempt waits for client tool results; it goes on, later, in another span."""
        self._outcome = "paused_for_tools"

    def __enter__(self) -> AttemptSpan:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        _attempt_var.reset(self._attempt_token)
        _capture_var.reset(self._capture_token)
        _current.reset(self._current_token)
        span = self._span
        if error is None or self._outcome is not None:
            span.attributes[sc.STEP_OUTCOME] = self._outcome or "completed"
        elif isinstance(error, _STOPPED):
            span.attributes[sc.STEP_OUTCOME] = "stopped"
            span.fail(
                "STEP_INTERRUPTED", "stopped from outside: a cancel, a deadline, a lost lease or a drain"
            )
        else:
            span.attributes[sc.STEP_OUTCOME] = "failed"
            span.fail(_error_type(error), _message(error))
        span.end(self._state)


class _NoAttempt:
    """`step_attempt` when tracing is off."""

    __slots__ = ()

    def paused(self) -> None:
        pass

    def __enter__(self) -> _NoAttempt:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


_NO_ATTEMPT: Final = _NoAttempt()
_STOPPED: Final = asyncio.CancelledError
"""A cancel ends an attempt from outside (cancel, deadline, lost lease, drain): not its own error."""


def step_attempt(
    flow: TracedFlow,
    step: TracedStep,
    index: int,
    attempt: int,
    *,
    model: str | None = None,
    resumed: bool = False,
    redact: Redactor | None = None,
) -> AttemptSpan | _NoAttempt:
    """The span of one attempt of a step (a child of the run's span): `invoke_agent {name}` for an
    agent step, `step {id}` for the others. Use as a context manager around the attempt; an
    exception with a `code` (a `StepFailure`) ends it as an error of that type."""
    state = _state
    parent = _current.get()
    if state is None or parent is None:  # off, or outside of a run that has a trace
        return _NO_ATTEMPT
    attributes: dict[str, Any] = {
        sc.STEP_ID: step.id,
        sc.STEP_INDEX: index,
        sc.STEP_TYPE: step.type,
        sc.STEP_ATTEMPT: attempt,
    }
    if step.type == "agent":
        agent = step.name or step.id
        name = f"{sc.INVOKE_AGENT} {agent}"
        attributes[sc.GEN_AI_OPERATION_NAME] = sc.INVOKE_AGENT
        attributes[sc.GEN_AI_AGENT_NAME] = agent
    else:
        name = f"{sc.STEP} {step.id}"
    if model is not None:
        provider, _, model_name = model.partition(":")
        attributes[sc.GEN_AI_PROVIDER_NAME] = provider
        attributes[sc.GEN_AI_REQUEST_MODEL] = model_name
    if resumed:
        attributes[sc.STEP_RESUMED] = True
    span = _Span(name, parent, SpanKind.INTERNAL, attributes)
    return AttemptSpan(state, span, _capture_of(state, flow, redact))


def _capture_of(state: _Tracing, flow: TracedFlow, redact: Redactor | None) -> _Capture | None:
    mode = flow.trace_capture_mode
    if not state.content or mode not in _CONTENT_MODES:
        return None
    if mode == "redacted":
        if redact is None:  # nothing to redact with: keep nothing rather than too much
            return None
        return _Capture(redact, tuple(flow.redact_fields))
    return _Capture(None, ())


def _content(capture: _Capture, value: Any) -> str:
    kept = value if capture.redact is None else capture.redact(value, capture.fields)
    return orjson.dumps(kept, default=str).decode()


# -- model calls -----------------------------------------------------------------------------------


class ChatSpan:
    """A model call's span while it streams (`model_call`)."""

    __slots__ = ("_capture", "_span", "_state", "_token")

    def __init__(self, state: _Tracing, span: _Span, capture: _Capture | None) -> None:
        self._state = state
        self._span = span
        self._capture = capture
        self._token = _current.set(span.context)

    def response(self, response: _Response) -> None:
        usage = response.usage
        attributes: dict[str, Any] = {
            sc.GEN_AI_USAGE_INPUT_TOKENS: usage.prompt_tokens,
            sc.GEN_AI_USAGE_OUTPUT_TOKENS: usage.completion_tokens,
        }
        if response.model:
            attributes[sc.GEN_AI_RESPONSE_MODEL] = response.model
        if response.finish_reason:
            attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] = (response.finish_reason,)
        if self._capture is not None:
            parts: list[dict[str, Any]] = []
            if response.text:
                parts.append({"type": "text", "content": response.text})
            parts.extend(_tool_call_part(call) for call in response.tool_calls)
            message: dict[str, Any] = {"role": "assistant", "parts": parts}
            if response.finish_reason:
                message["finish_reason"] = response.finish_reason
            attributes[sc.GEN_AI_OUTPUT_MESSAGES] = _content(self._capture, [message])
        self._span.attributes.update(attributes)

    def __enter__(self) -> ChatSpan:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        _current.reset(self._token)
        if error is not None:
            self._span.fail(
                "STEP_INTERRUPTED" if isinstance(error, _STOPPED) else _error_type(error), _message(error)
            )
        self._span.end(self._state)


class _NoChat:
    __slots__ = ()

    def response(self, response: _Response) -> None:
        pass

    def __enter__(self) -> _NoChat:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


_NO_CHAT: Final = _NoChat()


def model_call(provider: str, request: _Request) -> ChatSpan | _NoChat:
    """The span of one model call, `chat {model}`; `response()` records what came back."""
    state = _state
    parent = _current.get()
    if state is None or parent is None:
        return _NO_CHAT
    attributes: dict[str, Any] = {
        sc.GEN_AI_OPERATION_NAME: sc.CHAT,
        sc.GEN_AI_PROVIDER_NAME: provider,
        sc.GEN_AI_REQUEST_MODEL: request.model,
    }
    if request.temperature is not None:
        attributes[sc.GEN_AI_REQUEST_TEMPERATURE] = request.temperature
    if request.max_tokens is not None:
        attributes[sc.GEN_AI_REQUEST_MAX_TOKENS] = request.max_tokens
    capture = _capture_var.get()
    if capture is not None:
        if request.system:
            attributes[sc.GEN_AI_SYSTEM_INSTRUCTIONS] = _content(
                capture, [{"type": "text", "content": request.system}]
            )
        attributes[sc.GEN_AI_INPUT_MESSAGES] = _content(capture, [_message_of(m) for m in request.messages])
    span = _Span(f"{sc.CHAT} {request.model}", parent, SpanKind.CLIENT, attributes)
    return ChatSpan(state, span, capture)


def _message_of(message: _Message) -> dict[str, Any]:
    """A chat message in the conventions' shape (`gen-ai-input-messages.json`)."""
    if message.role == "tool":
        part = {"type": "tool_call_response", "id": message.tool_call_id, "response": message.content}
        return {"role": "tool", "parts": [part]}
    parts: list[dict[str, Any]] = []
    if message.content:
        parts.append({"type": "text", "content": message.content})
    parts.extend(_tool_call_part(call) for call in message.tool_calls)
    return {"role": message.role, "parts": parts}


def _tool_call_part(call: _ToolCall) -> dict[str, Any]:
    return {"type": "tool_call", "id": call.id, "name": call.name, "arguments": _arguments(call.arguments)}


def _arguments(text: str) -> Any:
    try:
        return orjson.loads(text or "{}")
    except orjson.JSONDecodeError:
        return text


# -- tool calls ------------------------------------------------------------------------------------


class ToolSpan:
    """A server-side tool call's span while it runs (`tool_call`)."""

    __slots__ = ("_capture", "_span", "_state", "_token")

    def __init__(self, state: _Tracing, span: _Span, capture: _Capture | None) -> None:
        self._state = state
        self._span = span
        self._capture = capture
        self._token = _current.set(span.context)

    def result(self, content: str) -> None:
        if self._capture is not None:
            self._span.attributes[sc.GEN_AI_TOOL_CALL_RESULT] = _content(self._capture, _arguments(content))

    def __enter__(self) -> ToolSpan:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        _current.reset(self._token)
        if error is not None:
            stopped = isinstance(error, _STOPPED)
            self._span.fail("STEP_INTERRUPTED" if stopped else sc.TOOL_ERROR, _message(error) or str(error))
        self._span.end(self._state)


class _NoTool:
    __slots__ = ()

    def result(self, content: str) -> None:
        pass

    def __enter__(self) -> _NoTool:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


_NO_TOOL: Final = _NoTool()


def tool_call(name: str, call_id: str, arguments: str) -> ToolSpan | _NoTool:
    """The span of a server-side tool call (the operator's tools and MCP tools), `execute_tool
    {name}`; an exception out of it (a `ToolError`) ends it as a `TOOL_ERROR`."""
    state = _state
    parent = _current.get()
    if state is None or parent is None:
        return _NO_TOOL
    capture = _capture_var.get()
    attributes = _tool_attributes(name, call_id, "server", capture, arguments)
    span = _Span(f"{sc.EXECUTE_TOOL} {name}", parent, SpanKind.INTERNAL, attributes)
    return ToolSpan(state, span, capture)


def client_tool_result(name: str, call_id: str, paused_at: float | None, arguments: str, result: str) -> None:
    """A client-side tool call, recorded when its result arrives: the caller ran it, so the span
    lasts from the pause (`paused_at`, wall-clock seconds) to now."""
    state = _state
    parent = _current.get()
    if state is None or parent is None:
        return
    capture = _capture_var.get()
    attributes = _tool_attributes(name, call_id, "client", capture, arguments)
    if capture is not None:
        attributes[sc.GEN_AI_TOOL_CALL_RESULT] = _content(capture, _arguments(result))
    start = None if paused_at is None else int(paused_at * 1e9)
    _Span(f"{sc.EXECUTE_TOOL} {name}", parent, SpanKind.INTERNAL, attributes, start=start).end(state)


def _tool_attributes(
    name: str, call_id: str, side: str, capture: _Capture | None, arguments: str
) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        sc.GEN_AI_OPERATION_NAME: sc.EXECUTE_TOOL,
        sc.GEN_AI_TOOL_NAME: name,
        sc.GEN_AI_TOOL_CALL_ID: call_id,
        sc.GEN_AI_TOOL_TYPE: "function",
        sc.TOOL_SIDE: side,
    }
    if capture is not None:
        attributes[sc.GEN_AI_TOOL_CALL_ARGUMENTS] = _content(capture, _arguments(arguments))
    return attributes


# -- errors ----------------------------------------------------------------------------------------


def _error_type(error: BaseException) -> str:
    """The error's stable code (`StepFailure.code`, `ModelError.code`), else its class name."""
    code = getattr(error, "code", None)
    if code is not None:
        return str(code.value if hasattr(code, "value") else code)
    return type(error).__qualname__


def _message(error: BaseException) -> str | None:
    message = getattr(error, "message", None)
    return message if isinstance(message, str) else None


__all__ = [
    "AttemptSpan",
    "ChatSpan",
    "ToolSpan",
    "bind_run",
    "child_run",
    "client_tool_result",
    "current_traceparent",
    "enabled",
    "end_run",
    "force_flush",
    "model_call",
    "shutdown",
    "start",
    "step_attempt",
    "tool_call",
]
