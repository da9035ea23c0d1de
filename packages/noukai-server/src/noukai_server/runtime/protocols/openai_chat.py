"""OpenAI chat completions over flows: the request read as a run's inputs (or as client tool
results for a paused run), the run's segment translated to `chat.completion` or a stream of
`chat.completion.chunk`, and every refusal in OpenAI's error shape.

The model is the flow (`org/project/slug[/vN]`); the answer is the flow's answer step (see
`common`). A client tool call pauses the run and answers `finish_reason: "tool_calls"`; the
next request, carrying the assistant message and one `tool` message per call, resumes that run,
found from the call ids (`common.encode_call_id`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Final

import orjson
from pydantic import BaseModel, ConfigDict, Field

from noukai.types import events as ev
from noukai.types.errors import ErrorCode, status_for_code
from noukai_server.engine import RunInputs
from noukai_server.runtime.errors import RequestRejected
from noukai_server.runtime.protocols.common import (
    AnswerText,
    ClientCalls,
    FlowAddress,
    Segment,
    SegmentEvents,
    Tokens,
    ToolResult,
    result_text,
)

DONE: Final = b"data: [DONE]\n\n"
PING: Final = b": ping\n\n"
_SKIPPED_ROLES: Final = frozenset({"system", "developer"})
_ERROR_TYPES: Final = {
    401: "authentication_error",
    403: "permission_error",
    429: "rate_limit_error",
}


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatCompletionBody(BaseModel):
    """The fields of a chat completion request Noukai reads; the others (temperature, max_tokens,
    ...) are accepted and ignored, since the flow's steps carry their own settings."""

    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    parameters: dict[str, Any] | None = None
    """A Noukai extension (`extra_body={"parameters": {...}}`): the flow's declared inputs."""


@dataclass(frozen=True, slots=True)
class ChatRequest:
    address: FlowAddress
    model: str
    stream: bool
    include_usage: bool
    inputs: RunInputs
    tool_results: list[ToolResult]
    """Non-empty when the conversation ends with `tool` messages: a resume."""


def _text(content: Any, where: str) -> str | None:
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict):
                raise _bad(f"{where} must be a string or a list of content parts", where)
            if part.get("type") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
        return "".join(texts)
    raise _bad(f"{where} must be a string or a list of content parts", where)


def _bad(message: str, param: str) -> RequestRejected:
    return RequestRejected(ErrorCode.VALIDATION_ERROR, message, param=param)


def chat_request(body: ChatCompletionBody, *, on_thread: bool = False) -> ChatRequest:
    """The request as a run's inputs; refuses what no flow could take (unknown roles, a `tool`
    message without its call id). `on_thread`: the server keeps the conversation, so the run
    takes only the last user message (a chat UI sends the whole conversation every time)."""
    history: list[dict[str, Any]] = []
    last_user: str | None = None
    for index, message in enumerate(body.messages):
        where = f"messages[{index}]"
        role = message.get("role")
        if role in _SKIPPED_ROLES:
            continue  # the flow's steps carry their own system prompts
        content = _text(message.get("content"), f"{where}.content")
        if role == "user":
            last_user = content or ""
            history.append({"role": "user", "content": content or ""})
        elif role == "assistant":
            turn: dict[str, Any] = {"role": "assistant", "content": content}
            calls = message.get("tool_calls")
            if calls:
                if not isinstance(calls, list):
                    raise _bad(f"{where}.tool_calls must be a list", f"{where}.tool_calls")
                turn["tool_calls"] = calls
            history.append(turn)
        elif role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or not call_id:
                raise _bad(f"{where}.tool_call_id is required", f"{where}.tool_call_id")
            history.append({"role": "tool", "tool_call_id": call_id, "content": content or ""})
        else:
            raise _bad(
                f"{where}.role {role!r} is not one of system, developer, user, assistant, tool",
                f"{where}.role",
            )
    results: list[ToolResult] = []
    for turn in reversed(history):
        if turn["role"] != "tool":
            break
        results.insert(0, ToolResult(turn["tool_call_id"], turn["content"]))
    include_usage = body.stream_options is not None and body.stream_options.include_usage
    inputs = RunInputs(
        message=last_user,
        messages=None if on_thread else history or None,
        parameters=dict(body.parameters or {}),
        tools=body.tools or None,
        tool_choice=body.tool_choice,
    )
    address = FlowAddress.parse(body.model)
    return ChatRequest(address, body.model, body.stream, include_usage, inputs, results)


