"""Step attempts: transient provider failures are retried with backoff, every step event names its
attempt, and an interrupted attempt is reported before the step runs again."""

from __future__ import annotations

from typing import Any

import pytest

from noukai.types import events as ev
from noukai_server.engine import Completed, Failed
from noukai_server.engine.retry import backoff_seconds
from noukai_server.flows import RetryPolicy
from tests.engine.conftest import Harness

pytestmark = pytest.mark.anyio


def flaky(fail_times: int, *, retry: dict[str, Any] | None = None, **params: Any) -> dict[str, Any]:
    step: dict[str, Any] = {
        "id": "ask",
        "type": "llm",
        "model": "builtin:flaky",
        "prompt": "say {{ message }}",
        "params": {"fail_times": fail_times, **params},
    }
    if retry is not None:
        step["retry"] = retry
    return {"slug": "f", "steps": [step, {"id": "after", "type": "template", "template": "done"}]}


async def test_a_transient_failure_is_retried_as_a_new_attempt(harness: Harness) -> None:
    outcome, sink, state = await harness.run(flaky(1))
    assert outcome == Completed("done")
    assert state.outputs["ask"] == "say hi"
    step_events = [(t, p["stepId"], p["attempt"]) for t, p in sink.events if p.get("stepId") == "ask"]
    assert step_events == [
        (ev.STEP_STARTED, "ask", 1),
        (ev.STEP_INPUT, "ask", 1),
        (ev.STEP_RETRYING, "ask", 1),
        (ev.STEP_STARTED, "ask", 2),
        (ev.STEP_INPUT, "ask", 2),
        (ev.STEP_OUTPUT, "ask", 2),
        (ev.STEP_OUTPUT, "ask", 2),
        (ev.STEP_COMPLETED, "ask", 2),
    ]
    [(_, retrying)] = sink.of(ev.STEP_RETRYING)
    assert retrying == {
        "stepId": "ask",
        "name": None,
        "stepIndex": 0,
        "type": "llm",
        "attempt": 1,
        "nextAttempt": 2,
        "error": {"code": "PROVIDER_ERROR", "message": "builtin:flaky fails attempt 1 of 1 on purpose"},
        "durationMs": retrying["durationMs"],
        "backoffMs": 375,  # 0.5 s initial, jitter 0.5 -> 3/4 of it
    }
    assert harness.sleeps == [0.375]
    # The step after a retried one starts again from attempt 1.
    assert [p["attempt"] for _, p in sink.of(ev.STEP_STARTED) if p["stepId"] == "after"] == [1]


@pytest.mark.parametrize("kind", ["unavailable", "rate_limited", "timeout"])
async def test_every_retryable_error_kind_is_retried(harness: Harness, kind: str) -> None:
    outcome, sink, _ = await harness.run(flaky(2, fail_with=kind))
    assert isinstance(outcome, Completed)
    assert [p["attempt"] for _, p in sink.of(ev.STEP_RETRYING)] == [1, 2]
    assert len(harness.sleeps) == 2


async def test_backoff_doubles_and_is_capped(harness: Harness) -> None:
    retry = {"max_attempts": 5, "initial_backoff_seconds": 1, "max_backoff_seconds": 3}
    outcome, sink, _ = await harness.run(flaky(4, retry=retry))
    assert isinstance(outcome, Completed)
    assert harness.sleeps == [0.75, 1.5, 2.25, 2.25]
    assert [p["backoffMs"] for _, p in sink.of(ev.STEP_RETRYING)] == [750, 1500, 2250, 2250]


async def test_attempts_run_out_and_the_last_failure_is_a_step_error(harness: Harness) -> None:
    outcome, sink, state = await harness.run(flaky(5, retry={"max_attempts": 2}))
    assert isinstance(outcome, Failed)
    assert (outcome.step_id, outcome.code) == ("ask", "PROVIDER_ERROR")
    assert [p["attempt"] for _, p in sink.of(ev.STEP_RETRYING)] == [1]
    [(_, error)] = sink.of(ev.STEP_ERROR)
    assert error["attempt"] == 2 and error["error"]["code"] == "PROVIDER_ERROR"
    assert "ask" not in state.outputs and state.prompt_tokens == 0


async def test_a_permanent_failure_is_not_retried(harness: Harness) -> None:
    outcome, sink, _ = await harness.run(flaky(1, fail_with="bad_request"))
    assert isinstance(outcome, Failed) and outcome.code == "PROVIDER_BAD_REQUEST"
    assert sink.of(ev.STEP_RETRYING) == [] and harness.sleeps == []


async def test_max_attempts_one_turns_retries_off(harness: Harness) -> None:
    outcome, sink, _ = await harness.run(flaky(1, retry={"max_attempts": 1}))
    assert isinstance(outcome, Failed)
    assert sink.of(ev.STEP_RETRYING) == []


async def test_the_flow_policy_applies_to_steps_without_their_own(harness: Harness) -> None:
    document = flaky(3)
    document["retry"] = {"max_attempts": 4, "initial_backoff_seconds": 0.1}
    outcome, _, _ = await harness.run(document)
    assert isinstance(outcome, Completed)
    assert harness.sleeps == pytest.approx([0.075, 0.15, 0.3])


