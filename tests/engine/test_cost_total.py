"""Costs are summed exactly and rounded once: a run's total, an agent step's cost over its model
calls and an agent pause keep every digit, and only the wire's `costUsd` string rounds (the same
rule, `format_cost`, for a step and for the run).

The figures are real list prices: gpt-4o-mini costs $0.15 / $0.60 per million prompt / completion
tokens, so 4 + 3 tokens cost $0.0000024 and 8 + 6 tokens $0.0000048 ("0.000005" on the wire).
Summing whole micro-dollars would lose the fractions: 2 + 2 = 4 micro-dollars, "0.000004".
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest

from noukai_server.engine.agent import AgentLoop, AgentLoopState, AgentResult, normalise_tool_results
from noukai_server.engine.state import RunState
from noukai_server.engine.tools import default_tools
from noukai_server.providers import ModelRequest, ModelResponse, PriceTable, TestModel, Usage, format_cost
from tests.conftest import ServerProcess
from tests.engine.test_agent import WEATHER, ListSink, agent_call
from tests.fakeprovider import FakeProvider, Reply
from tests.server.test_providers_e2e import step_events

SMALL = Usage(prompt_tokens=4, completion_tokens=3)
"""$0.0000024 of gpt-4o-mini: 2.4 micro-dollars."""


def test_the_figures() -> None:
    cost = PriceTable().cost_usd("openai", "gpt-4o-mini", SMALL)
    assert cost == Decimal("0.0000024") and format_cost(cost) == "0.000002"
    assert format_cost(cost + cost) == "0.000005"


async def priced_model(request: ModelRequest) -> tuple[ModelResponse, Decimal]:
    """`builtin:test`'s answers, each priced as 4 + 3 tokens of gpt-4o-mini."""
    final = None
    async for item in TestModel().stream(request):
        if isinstance(item, ModelResponse):
            final = item
    assert final is not None
    return final, PriceTable().cost_usd("openai", "gpt-4o-mini", SMALL)


@pytest.mark.anyio
async def test_an_agent_step_sums_its_model_calls_exactly() -> None:
    result = await AgentLoop(default_tools()).run(
        agent_call(server_tools=["word_count"]), ListSink(), priced_model
    )
    assert isinstance(result, AgentResult) and result.iterations == 2
    assert result.cost == Decimal("0.0000048")
    assert format_cost(result.cost) == "0.000005"


@pytest.mark.anyio
async def test_an_agent_pause_keeps_the_exact_cost() -> None:
    loop = AgentLoop(default_tools())
    paused = await loop.run(agent_call(client_tools=[WEATHER]), ListSink(), priced_model)
    assert isinstance(paused, AgentLoopState)
    stored = orjson.loads(orjson.dumps(paused.to_json()))
    assert stored["costUsd"] == "0.0000024"
    restored = AgentLoopState.from_json(stored)
    results = normalise_tool_results(
        [{"tool_call_id": restored.pending[0]["id"], "output": "sunny"}], [restored.pending[0]["id"]]
    )
    done = await loop.run(
        agent_call(client_tools=[WEATHER]), ListSink(), priced_model, resume=restored, results=results
    )
    assert isinstance(done, AgentResult)
    assert done.cost == Decimal("0.0000048") and format_cost(done.cost) == "0.000005"


def test_a_run_state_keeps_the_exact_cost() -> None:
    state = RunState()
    state.cost_usd += Decimal("0.0000024")
    stored = orjson.loads(orjson.dumps(state.to_json()))
    assert stored["costUsd"] == "0.0000024" and "costMicroUsd" not in stored
    assert RunState.from_json(stored).cost_usd == Decimal("0.0000024")


def test_states_stored_in_micro_dollars_still_load() -> None:
    assert RunState.from_json({"costMicroUsd": 7}).cost_usd == Decimal("0.000007")
    assert RunState.from_json({}).cost_usd == 0
    pause: Any = {"messages": [], "pending": [], "iterations": 1, "costMicroUsd": 3}
    assert AgentLoopState.from_json(pause).cost_usd == Decimal("0.000003")


def _run(
    server: ServerProcess, replies: list[tuple[int, int]], provider: FakeProvider
) -> list[dict[str, Any]]:
    slug = f"cost-{uuid.uuid4().hex[:8]}"
    steps = [
        {"id": f"s{n}", "type": "llm", "model": "openai:gpt-4o-mini", "prompt": "{{ message }}"}
        for n in range(len(replies))
    ]
    server.put_flow(server.dev_key, "dev", "main", {"slug": slug, "steps": steps})
    provider.script(*(Reply(chunks=["ok"], usage=usage) for usage in replies))
    response = httpx.post(
        f"{server.api_url}/seq/dev/main/{slug}/execute",
        json={"message": "hi"},
        headers={"Authorization": f"Bearer {server.dev_key}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return step_events(server, response.json()["executionId"])


def _costs(events: list[dict[str, Any]]) -> tuple[list[str], str]:
    steps = [e["costUsd"] for e in events if e["eventType"] == "step_completed"]
    (total,) = [e["summary"]["costUsd"] for e in events if e["eventType"] == "flow_completed"]
    return steps, total


def test_a_run_total_is_the_exact_sum_rounded_once(make_server: Any) -> None:
    with FakeProvider(api_key="sk-right") as provider:
        server = make_server({"OPENAI_BASE_URL": provider.openai_base_url, "OPENAI_API_KEY": "sk-right"})
        # One step of 8 + 6 tokens: the step and the run cost the same, rounded the same way.
        assert _costs(_run(server, [(8, 6)], provider)) == (["0.000005"], "0.000005")
        # Two steps of 4 + 3 tokens: each rounds down, their exact sum rounds up.
        assert _costs(_run(server, [(4, 3), (4, 3)], provider)) == (
            ["0.000002", "0.000002"],
            "0.000005",
        )
