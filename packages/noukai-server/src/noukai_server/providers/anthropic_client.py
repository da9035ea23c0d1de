"""`anthropic:<model>` through the official SDK's Messages API, streamed.

Requests come in the OpenAI-like shape of `base.py` and are mapped to Anthropic's: the system
prompt is a parameter, tool calls are `tool_use` blocks, tool results are `tool_result` blocks in
a user message, and `max_tokens` is mandatory. Finish reasons are mapped back to the OpenAI
vocabulary (`stop`, `tool_calls`, `length`) so the engine sees one set of values.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import Any

import anthropic
import anyio
import httpx2
from anthropic.types import (
    InputJSONDelta,
    MessageParam,
    RawContentBlockDeltaEvent,
    RawContentBlockStartEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
    RawMessageStreamEvent,
    ThinkingDelta,
    ToolResultBlockParam,
    ToolUseBlock,
    UserMessageParam,
)
from anthropic.types import TextDelta as AnthropicTextDelta

from noukai_server.providers import _errors
from noukai_server.providers.base import (
    ChatMessage,
    ModelError,
    ModelEvent,
    ModelRequest,
    ModelResponse,
    ProviderBadRequest,
    ReasoningDelta,
    TextDelta,
    ToolCall,
    ToolChoice,
    Usage,
)

__all__ = ["DEFAULT_ANTHROPIC_BASE_URL", "DEFAULT_MAX_TOKENS", "AnthropicMessagesClient"]

DEFAULT_ANTHROPIC_BASE_URL = "https://api.anthropic.com"
DEFAULT_MAX_TOKENS = 1024
"""Sent when the step sets no `max_tokens`: Anthropic refuses a request without one."""

_RESERVED_EXTRA = frozenset({"model", "messages", "stream"})

_FINISH_REASONS: Mapping[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "refusal": "content_filter",
}


@dataclass(slots=True)
class _ToolUseParts:
    id: str
    name: str
    initial_input: object
    json_parts: list[str] = field(default_factory=list)

    def build(self) -> ToolCall:
        arguments = "".join(self.json_parts)
        if not arguments:
            # No input_json_delta at all: the whole input (normally `{}`) came with the block.
            arguments = json.dumps(self.initial_input if self.initial_input is not None else {})
        return ToolCall(id=self.id, name=self.name, arguments=arguments)


def _tool_input(call: ToolCall) -> dict[str, Any]:
    try:
        value = json.loads(call.arguments or "{}")
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise ProviderBadRequest(
            f"tool call {call.id} ({call.name}) has arguments that are not a JSON object; "
            "Anthropic needs an object as tool input"
        )
    return value


def _assistant_message(message: ChatMessage) -> MessageParam:
    if not message.tool_calls:
        return {"role": "assistant", "content": message.content or ""}
    blocks: list[Any] = []
    if message.content:
        blocks.append({"type": "text", "text": message.content})
    blocks.extend(
        {"type": "tool_use", "id": call.id, "name": call.name, "input": _tool_input(call)}
        for call in message.tool_calls
    )
    return {"role": "assistant", "content": blocks}


def _tool_result(message: ChatMessage) -> ToolResultBlockParam:
    if not message.tool_call_id:
        raise ProviderBadRequest("a tool message needs the tool_call_id of the call it answers")
    return {"type": "tool_result", "tool_use_id": message.tool_call_id, "content": message.content or ""}


def _messages(messages: tuple[ChatMessage, ...]) -> list[MessageParam]:
    result: list[MessageParam] = []
    pending_results: list[ToolResultBlockParam] = []
    for message in messages:
        if message.role == "tool":
            # Consecutive tool results travel together in one user message, as Anthropic expects.
            pending_results.append(_tool_result(message))
            continue
        if pending_results:
            result.append(UserMessageParam(role="user", content=pending_results))
            pending_results = []
        if message.role == "assistant":
            result.append(_assistant_message(message))
        else:
            result.append({"role": "user", "content": message.content or ""})
    if pending_results:
        result.append(UserMessageParam(role="user", content=pending_results))
    return result


def _tool_choice(choice: ToolChoice) -> dict[str, Any]:
    if choice == "auto":
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    function = choice.get("function")
    if choice.get("type") == "function" and isinstance(function, Mapping) and "name" in function:
        # OpenAI's way to force one tool, which flows written for both providers will use.
        return {"type": "tool", "name": function["name"]}
    return dict(choice)


def build_params(request: ModelRequest) -> dict[str, Any]:
    """The keyword arguments of `messages.create` for `request` (pure, no I/O)."""
    reserved = _RESERVED_EXTRA.intersection(request.extra)
    if reserved:
        raise ProviderBadRequest(f"extra may not override {', '.join(sorted(reserved))}")
    params: dict[str, Any] = {
        "model": request.model,
        "messages": _messages(request.messages),
        "max_tokens": request.max_tokens if request.max_tokens is not None else DEFAULT_MAX_TOKENS,
        "stream": True,
    }
    if request.system:
        params["system"] = request.system
    if request.tools:
        params["tools"] = [
            {
                "name": t.name,
                "input_schema": t.parameters,
                **({"description": t.description} if t.description else {}),
            }
            for t in request.tools
        ]
        if request.tool_choice is not None:
            params["tool_choice"] = _tool_choice(request.tool_choice)
    body: dict[str, Any] = {}
    if request.temperature is not None:
        # The 2.x SDK no longer has a `temperature` argument; sent as a body field, it still
        # reaches the API, which accepts it for the models that support it and says so otherwise.
        body["temperature"] = request.temperature
    body.update(request.extra)
    if body:
        params["extra_body"] = body
    return params


@dataclass(slots=True)
class _Accumulator:
    """What the stream has said so far, turned into the final `ModelResponse` at the end."""

    text: list[str] = field(default_factory=list)
    tools: dict[int, _ToolUseParts] = field(default_factory=dict)
    input_tokens: int = 0
    output_tokens: int = 0
    stop_reason: str | None = None
    model: str | None = None

    def response(self) -> ModelResponse:
        stop = self.stop_reason
        return ModelResponse(
            text="".join(self.text),
            tool_calls=tuple(self.tools[index].build() for index in sorted(self.tools)),
            usage=Usage(self.input_tokens, self.output_tokens),
            finish_reason=_FINISH_REASONS.get(stop, stop) if stop else None,
            model=self.model,
        )

    def feed(self, event: RawMessageStreamEvent) -> ModelEvent | None:
        """Take in one stream event; return the delta to yield for it, if any."""
        if isinstance(event, RawMessageStartEvent):
            usage = event.message.usage
            # Cached input is billed input too, reported apart; the total is the prompt size.
            self.input_tokens = (
                usage.input_tokens
                + (usage.cache_creation_input_tokens or 0)
                + (usage.cache_read_input_tokens or 0)
            )
            self.output_tokens = usage.output_tokens
            self.model = event.message.model
        elif isinstance(event, RawContentBlockStartEvent):
            block = event.content_block
            if isinstance(block, ToolUseBlock):
                self.tools[event.index] = _ToolUseParts(block.id, block.name, block.input)
        elif isinstance(event, RawContentBlockDeltaEvent):
            delta = event.delta
            if isinstance(delta, AnthropicTextDelta) and delta.text:
                self.text.append(delta.text)
                return TextDelta(delta.text)
            if isinstance(delta, ThinkingDelta) and delta.thinking:
                return ReasoningDelta(delta.thinking)
            if isinstance(delta, InputJSONDelta) and event.index in self.tools:
                self.tools[event.index].json_parts.append(delta.partial_json)
        elif isinstance(event, RawMessageDeltaEvent):
            # message_delta's usage is cumulative, so it replaces rather than adds.
            self.output_tokens = event.usage.output_tokens
            self.stop_reason = event.delta.stop_reason or self.stop_reason
        return None


class AnthropicMessagesClient:
    """A `ModelClient` for Anthropic's Messages API (one API key, one base URL)."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None = None,
        timeout: float = 120.0,
        provider: str = "anthropic",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.provider = provider
        self.base_url = base_url or DEFAULT_ANTHROPIC_BASE_URL
        self._api_key = api_key
        self._timeout = timeout
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=self.base_url,
            max_retries=0,
            timeout=timeout,
            default_headers=dict(headers) if headers else None,
        )

    async def aclose(self) -> None:
        await self._client.close()

    def _error(self, exc: Exception) -> ModelError:
        # The SDK wraps transport errors while connecting but not while reading the stream, so
        # the raw httpx2 errors are mapped here as well.
        if isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException):
            return _errors.timeout_error(self.provider, self._timeout)
        if isinstance(exc, anthropic.APIConnectionError | httpx2.TransportError):
            return _errors.connection_error(self.provider, self.base_url)
        if isinstance(exc, anthropic.APIStatusError):
            detail = exc.api_message or _errors.body_message(exc.body) or exc.message
            if exc.request_id:
                detail += f" (request id {exc.request_id})"
            if exc.status_code < 400:
                # An `event: error` inside a 200 stream: the error's type is all there is to go by.
                return _errors.error_for_stream_type(self.provider, exc.type, detail, secret=self._api_key)
            return _errors.error_for_status(self.provider, exc.status_code, detail, secret=self._api_key)
        if isinstance(exc, anthropic.APIError):
            return _errors.error_for_stream_type(self.provider, None, exc.message, secret=self._api_key)
        return _errors.malformed_stream(self.provider)

    async def stream(self, request: ModelRequest) -> AsyncGenerator[ModelEvent, None]:
        params = build_params(request)
        try:
            sdk_stream: anthropic.AsyncStream[RawMessageStreamEvent] = await self._client.messages.create(
                **params
            )
        except (anthropic.APIError, httpx2.TransportError) as exc:
            _errors.raise_mapped(self._error(exc), exc)

        state = _Accumulator()
        try:
            async for event in sdk_stream:
                delta = state.feed(event)
                if delta is not None:
                    yield delta
        except (anthropic.APIError, httpx2.TransportError, json.JSONDecodeError) as exc:
            _errors.raise_mapped(self._error(exc), exc)
        finally:
            # Close rather than drain, shielded so cancellation cannot skip it (see openai_client).
            with anyio.CancelScope(shield=True):
                await sdk_stream.close()
        yield state.response()
