"""`timeout_seconds` stops a step attempt: model streams, async and sync functions alike, reported
as `STEP_TIMEOUT` with the attempt, and retried as the step's retry policy says."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from noukai.types import events as ev
from noukai_server.engine import Completed, Failed, FlowEngine, RunInputs, RunState, default_functions
from noukai_server.flows import TemplateEngine, load_flow
from noukai_server.providers import ModelRegistry, ProviderSettings
from tests.engine.conftest import Harness, MemorySink

pytestmark = pytest.mark.anyio


def sleeper(seconds: float, timeout: float, **step: Any) -> dict[str, Any]:
    return {
        "slug": "f",
        "steps": [
            {
                "id": "nap",
                "type": "python",
                "function": "time.sleep",
                "args": {"seconds": seconds, "value": "woke"},
                "timeout_seconds": timeout,
                **step,
            }
        ],
    }


async def test_a_step_past_its_timeout_fails_with_step_timeout(harness: Harness) -> None:
    started = time.perf_counter()
    outcome, sink, _ = await harness.run(sleeper(3600, 0.05, retry={"max_attempts": 1}))
    assert time.perf_counter() - started < 30  # stopped, not slept for an hour
    message = "step 'nap' attempt 1 ran past its timeout_seconds (0.05 s) and was stopped"
    assert outcome == Failed("nap", 0, "STEP_TIMEOUT", message)
    [(_, error)] = sink.of(ev.STEP_ERROR)
    assert error["attempt"] == 1
    assert error["error"] == {"code": "STEP_TIMEOUT", "message": message}


async def test_a_timed_out_attempt_is_retried_and_each_attempt_is_reported(harness: Harness) -> None:
    outcome, sink, _ = await harness.run(sleeper(3600, 0.05, retry={"max_attempts": 2}))
    assert isinstance(outcome, Failed) and outcome.code == "STEP_TIMEOUT"
    [(_, retrying)] = sink.of(ev.STEP_RETRYING)
    assert (retrying["attempt"], retrying["nextAttempt"]) == (1, 2)
    assert retrying["error"]["code"] == "STEP_TIMEOUT"
    [(_, error)] = sink.of(ev.STEP_ERROR)
    assert error["attempt"] == 2
    assert "attempt 2 ran past" in error["error"]["message"]


async def test_a_step_within_its_timeout_completes(harness: Harness) -> None:
    outcome, _, state = await harness.run(sleeper(0, 30))
    assert outcome == Completed("woke")
    assert state.outputs["nap"] == "woke"


async def test_a_model_stream_is_cut_at_the_timeout(harness: Harness) -> None:
    flow = {
        "slug": "f",
        "steps": [
            {
                "id": "talk",
                "type": "llm",
                "model": "builtin:echo",
                "prompt": "one two three four five six seven eight nine ten",
                "params": {"token_delay_ms": 10_000},
                "timeout_seconds": 0.1,
                "retry": {"max_attempts": 1},
            }
        ],
    }
    outcome, sink, _ = await harness.run(flow)
    assert isinstance(outcome, Failed) and outcome.code == "STEP_TIMEOUT"
    assert not sink.of(ev.STEP_COMPLETED)


async def test_a_blocking_sync_function_is_abandoned_at_the_timeout() -> None:
    release = threading.Event()

    def block() -> str:
        release.wait(30)
        return "late"

    functions = default_functions()
    functions.register("test.block", block)
    engine = FlowEngine(ModelRegistry(ProviderSettings()), functions, TemplateEngine())
    flow = {
        "slug": "f",
        "steps": [
            {
                "id": "stuck",
                "type": "python",
                "function": "test.block",
                "timeout_seconds": 0.05,
                "retry": {"max_attempts": 1},
            }
        ],
    }
    spec = load_flow(flow, known_functions=set(functions.names()))
    try:
        outcome = await engine.run(spec, RunInputs(message="hi"), RunState(), MemorySink(), run={"id": "r"})
    finally:
        release.set()
    assert isinstance(outcome, Failed) and outcome.code == "STEP_TIMEOUT"


async def test_a_timeout_error_the_function_raises_itself_is_not_a_step_timeout() -> None:
    def impatient() -> str:
        raise TimeoutError("the upstream service timed out")

    functions = default_functions()
    functions.register("test.impatient", impatient)
    engine = FlowEngine(ModelRegistry(ProviderSettings()), functions, TemplateEngine())
    flow = {
        "slug": "f",
        "steps": [{"id": "s", "type": "python", "function": "test.impatient", "timeout_seconds": 30}],
    }
    spec = load_flow(flow, known_functions=set(functions.names()))
    outcome = await engine.run(spec, RunInputs(message="hi"), RunState(), MemorySink(), run={"id": "r"})
    assert isinstance(outcome, Failed)
    assert outcome.code == "FUNCTION_ERROR"
    assert "the upstream service timed out" in outcome.message
