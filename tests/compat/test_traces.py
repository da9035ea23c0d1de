"""`run(id).trace()` and `run(id).step_trace(...)` of the published SDK: every attempt form
validates against the SDK's own models and carries tokens and cost."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from tests.compat.conftest import noukai_sdk
from tests.conftest import ServerProcess

COST = re.compile(r"^\d+\.\d{6}$")


def check(trace: Any, *, status: str = "completed") -> None:
    assert isinstance(trace, noukai_sdk.StepTrace)
    assert trace.status == status and trace.attempt >= 1
    assert trace.tokens is not None and trace.tokens.total == trace.tokens.prompt + trace.tokens.completion
    assert trace.cost_usd is not None and COST.match(trace.cost_usd)
    assert trace.started_at and trace.completed_at and isinstance(trace.duration_ms, int)


def test_run_trace_of_an_execute(client: Any) -> None:
    result = client.flow("three-steps").execute(message="traced")
    trace = client.flow("three-steps").run(result.execution_id).trace()
    assert isinstance(trace, noukai_sdk.Trace)
    assert trace.flow_run.id == result.execution_id and trace.flow_run.flow_id == result.flow_id
    assert (trace.flow_run.status, trace.flow_run.trigger_type, trace.flow_run.step_count) == (
        "completed",
        "execute",
        3,
    )
    assert (
        trace.flow_run.started_at
        and trace.flow_run.completed_at
        and isinstance(trace.flow_run.duration_ms, int)
    )
    assert [s.step_id for s in trace.steps] == ["one", "two", "three"]
    for step in trace.steps:
        check(step)
        assert step.tokens.total > 0 and step.model_used == "builtin:echo"
        assert step.input_context is not None and step.output_context is not None
        assert isinstance(step.input_size_bytes, int) and isinstance(step.output_size_bytes, int)
        assert step.truncated is False
    assert trace.steps[-1].output_context == {"output": result.result}


def test_every_attempt_form(client: Any) -> None:
    result = client.flow("three-steps").execute(message="forms")
    run = client.flow("three-steps").run(result.execution_id)
    latest = run.step_trace("two")
    check(latest)
    assert run.step_trace("two", attempt="latest") == latest
    assert run.step_trace("two", attempt=1) == latest
    attempts = run.step_trace("two", attempt="all")
    assert isinstance(attempts, noukai_sdk.StepAttempts)
    assert attempts.step_id == "two" and attempts.attempts == [latest]


def test_a_model_that_fails_once_shows_two_attempts(client: Any, server: ServerProcess) -> None:
    slug = f"flaky-{uuid.uuid4().hex[:6]}"
    server.put_flow(
        server.dev_key,
        "dev",
        "main",
        {
            "slug": slug,
            "retry": {"initial_backoff_seconds": 0.01},
            "steps": [{"id": "ask", "type": "llm", "model": "builtin:flaky", "prompt": "{{ message }}"}],
        },
    )
    result = client.flow(slug).execute(message="second time lucky")
    assert result.result == "second time lucky"
    run = client.flow(slug).run(result.execution_id)
    first, second = run.step_trace("ask", attempt="all").attempts
    check(first, status="failed")
    check(second)
    assert (first.attempt, second.attempt) == (1, 2)
    assert first.error_context == {
        "code": "PROVIDER_ERROR",
        "message": "builtin:flaky fails attempt 1 of 1 on purpose",
    }
    assert second.tokens.total > 0 and second.output_context == {"output": "second time lucky"}
    assert run.step_trace("ask", attempt=1) == first
    assert run.step_trace("ask") == second
    [only] = run.trace().steps
    assert only == second


def test_loop_iterations(client: Any) -> None:
    result = client.flow("shout-all").execute(parameters={"items": ["x", "y"]})
    run = client.flow("shout-all").run(result.execution_id)
    second = run.step_trace("shout", loop_index=1)
    check(second)
    assert second.loop_index == 1 and second.output_context == {"output": "Y"}
    every = run.step_trace("shout", attempt="all", loop_index=0)
    assert [a.loop_index for a in every.attempts] == [0]


def test_unknown_runs_and_steps_raise_not_found(client: Any) -> None:
    flow = client.flow("echo")
    with pytest.raises(noukai_sdk.FlowNotFoundError) as caught:
        flow.run(str(uuid.uuid4())).trace()
    assert caught.value.code == "RUN_NOT_FOUND"
    result = flow.execute(message="x")
    with pytest.raises(noukai_sdk.FlowNotFoundError) as caught:
        flow.run(result.execution_id).step_trace("nope")
    assert caught.value.code == "STEP_NOT_FOUND"
    with pytest.raises(noukai_sdk.FlowNotFoundError):
        flow.run(result.execution_id).step_trace("say", attempt=7)


@pytest.mark.anyio
async def test_async_traces(async_client_factory: Any) -> None:
    async with async_client_factory() as sdk:
        flow = sdk.flow("three-steps")
        result = await flow.execute(message="async")
        trace = await flow.run(result.execution_id).trace()
        assert [s.step_id for s in trace.steps] == ["one", "two", "three"]
        attempts = await flow.run(result.execution_id).step_trace("three", attempt="all")
        check(attempts.attempts[0])
