"""Folding a run's log into step attempts, and where a re-claimed run resumes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from noukai.types import events as ev
from noukai_server.runtime.attempts import FIRST_ATTEMPT, ResumePoint, fold_attempts, resume_point
from noukai_server.store import EventRow

T0 = datetime(2026, 6, 5, tzinfo=UTC)


def log(*events: tuple[str, dict[str, Any]]) -> list[EventRow]:
    return [
        EventRow(
            seq,
            kind,
            orjson.dumps({"eventType": kind, "seq": seq, **payload}).decode(),
            T0 + timedelta(seconds=seq),
        )
        for seq, (kind, payload) in enumerate(events, start=1)
    ]


def step(kind: str, step_id: str, attempt: int | None = 1, **fields: Any) -> tuple[str, dict[str, Any]]:
    payload: dict[str, Any] = {"stepId": step_id, "stepIndex": 0, **fields}
    if attempt is not None:
        payload["attempt"] = attempt
    return kind, payload


def completed(
    step_id: str, attempt: int = 1, output: Any = "out", **fields: Any
) -> tuple[str, dict[str, Any]]:
    return step(
        ev.STEP_COMPLETED,
        step_id,
        attempt,
        output=output,
        durationMs=7,
        tokens={"prompt": 2, "completion": 3, "total": 5},
        costUsd="0.000100",
        model="builtin:echo",
        **fields,
    )


ERROR = {"code": "PROVIDER_ERROR", "message": "down"}


def test_a_plain_step() -> None:
    folded = fold_attempts(
        log(
            (ev.RUN_STARTED, {"runId": "r"}),
            step(ev.STEP_STARTED, "a", name="A", type="llm"),
            step(ev.STEP_INPUT, "a", inputData={"prompt": "p"}, inputSizeBytes=12),
            step(ev.STEP_OUTPUT, "a", outputData="ou"),
            completed("a"),
            (ev.FLOW_COMPLETED, {"result": "out"}),
        )
    )
    [attempt] = folded.steps["a"]
    assert (attempt.attempt, attempt.status, attempt.name, attempt.type) == (1, "completed", "A", "llm")
    assert (attempt.started_at, attempt.completed_at) == (
        T0 + timedelta(seconds=2),
        T0 + timedelta(seconds=5),
    )
    assert attempt.input == {"prompt": "p"} and attempt.input_size == 12
    assert attempt.output == "out" and attempt.has_output and attempt.duration_ms == 7
    assert (attempt.usage.prompt, attempt.usage.completion, attempt.usage.cost_usd, attempt.usage.model) == (
        2,
        3,
        "0.000100",
        "builtin:echo",
    )


def test_retries_make_attempts() -> None:
    folded = fold_attempts(
        log(
            step(ev.STEP_STARTED, "a"),
            step(ev.STEP_RETRYING, "a", error=ERROR, nextAttempt=2, backoffMs=500, durationMs=3),
            step(ev.STEP_STARTED, "a", 2),
            step(ev.STEP_RETRYING, "a", 2, error=ERROR, nextAttempt=3, backoffMs=1000),
            step(ev.STEP_STARTED, "a", 3),
            completed("a", 3),
        )
    )
    first, second, third = folded.steps["a"]
    assert [a.attempt for a in (first, second, third)] == [1, 2, 3]
    assert (first.status, first.error, first.backoff_ms, first.duration_ms) == ("failed", ERROR, 500, 3)
    assert (second.status, second.backoff_ms) == ("failed", 1000)
    assert third.status == "completed"
    assert [a.attempt for a in folded.latest()] == [3]


def test_a_last_attempt_that_fails() -> None:
    folded = fold_attempts(
        log(step(ev.STEP_STARTED, "a"), step(ev.STEP_ERROR, "a", error=ERROR, durationMs=4))
    )
    [attempt] = folded.steps["a"]
    assert (attempt.status, attempt.error, attempt.duration_ms) == ("failed", ERROR, 4)
    assert not attempt.has_output


def test_a_skipped_step() -> None:
    folded = fold_attempts(log(step(ev.STEP_STARTED, "a"), completed("a", output=None, skipped=True)))
    assert folded.steps["a"][0].status == "skipped"


def test_an_open_attempt_is_running() -> None:
    folded = fold_attempts(log(step(ev.STEP_STARTED, "a"), step(ev.STEP_OUTPUT, "a", outputData="x")))
    assert folded.steps["a"][0].status == "running"
    assert folded.steps["a"][0].completed_at is None


def test_an_interruption_reported_by_the_engine() -> None:
    interrupted = {"code": "STEP_INTERRUPTED", "message": "lost"}
    folded = fold_attempts(
        log(
            step(ev.STEP_STARTED, "a"),
            step(ev.STEP_RETRYING, "a", error=interrupted, nextAttempt=2, backoffMs=0),
            step(ev.STEP_STARTED, "a", 2),
            completed("a", 2),
        )
    )
    first, second = folded.steps["a"]
    assert (first.status, first.error) == ("failed", interrupted)
    assert second.status == "completed"


def test_a_new_start_closes_an_open_attempt_as_interrupted() -> None:
    folded = fold_attempts(log(step(ev.STEP_STARTED, "a"), step(ev.STEP_STARTED, "a", 2), completed("a", 2)))
    first, _ = folded.steps["a"]
    assert first.status == "failed" and first.error is not None
    assert first.error["code"] == "STEP_INTERRUPTED"
    assert first.completed_at == T0 + timedelta(seconds=2)


def test_run_end_events_close_open_attempts() -> None:
    cancelled = fold_attempts(log(step(ev.STEP_STARTED, "a"), (ev.RUN_CANCELLED, {"runId": "r"})))
    assert cancelled.steps["a"][0].error == {"code": "RUN_CANCELLED", "message": "the run was cancelled"}
    failed = fold_attempts(
        log(
            step(ev.STEP_STARTED, "a"), (ev.RUN_FAILED, {"error": {"code": "INTERNAL_ERROR", "message": "x"}})
        )
    )
    assert failed.steps["a"][0].status == "failed"
    assert failed.steps["a"][0].error == {"code": "INTERNAL_ERROR", "message": "x"}
    odd = fold_attempts(log(step(ev.STEP_STARTED, "a"), (ev.RUN_FAILED, {"error": "text"})))
    assert odd.steps["a"][0].error == {"code": "INTERNAL_ERROR", "message": "the step failed"}


def test_foreach_iterations() -> None:
    folded = fold_attempts(
        log(
            step(ev.STEP_STARTED, "loop"),
            step(ev.STEP_INPUT, "loop", loopIndex=0, inputData={"prompt": "x"}, inputSizeBytes=3),
            step(
                ev.STEP_PROGRESS,
                "loop",
                loopIndex=0,
                output="X",
                durationMs=2,
                tokens={"prompt": 1, "completion": 1, "total": 2},
                costUsd="0.000001",
                model="m",
            ),
            step(ev.STEP_INPUT, "loop", loopIndex=1, inputData={"prompt": "y"}, inputSizeBytes=3),
            step(ev.STEP_RETRYING, "loop", loopIndex=1, error=ERROR, nextAttempt=2, backoffMs=0),
            step(ev.STEP_STARTED, "loop", 2),
            step(ev.STEP_PROGRESS, "loop", 2, loopIndex=0, output="X"),
            step(ev.STEP_PROGRESS, "loop", 2, loopIndex=1, output="Y"),
            completed("loop", 2, output=["X", "Y"]),
        )
    )
    first, second = folded.steps["loop"]
    zero, one = first.iterations[0], first.iterations[1]
    assert (zero.status, zero.output, zero.input, zero.duration_ms, zero.usage.prompt) == (
        "completed",
        "X",
        {"prompt": "x"},
        2,
        1,
    )
    assert (one.status, one.error, one.completed_at) == ("failed", ERROR, T0 + timedelta(seconds=5))
    assert first.input is None
    assert [i.output for i in second.iterations.values()] == ["X", "Y"]


def test_steps_keep_their_first_start_order_and_final_attempts_their_own() -> None:
    folded = fold_attempts(
        log(
            step(ev.STEP_STARTED, "a"),
            completed("a"),
            step(ev.STEP_STARTED, "b"),
            step(ev.STEP_RETRYING, "b", error=ERROR, nextAttempt=2),
            step(ev.STEP_STARTED, "b", 2),
            completed("b", 2),
        )
    )
    assert list(folded.steps) == ["a", "b"]
    assert [(a.step_id, a.attempt) for a in folded.final_attempts()] == [("a", 1), ("b", 2)]


def test_older_logs_without_attempt_numbers_count_as_attempt_one() -> None:
    folded = fold_attempts(log(step(ev.STEP_STARTED, "a", None), completed("a", output=1)))
    assert folded.steps["a"][0].attempt == 1 and folded.steps["a"][0].status == "completed"


def test_malformed_or_foreign_events_are_ignored() -> None:
    rows = log(
        (ev.STEP_STARTED, {"stepIndex": 0}),  # no stepId
        step(ev.STEP_COMPLETED, "ghost"),  # never started
        step(ev.STEP_STARTED, "a"),
        step(ev.STEP_COMPLETED, "a", 9),  # an attempt that does not exist
        step(ev.STEP_OUTPUT, "a"),
    )
    rows.append(EventRow(99, ev.STEP_STARTED, "[1, 2]", T0))
    folded = fold_attempts(rows)
    assert list(folded.steps) == ["a"] and folded.steps["a"][0].status == "running"


def test_a_late_end_event_does_not_reopen_a_closed_attempt() -> None:
    folded = fold_attempts(
        log(step(ev.STEP_STARTED, "a"), completed("a"), step(ev.STEP_ERROR, "a", error=ERROR))
    )
    assert folded.steps["a"][0].status == "completed"


class TestResumePoint:
    def boundary(self, kind: str, step_id: str, attempt: int | None = 1, **fields: Any) -> EventRow:
        return log(step(kind, step_id, attempt, **fields))[0]

    def test_a_fresh_run_or_a_fresh_step(self) -> None:
        assert resume_point(None, "a") == FIRST_ATTEMPT
        assert resume_point(self.boundary(ev.STEP_COMPLETED, "prev"), "a") == FIRST_ATTEMPT

    def test_a_started_attempt_was_interrupted(self) -> None:
        assert resume_point(self.boundary(ev.STEP_STARTED, "a", 2), "a") == ResumePoint(3, True)
        assert resume_point(self.boundary(ev.STEP_STARTED, "a", None), "a") == ResumePoint(2, True)

    def test_a_pending_retry(self) -> None:
        assert resume_point(self.boundary(ev.STEP_RETRYING, "a", 1, nextAttempt=2), "a") == ResumePoint(
            2, False
        )
        assert resume_point(self.boundary(ev.STEP_RETRYING, "a", 4), "a") == ResumePoint(5, False)

    @pytest.mark.parametrize("kind", [ev.STEP_COMPLETED, ev.STEP_ERROR])
    def test_an_ended_attempt_whose_cursor_move_was_lost(self, kind: str) -> None:
        assert resume_point(self.boundary(kind, "a", 2), "a") == ResumePoint(3, False)

    def test_a_malformed_event(self) -> None:
        assert resume_point(EventRow(1, ev.STEP_STARTED, "null", T0), "a") == FIRST_ATTEMPT
