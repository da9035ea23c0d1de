"""AG-UI (protocol 1.0) over a flow: `RunAgentInput` read as a run's inputs (or as the results of
the frontend tools a paused run waits for), and the run's segment translated to AG-UI events.

Mapping (docs/protocols.md has the table): the run opens with RUN_STARTED and ends with
RUN_FINISHED (completed; cancelled as the `cancelled` outcome) or RUN_ERROR; every step is
STEP_STARTED/STEP_FINISHED named by its id, followed by a STATE_SNAPSHOT of the step outputs so
far; the answer step's tokens are one TEXT_MESSAGE (or the whole result at the end); reasoning
deltas are a REASONING message; tool calls are TOOL_CALL_START/ARGS/END, with TOOL_CALL_RESULT for
the server's own tools.

Frontend (client) tools follow what 1.0 defines for them: a run that stops on a frontend tool
call is a *completed* run whose outcome names the calls left unanswered
(`{"type": "success", "pendingToolCallIds": [...]}`); the application answers them with `tool`
messages in the next input's `messages`, and that next request resumes the paused run (found from
the call ids). Interrupts (`outcome.type == "interrupt"`, answered by `resume` entries) are for
requests that are not tool calls; Noukai flows raise none.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, replace
from typing import Any, Final

import orjson
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from noukai.types import events as ev
from noukai.types.errors import ErrorCode
from noukai_server.engine import RunInputs
from noukai_server.runtime.errors import RequestRejected
from noukai_server.runtime.protocols.common import (
    AnswerText,
    Segment,
    SegmentEvents,
    Tokens,
    ToolResult,
    encode_call_id,
)
from noukai_server.runtime.threads import Tenant, ThreadService, is_uuid

PING: Final = b": ping\n\n"
_SKIPPED_ROLES: Final = frozenset({"system", "developer", "activity", "reasoning"})


class _Camel(BaseModel):
    model_config = ConfigDict(extra="allow", alias_generator=to_camel, populate_by_name=True)


class AguiTool(_Camel):
    name: str
    description: str = ""
    parameters: Any = None


class RunAgentInputBody(_Camel):
    """AG-UI's `RunAgentInput` (camelCase on the wire; unknown keys kept, as AG-UI's own models
    do). `forwardedProps.parameters` carries the flow's declared inputs; `state` and `context`
    are accepted and not read."""

    thread_id: str
    run_id: str
    messages: list[dict[str, Any]]
    tools: list[AguiTool] | None = None
    state: Any = None
    context: list[Any] | None = None
    forwarded_props: Any = None
    resume: list[Any] | None = None
    parent_run_id: str | None = None


@dataclass(frozen=True, slots=True)
class AguiRequest:
    thread_id: str
    run_id: str
    inputs: RunInputs
    tool_results: list[ToolResult]


def _bad(message: str) -> RequestRejected:
    return RequestRejected(ErrorCode.VALIDATION_ERROR, message)


def _text(content: Any, where: str) -> str | None:
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
        )
    raise _bad(f"{where} must be a string or a list of content parts")


def agui_request(body: RunAgentInputBody) -> AguiRequest:
    history: list[dict[str, Any]] = []
    last_user: str | None = None
    for index, message in enumerate(body.messages):
        where = f"messages[{index}]"
        role = message.get("role")
        if role in _SKIPPED_ROLES:
            continue
        content = _text(message.get("content"), f"{where}.content")
        if role == "user":
            last_user = content or ""
            history.append({"role": "user", "content": last_user})
        elif role == "assistant":
            turn: dict[str, Any] = {"role": "assistant", "content": content}
            calls = message.get("toolCalls", message.get("tool_calls"))
            if calls:
                if not isinstance(calls, list):
                    raise _bad(f"{where}.toolCalls must be a list")
                turn["tool_calls"] = calls
            history.append(turn)
        elif role == "tool":
            call_id = message.get("toolCallId", message.get("tool_call_id"))
            if not isinstance(call_id, str) or not call_id:
                raise _bad(f"{where}.toolCallId is required")
            text = content if content is not None else message.get("error") or ""
            history.append({"role": "tool", "tool_call_id": call_id, "content": text})
        else:
            raise _bad(f"{where}.role {role!r} is not an AG-UI message role")
    results: list[ToolResult] = []
    for turn in reversed(history):
        if turn["role"] != "tool":
            break
        results.insert(0, ToolResult(turn["tool_call_id"], turn["content"]))
    props = body.forwarded_props if isinstance(body.forwarded_props, dict) else {}
    parameters = props.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise _bad("forwardedProps.parameters must be an object (the flow's inputs)")
    tools = [
        {
            "type": "function",
            "function": {
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.parameters if isinstance(tool.parameters, dict) else {"type": "object"},
            },
        }
        for tool in body.tools or ()
    ]
    inputs = RunInputs(
        message=last_user,
        messages=history or None,
        parameters=dict(parameters or {}),
        tools=tools or None,
    )
    return AguiRequest(body.thread_id, body.run_id, inputs, results)


async def on_client_thread(
    threads: ThreadService, tenant: Tenant, project: str, request: AguiRequest
) -> tuple[RunInputs, str | None]:
    """The run's inputs and thread for an AG-UI request. A `threadId` that is a UUID names a
    Noukai thread of `project`, created (and seeded with the request's messages) the first time;
    once the thread holds a conversation the server's copy is the history, so the new turn is
    the last user message alone. Any other `threadId` keeps nothing server-side."""
    if not is_uuid(request.thread_id):
        return request.inputs, None
    thread = await threads.ensure(tenant, project, request.thread_id)
    if thread.message_count:
        return replace(request.inputs, messages=None), thread.id
    return request.inputs, thread.id


class AguiTranslation:
    """One segment of a run as AG-UI events (dicts in the wire's camelCase)."""

    def __init__(self, segment: Segment, thread_id: str, run_id: str) -> None:
        self.thread_id = thread_id
        self.run_id = run_id
        self.execution_id = segment.run_id
        self.answer = AnswerText(segment.target.spec)
        self.tokens = Tokens()
        self.outputs: dict[str, Any] = dict(segment.outputs)
        self.resumed_step = segment.resumed_step
        self.open_steps: list[str] = []
        self.text_id: str | None = None
        self.reasoning_id: str | None = None
        self.call_ids: dict[str, str] = {}
        """The model's call id -> the id the client sees (the latest call with that id)."""
        self.finished = False

    def opening(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = [
            {"type": "RUN_STARTED", "threadId": self.thread_id, "runId": self.run_id}
        ]
        if self.resumed_step is not None:  # the engine does not repeat a resumed step's start
            events += self._start_step(self.resumed_step)
        return events

    def _start_step(self, step_id: str) -> list[dict[str, Any]]:
        self.open_steps.append(step_id)
        return [{"type": "STEP_STARTED", "stepName": step_id}]

    def _finish_step(self, step_id: str) -> list[dict[str, Any]]:
        events = [] if step_id in self.open_steps else self._start_step(step_id)
        self.open_steps.remove(step_id)
        return [*events, {"type": "STEP_FINISHED", "stepName": step_id}]

    def _close(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        if self.text_id is not None:
            events.append({"type": "TEXT_MESSAGE_END", "messageId": self.text_id})
            self.text_id = None
        if self.reasoning_id is not None:
            events.append({"type": "REASONING_MESSAGE_END", "messageId": self.reasoning_id})
            events.append({"type": "REASONING_END", "messageId": self.reasoning_id})
            self.reasoning_id = None
        return events

    def _text(self, delta: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        if self.reasoning_id is not None:
            events += self._close()
        if self.text_id is None:
            self.text_id = str(uuid.uuid4())
            events.append({"type": "TEXT_MESSAGE_START", "messageId": self.text_id, "role": "assistant"})
        events.append({"type": "TEXT_MESSAGE_CONTENT", "messageId": self.text_id, "delta": delta})
        return events

    def _reasoning(self, delta: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        if self.text_id is not None:
            events += self._close()
        if self.reasoning_id is None:
            self.reasoning_id = str(uuid.uuid4())
            events.append({"type": "REASONING_START", "messageId": self.reasoning_id})
            events.append(
                {"type": "REASONING_MESSAGE_START", "messageId": self.reasoning_id, "role": "reasoning"}
            )
        events.append({"type": "REASONING_MESSAGE_CONTENT", "messageId": self.reasoning_id, "delta": delta})
        return events

    def _snapshot(self) -> dict[str, Any]:
        return {
            "type": "STATE_SNAPSHOT",
            "snapshot": {"executionId": self.execution_id, "outputs": dict(self.outputs)},
        }

    def _end_steps(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for step_id in list(self.open_steps):
            events += self._finish_step(step_id)
        return events

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        kind = event["eventType"]
        self.tokens.add(event)
        delta = self.answer.delta(event)
        if delta is not None:
            return self._text(delta)
        if kind == ev.STEP_STARTED:
            if event["stepId"] in self.open_steps:  # the next attempt of a retried step
                return self._close()
            return [*self._close(), *self._start_step(event["stepId"])]
        if kind == ev.STEP_REASONING:
            return self._reasoning(event["delta"])
        if kind == ev.TOOL_CALL_STARTED:
            client_id = encode_call_id(self.execution_id, int(event["seq"]), event["toolCallId"])
            self.call_ids[event["toolCallId"]] = client_id
            events = self._close()
            events.append({"type": "TOOL_CALL_START", "toolCallId": client_id, "toolCallName": event["name"]})
            if event["arguments"]:
                events.append(
                    {"type": "TOOL_CALL_ARGS", "toolCallId": client_id, "delta": event["arguments"]}
                )
            events.append({"type": "TOOL_CALL_END", "toolCallId": client_id})
            return events
        if kind == ev.TOOL_CALL_COMPLETED:
            if event["side"] != "server":
                return []  # the client sent this result itself
            client_id = self.call_ids.get(event["toolCallId"], event["toolCallId"])
            content = event.get("result", event.get("error", ""))
            return [
                {
                    "type": "TOOL_CALL_RESULT",
                    "messageId": str(uuid.uuid4()),
                    "toolCallId": client_id,
                    "content": content,
                    "role": "tool",
                }
            ]
        if kind == ev.STEP_COMPLETED:
            self.outputs[event["stepId"]] = event["output"]
            return [*self._close(), *self._finish_step(event["stepId"]), self._snapshot()]
        if kind == ev.STEP_RETRYING:
            return self._close()
        if kind == ev.STEP_ERROR:
            return [*self._close(), *self._finish_step(event["stepId"])]
        if kind == ev.STEP_PAUSED_FOR_TOOL_CALLS:
            pending = [
                self.call_ids.get(c["id"]) or self._encoded(c["id"], event) for c in event["toolCalls"]
            ]
            self.finished = True
            return [
                *self._close(),
                *self._end_steps(),
                {
                    "type": "RUN_FINISHED",
                    "threadId": self.thread_id,
                    "runId": self.run_id,
                    "outcome": {"type": "success", "pendingToolCallIds": pending},
                    "usage": [self._usage()],
                },
            ]
        if kind == ev.FLOW_COMPLETED:
            events = self._close()
            rest = self.answer.remainder(event["result"])
            if rest:
                events += [*self._text(rest), *self._close()]
            self.finished = True
            return [
                *events,
                *self._end_steps(),
                {
                    "type": "RUN_FINISHED",
                    "threadId": self.thread_id,
                    "runId": self.run_id,
                    "result": event["result"],
                    "usage": [self._usage()],
                },
            ]
        if kind == ev.RUN_FAILED:
            self.finished = True
            error = event["error"]
            return [
                *self._close(),
                *self._end_steps(),
                {"type": "RUN_ERROR", "message": error["message"], "code": error["code"]},
            ]
        if kind == ev.RUN_CANCELLED:
            self.finished = True
            return [
                *self._close(),
                *self._end_steps(),
                {
                    "type": "RUN_FINISHED",
                    "threadId": self.thread_id,
                    "runId": self.run_id,
                    "outcome": {"type": "cancelled"},
                },
            ]
        return []

    def _encoded(self, call_id: str, event: dict[str, Any]) -> str:
        return encode_call_id(self.execution_id, int(event["seq"]), call_id)

    def _usage(self) -> dict[str, Any]:
        tokens = self.tokens
        return {
            "inputTokens": tokens.prompt,
            "outputTokens": tokens.completion,
            "totalTokens": tokens.total,
        }

    def ended_early(self) -> list[dict[str, Any]]:
        """RUN_ERROR for a segment whose events stopped before the run's end (never expected)."""
        if self.finished:
            return []
        message = f"the events of run {self.execution_id} ended early"
        return [
            *self._close(),
            *self._end_steps(),
            {"type": "RUN_ERROR", "message": message, "code": "INTERNAL_ERROR"},
        ]


def _frame(event: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(event) + b"\n\n"


async def agui_stream(translation: AguiTranslation, events: SegmentEvents) -> AsyncIterator[bytes]:
    """The SSE body: one `data:` frame per AG-UI event, `: ping` comments while quiet."""
    yield b"".join(_frame(e) for e in translation.opening())
    async with aclosing(events):
        async for event in events:
            if event is None:
                yield PING
                continue
            frames = translation.feed(event)
            if frames:
                yield b"".join(_frame(e) for e in frames)
    tail = translation.ended_early()
    if tail:
        yield b"".join(_frame(e) for e in tail)
