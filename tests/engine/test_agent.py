"""The agent tool loop with the deterministic `builtin:test` model: server tools run at once,
client tools pause with a resumable state, and the iteration bound holds."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import orjson
import pytest

from noukai_server.engine.agent import (
    AgentCall,
    AgentLoop,
    AgentLoopState,
    AgentResult,
    normalise_tool_results,
)
from noukai_server.engine.outcome import StepFailure
from noukai_server.engine.tools import default_tools
from noukai_server.providers import ModelRequest, ModelResponse, TestModel, ToolSpec

pytestmark = pytest.mark.anyio


class ListSink:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    async def emit(self, event_type: str, payload: Mapping[str, Any]) -> None:
        self.events.append((event_type, dict(payload)))

    async def checkpoint(self, next_step_index: int, state: Any) -> None:
        return None


async def fake_model(request: ModelRequest) -> tuple[ModelResponse, Decimal]:
    final = None
    async for item in TestModel().stream(request):
        if isinstance(item, ModelResponse):
            final = item
    assert final is not None
    return final, Decimal("0.000001")


def agent_call(**kwargs: Any) -> AgentCall:
    defaults: dict[str, Any] = {
        "step_id": "agent",
        "step_index": 0,
        "model": "test",
        "system": None,
        "prompt": "use the tools",
        "server_tools": [],
        "client_tools": [],
        "tool_choice": None,
        "max_iterations": 5,
    }
    return AgentCall(**{**defaults, **kwargs})


WEATHER = ToolSpec(
    "get_weather",
    "Weather",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


async def test_server_tool_result_reaches_the_answer() -> None:
    sink = ListSink()
    result = await AgentLoop(default_tools()).run(agent_call(server_tools=["word_count"]), sink, fake_model)
    assert isinstance(result, AgentResult)
    assert "word_count=1" in result.text  # TestModel sends text "a": one word
    assert result.iterations == 2
    kinds = [kind for kind, _ in sink.events]
    assert kinds == ["tool_call_started", "tool_call_completed"]
    completed = sink.events[1][1]
    assert completed["result"] == "1" and completed["side"] == "server"
    assert isinstance(completed["durationMs"], int)


async def test_client_tool_pauses_and_resumes() -> None:
    loop = AgentLoop(default_tools())
    sink = ListSink()
    paused = await loop.run(agent_call(client_tools=[WEATHER]), sink, fake_model)
    assert isinstance(paused, AgentLoopState)
    assert [p["function"]["name"] for p in paused.pending] == ["get_weather"]
    assert orjson.loads(paused.pending[0]["function"]["arguments"]) == {"city": "a"}
    restored = AgentLoopState.from_json(orjson.loads(orjson.dumps(paused.to_json())))
    results = normalise_tool_results(
        [*restored.messages, {"tool_call_id": restored.pending[0]["id"], "output": "sunny"}],
        [restored.pending[0]["id"]],
    )
    done = await loop.run(
        agent_call(client_tools=[WEATHER]), sink, fake_model, resume=restored, results=results
    )
    assert isinstance(done, AgentResult)
    assert "get_weather=sunny" in done.text
    assert done.iterations == 2


async def test_bad_server_tool_arguments_are_fed_back_not_fatal() -> None:
    sink = ListSink()
    result = await AgentLoop(default_tools()).run(agent_call(server_tools=["add"]), sink, fake_model)
    assert isinstance(result, AgentResult)
    assert "add=" in result.text  # TestModel's {"a": 0.0, "b": 0.0} works: 0.0
    assert sink.events[1][1].get("result") == "0.0"


async def test_iteration_limit() -> None:
    with pytest.raises(StepFailure) as info:
        await AgentLoop(default_tools()).run(
            agent_call(server_tools=["word_count"], max_iterations=1), ListSink(), fake_model
        )
    assert info.value.code == "TOOL_ITERATION_LIMIT"


def test_all_three_result_shapes_are_accepted() -> None:
    shapes: list[dict[str, Any]] = [
        {"tool_call_id": "c1", "output": "x"},
        {"role": "tool", "tool_call_id": "c2", "content": "y"},
        {"role": "tool", "toolCallId": "c3", "content": {"n": 1}},
    ]
    assert normalise_tool_results(shapes, ["c1", "c2", "c3"]) == [
        {"tool_call_id": "c1", "content": "x"},
        {"tool_call_id": "c2", "content": "y"},
        {"tool_call_id": "c3", "content": '{"n":1}'},
    ]
    with pytest.raises(ValueError, match="c9"):
        normalise_tool_results(shapes, ["c1", "c9"])
