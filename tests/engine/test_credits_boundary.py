"""A checkpoint that reports the org's credit ran out (`CreditsExhausted`) stops the run at that
step boundary: the next step never starts and the outcome is `CREDITS_EXHAUSTED`; after the last
step there is no boundary, and the run completes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from noukai.types import events as ev
from noukai_server.engine import Completed, Failed, PausedBetweenSteps, RunInputs, RunState
from noukai_server.engine.sink import CreditsExhausted
from noukai_server.flows import load_flow
from tests.engine.conftest import Harness, MemorySink

pytestmark = pytest.mark.anyio

FLOW: dict[str, Any] = {
    "slug": "three",
    "steps": [{"id": name, "type": "template", "template": name} for name in ("a", "b", "c")],
}


@dataclass
class OutOfCreditAfter(MemorySink):
    """Stores every checkpoint, and says the credit ran out from the checkpoint of step `after`."""

    after: int = 0

    async def checkpoint(self, next_step_index: int, state: RunState) -> None:
        await super().checkpoint(next_step_index, state)
        if next_step_index - 1 >= self.after:
            raise CreditsExhausted("-0.500000")


async def run(harness: Harness, sink: MemorySink, **kwargs: Any) -> Any:
    spec = load_flow(FLOW)
    return await harness.engine.run(
        spec, RunInputs(message="hi"), RunState(), sink, run={"id": "r"}, **kwargs
    )


async def test_the_run_fails_at_the_boundary_where_credit_ran_out(harness: Harness) -> None:
    sink = OutOfCreditAfter(after=0)
    outcome = await run(harness, sink)
    assert isinstance(outcome, Failed)
    assert (outcome.step_id, outcome.step_index, outcome.code) == ("b", 1, "CREDITS_EXHAUSTED")
    assert "-0.500000 USD" in outcome.message and "'b'" in outcome.message
    assert sink.checkpoints == [1]  # a's checkpoint (and charge) is stored
    assert [p["stepId"] for _, p in sink.of(ev.STEP_STARTED)] == ["a"]  # b never started


async def test_the_last_step_may_spend_the_last_credit(harness: Harness) -> None:
    sink = OutOfCreditAfter(after=2)
    outcome = await run(harness, sink)
    assert isinstance(outcome, Completed) and outcome.result == "c"
    assert sink.checkpoints == [1, 2, 3]


async def test_running_out_wins_over_a_pause(harness: Harness) -> None:
    outcome = await run(harness, OutOfCreditAfter(after=0), pause_after=0)
    assert isinstance(outcome, Failed) and outcome.code == "CREDITS_EXHAUSTED"
    paused = await run(harness, OutOfCreditAfter(after=5), pause_after=0)
    assert isinstance(paused, PausedBetweenSteps)
