"""Client-side tools with the published SDK: pause, run the caller's handler, resume; on both the
JSON path (`execute`) and the SSE path (`events`)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.compat.conftest import noukai_sdk

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def handler(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # The README's shape: {"tool_call_id", "output"}, no role.
    return [
        {"tool_call_id": c["id"], "output": f"sunny in {json.loads(c['function']['arguments'])['city']}"}
        for c in calls
    ]


async def async_handler(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # The docstring's shape: {"role": "tool", "tool_call_id", "content"}.
    return [{"role": "tool", "tool_call_id": c["id"], "content": "rainy"} for c in calls]


def test_sync_execute_with_a_tool_handler_runs_several_rounds(client: Any) -> None:
    rounds: list[int] = []

    def counting(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
        rounds.append(len(calls))
        return handler(calls)

    result = client.flow("assistant").execute(message="weather?", tools=[WEATHER], tool_handler=counting)
    assert result.status == "completed"
    assert result.result == "tool results: get_weather=sunny in a"
    assert rounds == [1, 1]


@pytest.mark.anyio
@pytest.mark.parametrize("use_async_handler", [False, True])
async def test_async_execute_with_sync_and_async_handlers(
    async_client_factory: Any, use_async_handler: bool
) -> None:
    async with async_client_factory() as sdk:
        result = await sdk.flow("assistant").execute(
            message="weather?", tools=[WEATHER], tool_handler=async_handler if use_async_handler else handler
        )
    expected = "rainy" if use_async_handler else "sunny in a"
    assert result.result == f"tool results: get_weather={expected}"


@pytest.mark.anyio
async def test_the_manual_resume_loop(async_client_factory: Any) -> None:
    async with async_client_factory() as sdk:
        result = await sdk.flow("assistant").execute(message="weather?", tools=[WEATHER])
        pauses = 0
        while result.status == "tool_calls_required":
            pauses += 1
            assert result.paused_at_step in ("agent", "follow_up")
            tool_results = [
                {"role": "tool", "toolCallId": c["id"], "content": "cloudy"} for c in result.tool_calls
            ]
            result = await result.resume(tool_results=tool_results)
    assert pauses == 2
    assert result.result == "tool results: get_weather=cloudy"


def test_max_tool_rounds_is_honoured(client: Any) -> None:
    with pytest.raises(noukai_sdk.ToolCallLimitError):
        client.flow("assistant").execute(
            message="weather?", tools=[WEATHER], tool_handler=handler, max_tool_rounds=1
        )


def test_events_with_a_tool_handler_complete(client: Any) -> None:
    events = list(client.flow("assistant").events(message="w?", tools=[WEATHER], tool_handler=handler))
    names = [type(e).__name__ for e in events]
    assert names[-1] == "FlowCompleted"
    assert "ToolCallsRequired" not in names
    assert events[-1].result == "tool results: get_weather=sunny in a"


@pytest.mark.anyio
async def test_async_events_without_a_handler_resume_from_the_event(async_client_factory: Any) -> None:
    async with async_client_factory() as sdk:
        seen: list[str] = []
        async for event in sdk.flow("assistant").events(message="w?", tools=[WEATHER]):
            seen.append(type(event).__name__)
            if type(event).__name__ == "ToolCallsRequired":
                assert isinstance(event.step_index, int) and event.step_index in (1, 2)
                await event.resume(
                    tool_results=[
                        {"role": "tool", "tool_call_id": c["id"], "content": "windy"}
                        for c in event.tool_calls
                    ]
                )
    assert seen.count("ToolCallsRequired") == 2
    assert seen[-1] == "FlowCompleted"


def test_server_side_tool_completes_without_the_caller(client: Any) -> None:
    result = client.flow("counter").execute(message="one two three")
    assert result.result == "tool results: word_count=1"
