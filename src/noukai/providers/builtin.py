"""The two deterministic models that need no key: `builtin:echo` and `builtin:test`.

They make flows testable and demonstrable offline: the same request always gives the same stream,
and both honour `request.extra["token_delay_ms"]` to stream slowly enough to watch or cancel.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncGenerator, Mapping

import anyio

from noukai.providers._schema_example import example_for_schema
from noukai.providers._words import count_words, word_chunks
from noukai.providers.base import (
    ChatMessage,
    ModelEvent,
    ModelRequest,
    ModelResponse,
    ProviderBadRequest,
    TextDelta,
    ToolCall,
    ToolSpec,
    Usage,
)

__all__ = ["EchoModel", "TestModel"]

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
