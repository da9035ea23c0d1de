"""Stopping an in-process run mid-step: from another thread (sync) and from another task (async)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

import noukai
from noukai_server.local import LocalFlow, load_flow

pytestmark = pytest.mark.anyio

SLOW: dict[str, Any] = {
    "slug": "slow",
    "steps": [
        {
            "id": "talk",
            "type": "llm",
            "model": "builtin:echo",
            "prompt": " ".join(f"w{i}" for i in range(400)),
            "params": {"token_delay_ms": 25},
        },
        {"id": "after", "type": "template", "template": "never reached"},
    ],
}
"""One step streaming for ~10 s, then a step a stopped run must never start."""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def slow() -> Any:
    with load_flow(SLOW) as flow:
        yield flow


def _assert_stopped_mid_step(events: list[noukai.StreamEvent]) -> None:
    types = [e.type for e in events]
    assert types[:3] == ["run_started", "step_started", "step_input"]
    assert "step_output" in types  # the step was streaming when it was stopped
    assert "step_completed" not in types
    assert types[-1] == "run_cancelled"
    assert [e.seq for e in events] == list(range(1, len(events) + 1))


def test_stop_from_another_thread_ends_a_sync_stream_mid_step(slow: LocalFlow) -> None:
    events: list[noukai.StreamEvent] = []
    began = time.monotonic()
    with slow.stream() as stream:
        assert slow.running == [stream.run_id]
        for event in stream:
            events.append(event)
            if event.type == "step_output" and len(events) == 5:
                stopper = threading.Thread(target=slow.stop, args=(stream.run_id,))
                stopper.start()
        stopper.join()
    assert time.monotonic() - began < 5
    _assert_stopped_mid_step(events)
    assert slow.running == []
    assert slow.stop(stream.run_id) is False  # over: nothing to stop


def test_a_stopped_invoke_raises_the_sdks_cancelled_error(slow: LocalFlow) -> None:
    timer = threading.Timer(0.3, slow.stop, args=("run-to-stop",))
    timer.start()
    with pytest.raises(noukai.NoukaiError) as caught:
        slow.invoke(run_id="run-to-stop")
    timer.join()
    assert caught.value.code == "RUN_CANCELLED"
    assert caught.value.execution_id == "run-to-stop"


async def test_astop_from_another_task_ends_an_async_stream_mid_step(slow: LocalFlow) -> None:
    stream = slow.astream(run_id="async-run")
    events: list[noukai.StreamEvent] = []

    async def stop_after_tokens() -> bool:
        while sum(e.type == "step_output" for e in events) < 3:
            await asyncio.sleep(0.01)
        return await slow.astop("async-run")

    stopper = asyncio.create_task(stop_after_tokens())
    async for event in stream:
        events.append(event)
    assert await stopper is True
    _assert_stopped_mid_step(events)


async def test_a_stopped_ainvoke_raises_and_leaves_nothing_running(slow: LocalFlow) -> None:
    invoked = asyncio.create_task(slow.ainvoke(run_id="to-stop"))
    while "to-stop" not in slow.running:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    assert await slow.astop("to-stop") is True
    with pytest.raises(noukai.NoukaiError) as caught:
        await invoked
    assert caught.value.code == "RUN_CANCELLED"
    assert slow.running == []


def test_a_run_stopped_as_soon_as_it_was_started_still_has_a_whole_log(slow: LocalFlow) -> None:
    """The stop is queued on the engine's loop right behind the start: whether the run's task has
    taken its first step by then is up to the threads (the driver's test covers the stop that
    lands first), but the log is whole either way and ends cancelled, mid-step at the latest."""
    stream = slow.stream(run_id="early")
    slow.stop("early")
    events = list(stream)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[0].type == "run_started" and events[-1].type == "run_cancelled"
    assert "step_completed" not in [e.type for e in events]


async def test_the_sync_api_works_inside_a_running_event_loop() -> None:
    """A notebook's case: sync calls made on a thread whose event loop is running."""
    document = {
        "slug": "echo",
        "steps": [{"id": "e", "type": "llm", "model": "builtin:echo", "prompt": "hi"}],
    }
    with load_flow(document) as flow:
        assert flow.invoke().result == "hi"
        assert [e.type for e in flow.stream(granularity="tokens")] == ["step_output", "flow_completed"]


def test_a_run_past_its_flows_deadline_fails_with_run_timeout() -> None:
    with load_flow({**SLOW, "run_timeout_seconds": 1}) as flow:
        began = time.monotonic()
        with pytest.raises(noukai.NoukaiError) as caught:
            flow.invoke()
    assert caught.value.code == "RUN_TIMEOUT"
    assert time.monotonic() - began < 5


def test_the_deadline_covers_a_wait_for_tool_results() -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    document = {
        "slug": "waits",
        "run_timeout_seconds": 1,
        "steps": [{"id": "a", "type": "agent", "model": "builtin:test", "prompt": "go"}],
    }
    seen: list[noukai.StreamEvent] = []
    with load_flow(document) as flow:
        for event in flow.stream(tools=tools):
            seen.append(event)
            if isinstance(event, noukai.ToolCallsRequired):
                time.sleep(1.5)  # the caller takes too long to answer
                event.resume([{"tool_call_id": c["id"], "content": "late"} for c in event.tool_calls])
    assert [e.type for e in seen][-2:] == ["tool_calls_required", "run_failed"]
    failed = seen[-1]
    assert isinstance(failed, noukai.RunFailed) and failed.code == "RUN_TIMEOUT"
