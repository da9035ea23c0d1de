"""The trace views: attempt selectors, capture policies, and StepTrace bodies built from attempts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from noukai_server.runtime.attempts import Iteration, StepAttempt, Usage
from noukai_server.runtime.errors import RequestRejected
from noukai_server.runtime.traces import CapturePolicy, iso, iteration_trace, parse_attempt, step_trace

T0 = datetime(2026, 6, 5, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "selector"), [(None, "latest"), ("latest", "latest"), ("all", "all"), ("1", 1), ("12", 12)]
)
def test_attempt_selectors(value: str | None, selector: Any) -> None:
    assert parse_attempt(value) == selector


@pytest.mark.parametrize("value", ["", "0", "-2", "x", "1e3", "٣", "1234567890", "Latest"])
def test_bad_attempt_selectors(value: str) -> None:
    with pytest.raises(RequestRejected) as caught:
        parse_attempt(value)
    assert caught.value.code == "VALIDATION_ERROR"


def test_capture_policy_of_a_document() -> None:
    assert CapturePolicy.of({}) == CapturePolicy("full", (), 64 * 1024)
    policy = CapturePolicy.of({"trace_capture_mode": "redacted", "redact_fields": ["a", 3]}, 10)
    assert policy == CapturePolicy("redacted", ("a",), 10) and policy.snapshots
    assert not CapturePolicy.of({"trace_capture_mode": "metadata_only"}).snapshots
    assert CapturePolicy.of({"trace_capture_mode": 5}).mode == "full"


def test_iso_times() -> None:
    assert iso(T0) == "2026-06-05T12:00:00.123Z"
    assert iso(None) is None


def attempt(**fields: Any) -> StepAttempt:
    values: dict[str, Any] = {
        "step_id": "s",
        "step_index": 2,
        "attempt": 1,
        "status": "completed",
        "started_at": T0,
        "completed_at": T0 + timedelta(milliseconds=40),
        "input": {"prompt": "p"},
        "input_size": 14,
        "output": "out",
        "has_output": True,
        "usage": Usage(3, 4, "0.000123", "builtin:echo"),
    }
    values.update(fields)
    return StepAttempt(**values)


def test_a_completed_attempt() -> None:
    assert step_trace(attempt(duration_ms=38), CapturePolicy()) == {
        "stepId": "s",
        "stepIndex": 2,
        "attempt": 1,
        "status": "completed",
        "startedAt": "2026-06-05T12:00:00.123Z",
        "completedAt": "2026-06-05T12:00:00.163Z",
        "durationMs": 38,
        "modelUsed": "builtin:echo",
        "tokens": {"prompt": 3, "completion": 4, "total": 7},
        "costUsd": "0.000123",
        "inputSizeBytes": 14,
        "outputSizeBytes": 5,
        "inputContext": {"prompt": "p"},
        "outputContext": {"output": "out"},
        "truncated": False,
    }


def test_duration_falls_back_to_the_timestamps() -> None:
    assert step_trace(attempt(), CapturePolicy())["durationMs"] == 40
    assert "durationMs" not in step_trace(attempt(completed_at=None, status="running"), CapturePolicy())


def test_a_failed_attempt_has_no_output_and_zero_cost() -> None:
    error = {"code": "PROVIDER_ERROR", "message": "down sk-abcdefghijkl"}
    failed = attempt(
        status="failed", has_output=False, output=None, error=error, usage=Usage(), backoff_ms=500
    )
    full = step_trace(failed, CapturePolicy())
    assert full["errorContext"] == error and "outputContext" not in full and "outputSizeBytes" not in full
    assert (full["costUsd"], full["tokens"]["total"], full["backoffMs"]) == ("0.000000", 0, 500)
    redacted = step_trace(failed, CapturePolicy("redacted"))
    assert redacted["errorContext"] == {"code": "PROVIDER_ERROR", "message": "down [redacted]"}
    assert step_trace(failed, CapturePolicy("metadata_only"))["errorContext"] == {"code": "PROVIDER_ERROR"}
    assert "errorContext" not in step_trace(failed, CapturePolicy("off"))


def test_metadata_only_and_off() -> None:
    meta = step_trace(attempt(), CapturePolicy("metadata_only"))
    assert (meta["inputSizeBytes"], meta["outputSizeBytes"]) == (14, 5)
    assert "inputContext" not in meta and "outputContext" not in meta
    off = step_trace(attempt(), CapturePolicy("off"))
    assert not {"inputSizeBytes", "outputSizeBytes", "inputContext", "outputContext"} & set(off)
    assert off["tokens"]["total"] == 7 and off["truncated"] is False


def test_redacted_mode_masks_configured_fields_in_outputs() -> None:
    trace = step_trace(
        attempt(output={"Email": "a@b", "password": "x", "ok": 1}), CapturePolicy("redacted", ("email",))
    )
    assert trace["outputContext"] == {"output": {"Email": "[redacted]", "password": "[redacted]", "ok": 1}}


def test_the_size_cap_marks_the_trace_truncated() -> None:
    trace = step_trace(attempt(output="y" * 5000), CapturePolicy(max_context_bytes=200))
    assert trace["truncated"] is True and trace["outputSizeBytes"] == 5002
    assert trace["inputContext"] == {"prompt": "p"}


def test_a_foreach_attempt_lists_its_iterations_inputs() -> None:
    iterations = {
        0: Iteration(0, "completed", input={"prompt": "a"}, input_size=10),
        1: Iteration(1, "completed", input={"prompt": "b"}, input_size=11),
    }
    trace = step_trace(attempt(input=None, input_size=None, iterations=iterations), CapturePolicy())
    assert trace["inputContext"] == {"iterations": [{"prompt": "a"}, {"prompt": "b"}]}
    assert (trace["inputSizeBytes"], trace["iterations"]) == (21, 2)


def test_an_iteration() -> None:
    done = T0 + timedelta(seconds=1)
    iteration = Iteration(
        3,
        "completed",
        started_at=done,
        completed_at=done,
        duration_ms=250,
        output="X",
        has_output=True,
        usage=Usage(1, 1, "0.000001", "m"),
    )
    trace = iteration_trace(attempt(), iteration, CapturePolicy())
    assert trace["loopIndex"] == 3 and trace["outputContext"] == {"output": "X"}
    # Without an input event the iteration's start is worked out from its duration.
    assert trace["startedAt"] == iso(done - timedelta(milliseconds=250)) and trace["durationMs"] == 250
    assert trace["tokens"] == {"prompt": 1, "completion": 1, "total": 2} and trace["modelUsed"] == "m"
    assert "inputContext" not in trace
