"""The agent pause in a run's stored state: typed on the way in and out, the same JSON as before."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest

from noukai_server.engine.agent import AgentLoopState
from noukai_server.engine.state import RunState, agent_state, awaits_tool_results, paused_agent

CALL = {
    "id": "call_0_get_weather",
    "type": "function",
    "function": {"name": "get_weather", "arguments": "{}"},
}
STORED: dict[str, Any] = {
    "outputs": {"prepare": "Question: weather?"},
    "skipped": [],
    "resultStep": "prepare",
    "promptTokens": 0,
    "completionTokens": 0,
    "costMicroUsd": 0,
    "agent": {
        "stepId": "agent",
        "stepIndex": 1,
        "attempt": 1,
        "pause": {
            "pausedAt": 1700000000.5,
            "messages": [
                {"role": "user", "content": "Question: weather?"},
                {"role": "assistant", "content": None, "tool_calls": [CALL]},
            ],
            "pending": [CALL],
            "iterations": 1,
            "promptTokens": 2,
            "completionTokens": 1,
            "costMicroUsd": 0,
        },
    },
}
"""A run's `state` column as the server wrote it before the pause was typed (and before costs
were kept exactly: `costMicroUsd`, whole millionths of a dollar)."""


def _exact_cost(stored: dict[str, Any]) -> dict[str, Any]:
    """`stored` as written now: its `costMicroUsd` becomes an exact `costUsd`, in its place."""
    return {
        ("costUsd" if k == "costMicroUsd" else k): (str(v) if k == "costMicroUsd" else v)
        for k, v in stored.items()
    }


def test_a_stored_state_loads_and_is_written_back_unchanged() -> None:
    state = RunState.from_json(orjson.loads(orjson.dumps(STORED)))
    assert state.agent is not None and state.agent["pause"]["pending"][0]["id"] == CALL["id"]
    # The pause is kept as stored (its loop writes it anew when it pauses again).
    written = _exact_cost(STORED)
    assert orjson.dumps(state.to_json()) == orjson.dumps(written)  # same keys, same order
    loop = AgentLoopState.from_json(state.agent["pause"])
    assert orjson.dumps(loop.to_json()) == orjson.dumps(_exact_cost(STORED["agent"]["pause"]))
    again = RunState.from_json(orjson.loads(orjson.dumps(state.to_json())))
    assert orjson.dumps(again.to_json()) == orjson.dumps(written)


def test_a_pause_without_its_totals_still_loads() -> None:
    pause = {k: v for k, v in STORED["agent"]["pause"].items() if k in ("messages", "pending", "iterations")}
    loop = AgentLoopState.from_json(pause)  # type: ignore[arg-type]
    assert (loop.iterations, loop.prompt_tokens, loop.cost_usd, loop.paused_at) == (1, 0, Decimal(0), None)


def test_the_accessors() -> None:
    assert agent_state(None) is None and agent_state({"agent": None}) is None and agent_state({}) is None
    waiting = agent_state(STORED)
    assert waiting is not None and awaits_tool_results(waiting)
    answered = {**STORED["agent"], "results": [{"tool_call_id": CALL["id"], "content": "sunny"}]}
    assert not awaits_tool_results(agent_state({"agent": answered}))
    assert not awaits_tool_results(None)
    assert paused_agent(STORED)["stepId"] == "agent"
    with pytest.raises(LookupError):
        paused_agent({"outputs": {}})