def openai_error(
    code: str, message: str, *, param: str | None = None, during_run: bool = False
) -> tuple[int, dict[str, Any]]:
    """`(status, body)` in OpenAI's error shape. Statuses follow the code, made to fit what the
    OpenAI SDKs raise: an invalid request is 400 (BadRequestError, not 422), a provider's rate
    limit 429 (RateLimitError, retried), and a run that failed for a reason that is not the
    request's (a template error, a model missing from the server) 500."""
    status = status_for_code(code)
    if code == ErrorCode.PROVIDER_RATE_LIMITED:
        status = 429
    elif during_run and 400 <= status < 500 and status not in (409, 429):
        status = 500
    elif status == 422:
        status = 400
    kind = "server_error" if status >= 500 else _ERROR_TYPES.get(status, "invalid_request_error")
    return status, {"error": {"message": message, "type": kind, "code": code, "param": param}}


class ChatTranslation:
    """One segment of a run as a chat completion (streamed or whole)."""

    def __init__(self, segment: Segment, model: str) -> None:
        self.model = model
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.run_id = segment.run_id
        self.answer = AnswerText(segment.target.spec)
        self.calls = ClientCalls(segment.run_id)
        self.tokens = Tokens()
        self.text: list[str] = []
        self.result: str | None = None
        """The complete answer, once the run has completed."""
        self.tool_calls: list[dict[str, Any]] | None = None
        self.finish_reason: str | None = None
        self.error: tuple[str, str] | None = None

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """The chunks an event of the segment becomes (often none)."""
        kind = event["eventType"]
        self.tokens.add(event)
        delta = self.answer.delta(event)
        if delta is not None:
            self.text.append(delta)
            return [self.chunk({"content": delta})]
        if kind == ev.TOOL_CALL_STARTED:
            self.calls.started(event)
        elif kind == ev.STEP_PAUSED_FOR_TOOL_CALLS:
            self.tool_calls = [
                {
                    "id": self.calls.encoded(call["id"], event["seq"]),
                    "type": "function",
                    "function": {
                        "name": call["function"]["name"],
                        "arguments": call["function"]["arguments"],
                    },
                }
                for call in event["toolCalls"]
            ]
            self.finish_reason = "tool_calls"
            indexed = [{"index": i, **call} for i, call in enumerate(self.tool_calls)]
            return [self.chunk({"tool_calls": indexed}), self.chunk({}, "tool_calls")]
        elif kind == ev.FLOW_COMPLETED:
            self.result = result_text(event["result"])
            self.finish_reason = "stop"
            rest = self.answer.remainder(event["result"])
            chunks = [self.chunk({"content": rest})] if rest else []
            return [*chunks, self.chunk({}, "stop")]
        elif kind == ev.RUN_FAILED:
            error = event["error"]
            self.error = (error["code"], f"run {self.run_id} failed: {error['message']}")
        elif kind == ev.RUN_CANCELLED:
            self.error = (ErrorCode.RUN_CANCELLED, f"run {self.run_id} was cancelled")
        return []

    def usage(self) -> dict[str, int]:
        tokens = self.tokens
        return {
            "prompt_tokens": tokens.prompt,
            "completion_tokens": tokens.completion,
            "total_tokens": tokens.total,
        }

    def unfinished(self) -> tuple[str, str] | None:
        """The error to answer, if the segment did not end with an answer."""
        if self.error is not None:
            return self.error
        if self.finish_reason is None:
            return (ErrorCode.INTERNAL_ERROR, f"the events of run {self.run_id} ended early")
        return None

    def completion(self) -> dict[str, Any]:
        """The `chat.completion` of a segment that ended with an answer."""
        message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
        if self.tool_calls is not None:
            message["content"] = "".join(self.text) or None
            message["tool_calls"] = self.tool_calls
        else:
            message["content"] = self.result
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": self.finish_reason}
            ],
            "usage": self.usage(),
        }


async def complete(translation: ChatTranslation, events: SegmentEvents) -> None:
    """Read the whole segment into `translation`."""
    async with aclosing(events):
        async for event in events:
            if event is not None:
                translation.feed(event)


def _frame(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


async def stream_chunks(
    translation: ChatTranslation, events: SegmentEvents, *, include_usage: bool
) -> AsyncIterator[bytes]:
    """The SSE body of a streamed completion: a first chunk with the role, the answer's deltas,
    the tool calls or the final chunk, the usage chunk when asked for, then `[DONE]`. A run that
    fails after the response has started ends the stream with `data: {"error": ...}` (the OpenAI
    SDKs raise it as an APIError)."""
    yield _frame(translation.chunk({"role": "assistant", "content": ""}))
    async with aclosing(events):
        async for event in events:
            if event is None:
                yield PING
                continue
            chunks = translation.feed(event)
            if chunks:
                yield b"".join(_frame(chunk) for chunk in chunks)
    failure = translation.unfinished()
    if failure is not None:
        _, body = openai_error(failure[0], failure[1], during_run=True)
        yield _frame(body)
        return
    if include_usage:
        usage_chunk = translation.chunk({})
        usage_chunk["choices"] = []
        usage_chunk["usage"] = translation.usage()
        yield _frame(usage_chunk)
    yield DONE


def model_object(model_id: str, created: int, owner: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": owner}
