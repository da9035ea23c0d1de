"""`openai:<model>` and any OpenAI-compatible server, through the official SDK's Chat Completions.

Chat Completions rather than the Responses API because it is what vLLM, Ollama, llama.cpp and
OpenRouter all speak. The SDK never retries (`max_retries=0`): retrying is the engine's decision,
made per step, and visible in the trace as attempts.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
import openai
from openai.types.chat import (
    ChatCompletionChunk,
    ChatCompletionMessageParam,
    ChatCompletionToolUnionParam,
)

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
    Usage,
)

__all__ = ["DEFAULT_OPENAI_BASE_URL", "OpenAIChatClient"]

DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"

# Keys of `extra` that would break the request we build rather than tune it.
_RESERVED_EXTRA = frozenset({"model", "messages", "stream"})

# OpenAI-compatible servers disagree on where reasoning text goes: DeepSeek and vLLM use
# `reasoning_content`, OpenRouter and Ollama `reasoning`. Neither is in the SDK's delta model.
_REASONING_FIELDS = ("reasoning_content", "reasoning")


@dataclass(slots=True)
class _ToolCallParts:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)

    def build(self, index: int) -> ToolCall:
        # Some compatible servers omit ids or send "" for a call without arguments; the engine
        # needs an id to match results and JSON to parse, so both get a safe default.
        return ToolCall(
            id=self.id or f"call_{index}",
            name=self.name,
            arguments="".join(self.arguments) or "{}",
        )


def _message_param(message: ChatMessage) -> ChatCompletionMessageParam:
    if message.role == "tool":
        if not message.tool_call_id:
            raise ProviderBadRequest("a tool message needs the tool_call_id of the call it answers")
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content or ""}
    if message.role == "assistant":
        # `content: null` is only valid next to tool calls; a bare empty answer is sent as "".
        content = message.content if message.tool_calls else message.content or ""
        assistant: dict[str, Any] = {"role": "assistant", "content": content}
        if message.tool_calls:
            assistant["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in message.tool_calls
            ]
        if message.name:
            assistant["name"] = message.name
        return assistant  # type: ignore[return-value]  # built as a dict to add keys conditionally
    if message.name:
        return {"role": "user", "content": message.content or "", "name": message.name}
    return {"role": "user", "content": message.content or ""}


def build_params(request: ModelRequest) -> dict[str, Any]:
    """The keyword arguments of `chat.completions.create` for `request` (pure, no I/O)."""
    reserved = _RESERVED_EXTRA.intersection(request.extra)
    if reserved:
        raise ProviderBadRequest(f"extra may not override {', '.join(sorted(reserved))}")
    messages: list[ChatCompletionMessageParam] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    messages.extend(_message_param(message) for message in request.messages)
    params: dict[str, Any] = {
        "model": request.model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if request.tools:
        tools: list[ChatCompletionToolUnionParam] = []
        for tool in request.tools:
            function: dict[str, Any] = {"name": tool.name, "parameters": tool.parameters}
            if tool.description:
                function["description"] = tool.description
            tools.append({"type": "function", "function": function})  # type: ignore[typeddict-item]
        params["tools"] = tools
        # Only next to tools: OpenAI rejects a tool_choice when no tools are offered.
        if request.tool_choice is not None:
            params["tool_choice"] = request.tool_choice
    if request.temperature is not None:
        params["temperature"] = request.temperature
    if request.max_tokens is not None:
        params["max_tokens"] = request.max_tokens
    if request.extra:
        # `extra_body` is merged into the JSON body last, so unknown and newer parameters pass
        # through without the SDK having to know them.
        params["extra_body"] = dict(request.extra)
    return params


def _reasoning_text(delta: Any) -> str | None:
    extra = getattr(delta, "model_extra", None) or {}
    for name in _REASONING_FIELDS:
        value = extra.get(name)
        if isinstance(value, str) and value:
            return value
    return None


class OpenAIChatClient:
    """A `ModelClient` for one OpenAI-compatible endpoint (one API key, one base URL)."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None = None,
        timeout: float = 120.0,
        provider: str = "openai",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.provider = provider
        self.base_url = base_url or DEFAULT_OPENAI_BASE_URL
        self._api_key = api_key
        self._timeout = timeout
        # An explicit base URL keeps the SDK from reading OPENAI_BASE_URL behind the settings' back.
        self._client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=self.base_url,
            max_retries=0,
            timeout=timeout,
            default_headers=dict(headers) if headers else None,
        )

    async def aclose(self) -> None:
        await self._client.close()

    def _error(self, exc: Exception) -> ModelError:
        if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
            return _errors.timeout_error(self.provider, self._timeout)
        if isinstance(exc, openai.APIConnectionError | httpx2.TransportError):
            return _errors.connection_error(self.provider, self.base_url)
        if isinstance(exc, openai.APIStatusError):
            detail = _errors.body_message(exc.body) or exc.message
            if exc.request_id:
                detail += f" (request id {exc.request_id})"
            return _errors.error_for_status(self.provider, exc.status_code, detail, secret=self._api_key)
        if isinstance(exc, openai.APIError):
            # An `{"error": ...}` object inside a 200 stream.
            detail = _errors.body_message(exc.body) or exc.message
            kind = exc.code or exc.type
            return _errors.error_for_stream_type(self.provider, kind, detail, secret=self._api_key)
        return _errors.malformed_stream(self.provider)

    async def stream(self, request: ModelRequest) -> AsyncGenerator[ModelEvent, None]:
        params = build_params(request)
        try:
            sdk_stream: openai.AsyncStream[ChatCompletionChunk] = await self._client.chat.completions.create(
                **params
            )
        except (openai.APIError, httpx2.TransportError) as exc:
            _errors.raise_mapped(self._error(exc), exc)

        text: list[str] = []
        calls: dict[int, _ToolCallParts] = {}
        usage = Usage()
        finish_reason: str | None = None
        model: str | None = None
        try:
            async for chunk in sdk_stream:
                model = chunk.model or model
                if chunk.usage is not None:
                    usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                for choice in chunk.choices:
                    if choice.index != 0:
                        continue  # n > 1 is not supported; only the first choice is the answer
                    finish_reason = choice.finish_reason or finish_reason
                    delta = choice.delta
                    reasoning = _reasoning_text(delta)
                    if reasoning:
                        yield ReasoningDelta(reasoning)
                    if delta.content:
                        text.append(delta.content)
                        yield TextDelta(delta.content)
                    for part in delta.tool_calls or ():
                        parts = calls.setdefault(part.index, _ToolCallParts())
                        parts.id = parts.id or part.id or ""
                        if part.function is not None:
                            # Some servers repeat the name on every fragment: keep the first.
                            parts.name = parts.name or part.function.name or ""
                            if part.function.arguments:
                                parts.arguments.append(part.function.arguments)
        except (openai.APIError, httpx2.TransportError, json.JSONDecodeError) as exc:
            _errors.raise_mapped(self._error(exc), exc)
        finally:
            # Closing (not draining) the response is what makes cancellation cheap; shielded so an
            # anyio cancel scope that is already cancelled cannot skip it and leak the connection.
            with anyio.CancelScope(shield=True):
                await sdk_stream.close()

        tool_calls = tuple(calls[index].build(index) for index in sorted(calls))
        yield ModelResponse(
            text="".join(text),
            tool_calls=tool_calls,
            usage=usage,
            finish_reason=finish_reason,
            model=model,
        )
