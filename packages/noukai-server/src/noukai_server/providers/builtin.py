"""The deterministic models that need no key: `builtin:echo`, `builtin:test` and `builtin:flaky`.

They make flows testable and demonstrable offline: the same request always gives the same stream,
and all honour `request.extra["token_delay_ms"]` to stream slowly enough to watch or cancel.
`builtin:flaky` fails its first attempts on purpose, to exercise step retries.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncGenerator, Mapping

import anyio

from noukai_server.providers._schema_example import example_for_schema
from noukai_server.providers._words import count_words, word_chunks
from noukai_server.providers.base import (
    ChatMessage,
    ModelError,
    ModelEvent,
    ModelRequest,
    ModelResponse,
    ProviderBadRequest,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
    TextDelta,
    ToolCall,
    ToolSpec,
    Usage,
)

__all__ = ["EchoModel", "FlakyModel", "TestModel"]

NO_TOOLS_REPLY = "This is builtin:test answering without tools."


def _token_delay(request: ModelRequest) -> float:
    """Seconds to wait between chunks, from `extra["token_delay_ms"]` (the flow author's mistake if bad)."""
    raw = request.extra.get("token_delay_ms", 0)
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw) or raw < 0:
        raise ProviderBadRequest(f"token_delay_ms must be a non-negative number of milliseconds, not {raw!r}")
    return float(raw) / 1000.0


def _prompt_tokens(request: ModelRequest) -> int:
    return count_words(request.system, *(message.content for message in request.messages))


async def _pause_before(index: int, delay: float) -> None:
    """The wait before chunk `index`: none before the first, `delay` between the others."""
    if index and delay:
        # anyio's sleep, so that cancelling the consumer interrupts a slow stream at once.
        await anyio.sleep(delay)


class EchoModel:
    """`builtin:echo`: streams the last user message back, exactly, one word per delta."""

    async def stream(self, request: ModelRequest) -> AsyncGenerator[ModelEvent, None]:
        delay = _token_delay(request)
        prompt = next((m.content or "" for m in reversed(request.messages) if m.role == "user"), "")
        chunks = word_chunks(prompt)
        for index, chunk in enumerate(chunks):
            await _pause_before(index, delay)
            yield TextDelta(chunk)
        usage = Usage(prompt_tokens=_prompt_tokens(request), completion_tokens=len(chunks))
        yield ModelResponse(text=prompt, usage=usage, finish_reason="stop", model="echo")


_FLAKY_ERRORS: Mapping[str, type[ModelError]] = {
    "unavailable": ProviderUnavailable,
    "rate_limited": ProviderRateLimited,
    "timeout": ProviderTimeout,
    "bad_request": ProviderBadRequest,
}


def _count_param(request: ModelRequest, name: str, default: int) -> int:
    raw = request.extra.get(name, default)
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        raise ProviderBadRequest(f"{name} must be a non-negative integer, not {raw!r}")
    return raw


class FlakyModel:
    """`builtin:flaky`: fails attempts 1..`fail_times` of a step, then behaves like `builtin:echo`.

    Decided from `request.attempt` alone, so a retry in another process (after a crash) sees the
    same behaviour. Step `params`: `fail_times` (default 1), `fail_with` (`unavailable`, the
    default, `rate_limited` and `timeout` are retryable; `bad_request` is not) and
    `fail_after_words` (stream that many words of the answer before failing; default 0).
    """

    def __init__(self) -> None:
        self._echo = EchoModel()

    async def stream(self, request: ModelRequest) -> AsyncGenerator[ModelEvent, None]:
        fail_times = _count_param(request, "fail_times", 1)
        partial = _count_param(request, "fail_after_words", 0)
        kind = request.extra.get("fail_with", "unavailable")
        error = _FLAKY_ERRORS.get(kind) if isinstance(kind, str) else None
        if error is None:
            names = ", ".join(_FLAKY_ERRORS)
            raise ProviderBadRequest(f"fail_with must be one of {names}, not {kind!r}")
        if request.attempt > fail_times:
            async for event in self._echo.stream(request):
                yield event
            return
        delay = _token_delay(request)
        prompt = next((m.content or "" for m in reversed(request.messages) if m.role == "user"), "")
        for index, chunk in enumerate(word_chunks(prompt)[:partial]):
            await _pause_before(index, delay)
            yield TextDelta(chunk)
        raise error(f"builtin:flaky fails attempt {request.attempt} of {fail_times} on purpose")


def _offered_tools(request: ModelRequest) -> tuple[ToolSpec, ...]:
    """The tools `builtin:test` should call, after `tool_choice` has had its say."""
    choice = request.tool_choice
    if choice == "none":
        return ()
    if not isinstance(choice, Mapping):
        return request.tools
    # A forced tool: OpenAI's {"type": "function", "function": {"name"}} or Anthropic's {"name"}.
    function = choice.get("function")
    name = function.get("name") if isinstance(function, Mapping) else choice.get("name")
    if name is None and choice.get("type") in ("auto", "any", "required"):
        return request.tools
    chosen = tuple(tool for tool in request.tools if tool.name == name)
    if not chosen:
        raise ProviderBadRequest(f"tool_choice names {name!r}, which is not among the offered tools")
    return chosen


def _current_turn(messages: tuple[ChatMessage, ...]) -> tuple[ChatMessage, ...]:
    """The messages after the last user message: tool calls of earlier turns do not count."""
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].role == "user":
            return messages[index + 1 :]
    return messages


def _arguments_for(tool: ToolSpec) -> str:
    return json.dumps(example_for_schema(tool.parameters), separators=(",", ":"))


class TestModel:
    """`builtin:test`: calls every offered tool once, then answers with all their results.

    The first call returns one tool call per tool, with arguments built from the tool's JSON schema;
    once the conversation holds a result for each of them, it streams `tool results: a=..; b=..`.
    """

    __test__ = False  # not a pytest test class, despite its name

    async def stream(self, request: ModelRequest) -> AsyncGenerator[ModelEvent, None]:
        delay = _token_delay(request)
        tools = _offered_tools(request)
        turn = _current_turn(request.messages)
        called: dict[str, ToolCall] = {}
        for message in turn:
            if message.role == "assistant":
                called.update((call.name, call) for call in message.tool_calls)
        results = {m.tool_call_id: m.content or "" for m in turn if m.role == "tool"}

        pending = tuple(
            ToolCall(id=f"call_{index}_{tool.name}", name=tool.name, arguments=_arguments_for(tool))
            for index, tool in enumerate(tools)
            if tool.name not in called
        )
        if pending:
            usage = Usage(prompt_tokens=_prompt_tokens(request), completion_tokens=len(pending))
            yield ModelResponse(
                text="", tool_calls=pending, usage=usage, finish_reason="tool_calls", model="test"
            )
            return

        text = _answer(tools, called, results)
        chunks = word_chunks(text)
        for index, chunk in enumerate(chunks):
            await _pause_before(index, delay)
            yield TextDelta(chunk)
        usage = Usage(prompt_tokens=_prompt_tokens(request), completion_tokens=len(chunks))
        yield ModelResponse(text=text, usage=usage, finish_reason="stop", model="test")


def _answer(
    tools: tuple[ToolSpec, ...], called: Mapping[str, ToolCall], results: Mapping[str | None, str]
) -> str:
    if not tools:
        return NO_TOOLS_REPLY
    parts = [f"{tool.name}={results.get(called[tool.name].id, '')}" for tool in tools]
    return "tool results: " + "; ".join(parts)
