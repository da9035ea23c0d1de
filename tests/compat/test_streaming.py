"""`steps()`, `events()` and `run(id).live_trace()` of the published SDK over real SSE."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest

from tests.compat.conftest import noukai_sdk  # noqa: F401 - skips without the SDK
from tests.conftest import ServerProcess


def kinds(events: list[Any]) -> list[str]:
    return [type(event).__name__ for event in events]


def collapse_outputs(names: list[str]) -> list[str]:
    """Runs of StepOutput/StepInput folded into one marker, for comparing shapes."""
    result: list[str] = []
    for name in names:
        if name in ("StepOutput", "StepInput") and result and result[-1] == name:
            continue
        result.append(name)
    return result


def test_steps_yields_one_step_completed_per_step(client: Any) -> None:
    steps = list(client.flow("three-steps").steps(message="go"))
    assert kinds(steps) == ["StepCompleted"] * 3
    assert [s.step_id for s in steps] == ["one", "two", "three"]
    assert [s.output for s in steps] == ["one: go", "two: one: go", "three: two: one: go"]
    for step in steps:
        assert isinstance(step.duration_ms, int)
        assert step.tokens is not None and step.tokens.total > 0
        assert isinstance(step.cost_usd, str)


def test_events_in_order_with_deltas_and_pauses(client: Any) -> None:
    events = list(client.flow("three-steps").events(message="alpha beta"))
    shape = collapse_outputs(kinds(events))
    per_step = ["StepStarted", "StepInput", "StepOutput", "StepCompleted"]
    assert shape == [
        "RunStarted",
        *per_step,
        "StepPaused",
        *per_step,
        "StepPaused",
        *per_step,
        "FlowCompleted",
    ]
    run_started = events[0]
    assert run_started.execution_id and run_started.run_id == run_started.execution_id
    deltas = [e.output_data for e in events if type(e).__name__ == "StepOutput"]
    assert "".join(deltas) == "one: alpha beta" + "two: one: alpha beta" + "three: two: one: alpha beta"
    assert len(deltas) > 3  # word by word, not one blob per step
    assert events[-1].result == "three: two: one: alpha beta"


def test_events_run_remaining_is_one_stream_without_pauses(client: Any) -> None:
    events = list(client.flow("three-steps").events(message="x", run_remaining=True))
    names = kinds(events)
    assert "StepPaused" not in names
    assert names[0] == "RunStarted" and names[-1] == "FlowCompleted"
    assert names.count("StepCompleted") == 3


def test_a_failing_step_yields_step_failed_and_stops(client: Any) -> None:
    events = list(client.flow("broken").events(parameters={"config": {}}))
    names = kinds(events)
    assert names[-1] == "StepFailed"
    assert "FlowCompleted" not in names
    failed = events[-1]
    assert failed.step_id == "boom"
    assert failed.error["code"] == "TEMPLATE_ERROR"


def test_skipped_steps_advance_the_cursor(client: Any) -> None:
    steps = list(client.flow("maybe").steps(message="quiet", parameters={"polish": False}))
    assert [s.step_id for s in steps] == ["draft", "polish"]
    assert steps[1].output is None


def test_breaking_out_of_events_never_cancels_the_run(client: Any, server: ServerProcess) -> None:
    for event in client.flow("three-steps").events(message="stop early"):
        execution_id = event.execution_id
        break
    headers = {"Authorization": f"Bearer {server.dev_key}"}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        run = httpx.get(f"{server.api_url}/runs/{execution_id}", headers=headers).json()
        if run["status"] == "waiting":
            break
        time.sleep(0.05)
    assert run["status"] == "waiting" and run["cursor"] == 1


def test_live_trace_ends_by_itself_after_the_run(client: Any) -> None:
    flow = client.flow("three-steps")
    result = flow.execute(message="traced")
    collected: list[Any] = []

    def read() -> None:
        collected.extend(flow.run(result.execution_id).live_trace())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=20)
    assert not reader.is_alive(), "live_trace did not end after the run had ended"
    names = kinds(collected)
    assert names[0] == "RunStarted" and names[-1] == "FlowCompleted"
    assert names.count("StepCompleted") == 3


@pytest.mark.anyio
async def test_async_events_and_steps(async_client_factory: Any) -> None:
    async with async_client_factory() as sdk:
        flow = sdk.flow("three-steps")
        steps = [s async for s in flow.steps(message="async")]
        assert [s.output for s in steps][-1] == "three: two: one: async"
        events = [e async for e in flow.events(message="async", run_remaining=True)]
        assert kinds(events)[-1] == "FlowCompleted"
        failing = [e async for e in sdk.flow("broken").events(parameters={"config": {}})]
        assert kinds(failing)[-1] == "StepFailed"


@pytest.mark.anyio
async def test_async_live_trace(async_client_factory: Any) -> None:
    async with async_client_factory() as sdk:
        flow = sdk.flow("echo")
        result = await flow.execute(message="one two three")
        events = [e async for e in flow.run(result.execution_id).live_trace()]
    assert kinds(events)[-1] == "FlowCompleted"
    assert events[-1].result == "one two three"


def test_a_guard_event_does_not_disturb_the_published_sdk(client: Any, server: ServerProcess) -> None:
    """`guard_tripped` is a Noukai addition: the published SDK passes it by (as an unknown event)
    and still ends the stream at the run's own end, with the replaced output."""
    guard = {
        "name": "short",
        "condition": "{{ value | length < 3 }}",
        "on_fail": "replace",
        "replacement": "ok",
    }
    document = {
        "slug": "compat-guarded",
        "steps": [{"id": "say", "type": "template", "template": "{{ message }}", "guards": [guard]}],
    }
    server.put_flow(server.dev_key, "dev", "main", document)
    events = list(client.flow("compat-guarded").events(message="too long"))
    names = kinds(events)
    assert names[0] == "RunStarted" and names[-1] == "FlowCompleted"
    assert "StepCompleted" in names and events[-1].result == "ok"
    assert client.flow("compat-guarded").execute(message="too long").result == "ok"
