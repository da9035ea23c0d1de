"""Every step runs under a timeout: its own `timeout_seconds`, else its flow's
`step_timeout_seconds`, else the server's default; never more than the server's maximum."""

from __future__ import annotations

from typing import Any

import pytest

from noukai.types import events as ev
from noukai_server.engine import (
    Completed,
    Failed,
    FlowEngine,
    RunInputs,
    RunState,
    StepTimeouts,
    default_functions,
)
from noukai_server.flows import FlowValidationError, TemplateEngine, load_flow
from noukai_server.providers import ModelRegistry, ProviderSettings
from tests.engine.conftest import MemorySink

pytestmark = pytest.mark.anyio


def _flow(seconds: float, *, step: dict[str, Any] | None = None, **flow: Any) -> dict[str, Any]:
    nap = {
        "id": "nap",
        "type": "python",
        "function": "time.sleep",
        "args": {"seconds": seconds, "value": "woke"},
    }
    return {"slug": "f", "retry": {"max_attempts": 1}, **flow, "steps": [{**nap, **(step or {})}]}


async def _run(document: dict[str, Any], timeouts: StepTimeouts) -> tuple[Any, MemorySink]:
    engine = FlowEngine(
        ModelRegistry(ProviderSettings()), default_functions(), TemplateEngine(), step_timeouts=timeouts
    )
    spec = load_flow(document, known_functions=set(default_functions().names()))
    sink = MemorySink()
    outcome = await engine.run(spec, RunInputs(message="hi"), RunState(), sink, run={"id": "r"})
    return outcome, sink


async def test_a_step_without_any_timeout_gets_the_servers_default() -> None:
    outcome, sink = await _run(_flow(1e9), StepTimeouts(default_seconds=0.05, max_seconds=60))
    message = "step 'nap' attempt 1 ran past the server's step timeout (0.05 s) and was stopped"
    assert outcome == Failed("nap", 0, "STEP_TIMEOUT", message)
    [(_, error)] = sink.of(ev.STEP_ERROR)
    assert (error["attempt"], error["error"]["code"]) == (1, "STEP_TIMEOUT")


async def test_the_flows_default_replaces_the_servers() -> None:
    outcome, _ = await _run(
        _flow(1e9, step_timeout_seconds=0.05), StepTimeouts(default_seconds=30, max_seconds=60)
    )
    assert isinstance(outcome, Failed)
    assert "ran past the flow's step_timeout_seconds (0.05 s)" in outcome.message


async def test_the_steps_own_timeout_wins_over_the_flows() -> None:
    document = _flow(0.2, step={"timeout_seconds": 30}, step_timeout_seconds=0.05)
    outcome, _ = await _run(document, StepTimeouts(default_seconds=0.05, max_seconds=60))
    assert outcome == Completed("woke")


async def test_a_timeout_above_the_servers_maximum_is_clamped() -> None:
    document = _flow(1e9, step={"timeout_seconds": 3600}, step_timeout_seconds=3600)
    outcome, _ = await _run(document, StepTimeouts(default_seconds=0.05, max_seconds=0.1))
    assert isinstance(outcome, Failed) and outcome.code == "STEP_TIMEOUT"
    assert "ran past the server's maximum step timeout (0.1 s)" in outcome.message


async def test_a_timed_out_attempt_is_retried_under_the_default_too() -> None:
    document = {**_flow(1e9), "retry": {"max_attempts": 2, "initial_backoff_seconds": 0.001}}
    outcome, sink = await _run(document, StepTimeouts(default_seconds=0.05, max_seconds=60))
    assert isinstance(outcome, Failed) and outcome.code == "STEP_TIMEOUT"
    [(_, retrying)] = sink.of(ev.STEP_RETRYING)
    assert (retrying["attempt"], retrying["error"]["code"]) == (1, "STEP_TIMEOUT")


def test_a_default_above_the_maximum_or_not_positive_is_refused() -> None:
    with pytest.raises(ValueError, match="at most the maximum"):
        StepTimeouts(default_seconds=10, max_seconds=5)
    with pytest.raises(ValueError, match="must be positive"):
        StepTimeouts(default_seconds=0, max_seconds=5)


@pytest.mark.parametrize("field", ["step_timeout_seconds", "run_timeout_seconds"])
@pytest.mark.parametrize("value", [0, -1, "soon"])
def test_flow_timeouts_must_be_positive_numbers(field: str, value: Any) -> None:
    with pytest.raises(FlowValidationError, match=field):
        load_flow({**_flow(1), field: value}, known_functions=set(default_functions().names()))


def test_flow_timeouts_round_trip_in_the_document() -> None:
    spec = load_flow(
        {**_flow(1), "step_timeout_seconds": 20, "run_timeout_seconds": 600},
        known_functions=set(default_functions().names()),
    )
    assert (spec.step_timeout_seconds, spec.run_timeout_seconds) == (20, 600)
    document = spec.to_document()
    assert (document["step_timeout_seconds"], document["run_timeout_seconds"]) == (20, 600)