async def test_partial_output_of_a_failed_attempt_stays_in_its_attempt(harness: Harness) -> None:
    outcome, sink, state = await harness.run(flaky(1, fail_after_words=1), message="a b c")
    assert isinstance(outcome, Completed)
    deltas = [(p["attempt"], p["outputData"]) for _, p in sink.of(ev.STEP_OUTPUT)]
    assert deltas == [(1, "say "), (2, "say "), (2, "a "), (2, "b "), (2, "c")]
    assert state.outputs["ask"] == "say a b c"


async def test_a_failing_foreach_iteration_names_its_loop_index(harness: Harness) -> None:
    document = {
        "slug": "loop",
        "steps": [
            {
                "id": "each",
                "type": "llm",
                "model": "builtin:flaky",
                "foreach": "{{ parameters.items }}",
                "prompt": "{{ item }}",
                "params": {"fail_times": 1, "fail_with": "bad_request"},
            }
        ],
    }
    from noukai_server.engine import RunInputs, RunState
    from noukai_server.flows import load_flow
    from tests.engine.conftest import MemorySink

    sink = MemorySink()
    outcome = await harness.engine.run(
        load_flow(document), RunInputs(parameters={"items": ["x", "y"]}), RunState(), sink, run={}
    )
    assert isinstance(outcome, Failed)
    [(_, error)] = sink.of(ev.STEP_ERROR)
    assert error["loopIndex"] == 0 and error["attempt"] == 1


async def test_every_step_event_carries_its_attempt(harness: Harness) -> None:
    document = {
        "slug": "all",
        "steps": [
            {"id": "words", "type": "python", "function": "text.split_words", "args": {"text": "a b"}},
            {
                "id": "each",
                "type": "python",
                "foreach": "{{ steps.words.output }}",
                "function": "text.upper",
                "args": {"text": "{{ item }}"},
            },
            {"id": "skip", "type": "template", "when": False, "template": "never"},
            {"id": "say", "type": "llm", "model": "builtin:echo", "prompt": "{{ message }}"},
        ],
    }
    outcome, sink, _ = await harness.run(document)
    assert outcome == Completed("hi")
    assert sink.events and all(payload["attempt"] == 1 for _, payload in sink.events)
    progress = [p for _, p in sink.of(ev.STEP_PROGRESS)]
    assert [p["loopIndex"] for p in progress] == [0, 1]
    assert all(p["tokens"] == {"prompt": 0, "completion": 0, "total": 0} for p in progress)


class TestInterruptedAttempts:
    async def test_an_interrupted_attempt_is_reported_then_the_step_runs_again(
        self, harness: Harness
    ) -> None:
        outcome, sink, _ = await harness.run(flaky(0), attempt=2, interrupted=True)
        assert isinstance(outcome, Completed)
        first_type, first = sink.events[0]
        assert first_type == ev.STEP_RETRYING
        assert first["attempt"] == 1 and first["nextAttempt"] == 2 and first["backoffMs"] == 0
        assert first["error"]["code"] == "STEP_INTERRUPTED"
        assert sink.events[1][0] == ev.STEP_STARTED and sink.events[1][1]["attempt"] == 2
        assert harness.sleeps == []

    async def test_a_pending_retry_continues_at_its_attempt(self, harness: Harness) -> None:
        outcome, sink, _ = await harness.run(flaky(2), attempt=3)
        assert isinstance(outcome, Completed)
        assert sink.events[0][0] == ev.STEP_STARTED and sink.events[0][1]["attempt"] == 3

    async def test_a_step_interrupted_too_often_fails(self, harness: Harness) -> None:
        # Retries off, yet at least three runs in all: the fourth is refused.
        outcome, sink, _ = await harness.run(flaky(0, retry={"max_attempts": 1}), attempt=3, interrupted=True)
        assert isinstance(outcome, Completed)
        outcome, sink, _ = await harness.run(flaky(0, retry={"max_attempts": 1}), attempt=4, interrupted=True)
        assert isinstance(outcome, Failed) and outcome.code == "STEP_INTERRUPTED"
        assert [t for t, _ in sink.events] == [ev.STEP_ERROR]
        assert sink.events[0][1]["attempt"] == 3

    async def test_a_retry_after_an_interruption_continues_the_numbering(self, harness: Harness) -> None:
        outcome, sink, _ = await harness.run(flaky(2), attempt=2, interrupted=True)
        assert isinstance(outcome, Completed)
        assert [p["attempt"] for _, p in sink.of(ev.STEP_STARTED) if p["stepId"] == "ask"] == [2, 3]


class TestBackoff:
    def test_exponential_with_equal_jitter(self) -> None:
        policy = RetryPolicy(initial_backoff_seconds=1, max_backoff_seconds=100)
        assert [backoff_seconds(policy, n, 0.0) for n in (1, 2, 3, 4)] == [0.5, 1, 2, 4]
        assert [backoff_seconds(policy, n, 1.0) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]

    def test_capped_even_for_huge_attempt_numbers(self) -> None:
        policy = RetryPolicy(initial_backoff_seconds=0.5, max_backoff_seconds=20)
        assert backoff_seconds(policy, 10_000, 1.0) == 20

    def test_zero_backoff(self) -> None:
        assert backoff_seconds(RetryPolicy(initial_backoff_seconds=0), 3, 0.7) == 0

    def test_bad_arguments(self) -> None:
        with pytest.raises(ValueError, match="count from 1"):
            backoff_seconds(RetryPolicy(), 0, 0.5)
        with pytest.raises(ValueError, match="jitter"):
            backoff_seconds(RetryPolicy(), 1, 1.5)
