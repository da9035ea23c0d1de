"""Step attempts, folded from a run's event log: the one place that knows how step events add up.

The log is the only record of what a step did. Every view of attempts (run and step traces,
session snapshots, where a re-claimed run resumes) is computed here from the stored events,
so no second table can drift from the log. Pure functions: no I/O.

How events map to attempts (every step event carries `stepId` and `attempt`, 1 when missing):
- `step_started` opens attempt n of the step;
- `step_input` is what the attempt was given (per iteration for a `foreach` step);
- `step_progress` ends one `foreach` iteration;
- `step_completed` ends it as completed (or skipped, with `"skipped": true`);
- `step_error` ends it as failed (the step's last attempt);
- `step_retrying` ends attempt n as failed, and the step runs again;
- `run_failed` / `run_cancelled` end whatever attempt is still open;
- a `step_started` for a step whose previous attempt is still open means that attempt was
  interrupted (older logs have no `step_retrying` for it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

import orjson

from noukai.types import events as ev
from noukai.types.errors import ErrorCode
from noukai_server.store import EventRow, Store

AttemptStatus = Literal["running", "completed", "failed", "skipped"]

TRACE_EVENT_TYPES: Final = frozenset(
    {
        ev.STEP_STARTED,
        ev.STEP_INPUT,
        ev.STEP_PROGRESS,
        ev.STEP_COMPLETED,
        ev.STEP_ERROR,
        ev.STEP_RETRYING,
        ev.RUN_FAILED,
        ev.RUN_CANCELLED,
    }
)
"""The events attempts are folded from: everything but token and reasoning deltas, which are
most of a log and add nothing the end events do not carry."""


@dataclass(slots=True)
class Usage:
    prompt: int = 0
    completion: int = 0
    cost_usd: str | None = None
    model: str | None = None


@dataclass(slots=True)
class Iteration:
    """One `foreach` iteration within an attempt."""

    loop_index: int
    status: AttemptStatus = "running"
    started_at: datetime | None = None
    completed_at: datetime | None = None
    duration_ms: int | None = None
    input: dict[str, Any] | None = None
    input_size: int | None = None
    output: Any = None
    has_output: bool = False
    error: dict[str, Any] | None = None
    usage: Usage = field(default_factory=Usage)


@dataclass(slots=True)
class StepAttempt:
    step_id: str
    step_index: int
    attempt: int
    name: str | None = None
    type: str | None = None
    status: AttemptStatus = "running"
    started_at: datetime | None = None
    completed_at: datetime | None = None
    duration_ms: int | None = None
    input: dict[str, Any] | None = None
    input_size: int | None = None
    output: Any = None
    has_output: bool = False
    error: dict[str, Any] | None = None
    usage: Usage = field(default_factory=Usage)
    backoff_ms: int | None = None
    """Set when the attempt ended with `step_retrying`: the wait before the next one."""
    iterations: dict[int, Iteration] = field(default_factory=dict)
    first_seq: int = 0

    @property
    def open(self) -> bool:
        return self.status == "running"


@dataclass(slots=True)
class RunAttempts:
    """Every attempt of every step that started, steps in the order they first started."""

    steps: dict[str, list[StepAttempt]] = field(default_factory=dict)

    def latest(self) -> list[StepAttempt]:
        """The latest attempt of each step, in the order the steps first started."""
        return [attempts[-1] for attempts in self.steps.values()]

    def final_attempts(self) -> list[StepAttempt]:
        """The latest attempt of each step, ordered by when that attempt started."""
        return sorted(self.latest(), key=lambda attempt: attempt.first_seq)


def fold_attempts(events: Iterable[EventRow]) -> RunAttempts:
    """Fold a run's events (in seq order; others than `TRACE_EVENT_TYPES` are ignored)."""
    folded = RunAttempts()
    for row in events:
        if row.type not in TRACE_EVENT_TYPES:
            continue
        payload = orjson.loads(row.data)
        if not isinstance(payload, dict):
            continue
        if row.type in (ev.RUN_FAILED, ev.RUN_CANCELLED):
            _end_open(folded, row, payload)
            continue
        step_id = payload.get("stepId")
        if not isinstance(step_id, str):
            continue
        number = _int(payload.get("attempt"), 1)
        if row.type == ev.STEP_STARTED:
            _start(folded, row, payload, step_id, number)
            continue
        attempt = _find(folded, step_id, number)
        if attempt is None:
            continue
        _apply(attempt, row, payload)
    return folded


def _start(folded: RunAttempts, row: EventRow, payload: dict[str, Any], step_id: str, number: int) -> None:
    attempts = folded.steps.setdefault(step_id, [])
    if attempts and attempts[-1].open:
        _fail(attempts[-1], row.created_at, _interrupted(attempts[-1]))
    attempts.append(
        StepAttempt(
            step_id=step_id,
            step_index=_int(payload.get("stepIndex"), 0),
            attempt=number,
            name=payload.get("name") if isinstance(payload.get("name"), str) else None,
            type=payload.get("type") if isinstance(payload.get("type"), str) else None,
            started_at=row.created_at,
            first_seq=row.seq,
        )
    )


def _find(folded: RunAttempts, step_id: str, number: int) -> StepAttempt | None:
    for attempt in reversed(folded.steps.get(step_id, ())):
        if attempt.attempt == number:
            return attempt
    return None


def _apply(attempt: StepAttempt, row: EventRow, payload: dict[str, Any]) -> None:
    loop_index = payload.get("loopIndex")
    iteration = None
    if isinstance(loop_index, int) and not isinstance(loop_index, bool):
        iteration = attempt.iterations.get(loop_index)
        if iteration is None:
            iteration = attempt.iterations[loop_index] = Iteration(loop_index, started_at=row.created_at)
    if row.type == ev.STEP_INPUT:
        data = payload.get("inputData")
        target: StepAttempt | Iteration = iteration or attempt
        target.input = data if isinstance(data, dict) else None
        target.input_size = _optional_int(payload.get("inputSizeBytes"))
    elif row.type == ev.STEP_PROGRESS and iteration is not None:
        iteration.status = "completed"
        iteration.completed_at = row.created_at
        iteration.duration_ms = _optional_int(payload.get("durationMs"))
        iteration.output = payload.get("output")
        iteration.has_output = True
        iteration.usage = _usage(payload)
    elif row.type == ev.STEP_COMPLETED and attempt.open:
        attempt.status = "skipped" if payload.get("skipped") is True else "completed"
        attempt.completed_at = row.created_at
        attempt.duration_ms = _optional_int(payload.get("durationMs"))
        attempt.output = payload.get("output")
        attempt.has_output = True
        attempt.usage = _usage(payload)
    elif row.type in (ev.STEP_ERROR, ev.STEP_RETRYING) and attempt.open:
        error = payload.get("error")
        _fail(attempt, row.created_at, error if isinstance(error, dict) else _unknown_error())
        attempt.duration_ms = _optional_int(payload.get("durationMs"))
        if row.type == ev.STEP_RETRYING:
            attempt.backoff_ms = _optional_int(payload.get("backoffMs"))
        if iteration is not None and iteration.status == "running":
            iteration.status = "failed"
            iteration.completed_at = row.created_at
            iteration.error = attempt.error


def _end_open(folded: RunAttempts, row: EventRow, payload: dict[str, Any]) -> None:
    if row.type == ev.RUN_CANCELLED:
        error: dict[str, Any] = {"code": ErrorCode.RUN_CANCELLED.value, "message": "the run was cancelled"}
    else:
        raw = payload.get("error")
        error = raw if isinstance(raw, dict) else _unknown_error()
    for attempts in folded.steps.values():
        if attempts[-1].open:
            _fail(attempts[-1], row.created_at, error)


def _fail(attempt: StepAttempt, at: datetime | None, error: Mapping[str, Any]) -> None:
    attempt.status = "failed"
    attempt.completed_at = at
    attempt.error = {"code": str(error.get("code", ErrorCode.INTERNAL_ERROR.value))}
    if isinstance(error.get("message"), str):
        attempt.error["message"] = error["message"]
    for iteration in attempt.iterations.values():
        if iteration.status == "running":
            iteration.status = "failed"
            iteration.completed_at = at
            iteration.error = attempt.error


def _interrupted(attempt: StepAttempt) -> dict[str, Any]:
    return {
        "code": ErrorCode.STEP_INTERRUPTED.value,
        "message": f"attempt {attempt.attempt} of step '{attempt.step_id}' stopped when its worker was lost",
    }


def _unknown_error() -> dict[str, Any]:
    return {"code": ErrorCode.INTERNAL_ERROR.value, "message": "the step failed"}


def _usage(payload: Mapping[str, Any]) -> Usage:
    tokens = payload.get("tokens")
    tokens = tokens if isinstance(tokens, dict) else {}
    cost = payload.get("costUsd")
    model = payload.get("model")
    return Usage(
        prompt=_int(tokens.get("prompt"), 0),
        completion=_int(tokens.get("completion"), 0),
        cost_usd=cost if isinstance(cost, str) else None,
        model=model if isinstance(model, str) else None,
    )


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _optional_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# -- where a re-claimed run resumes ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResumePoint:
    attempt: int
    """The attempt number the step at the run's cursor runs as."""
    interrupted: bool
    """The attempt before it started and never ended: its worker was lost."""


FIRST_ATTEMPT: Final = ResumePoint(1, False)


def resume_point(last_boundary: EventRow | None, cursor_step_id: str) -> ResumePoint:
    """Which attempt the step at the cursor runs as, from the run's last step-boundary event
    (`STEP_BOUNDARY_EVENTS`, newest first; None when there is none).

    The cursor moves only once a step's end is stored, so a boundary event of the cursor's step
    means an attempt of it already ran: it started and was lost (interrupted), was scheduled for
    a retry, or ended but the cursor move after it was lost. In each case the step runs again,
    as the next attempt. A boundary of any other step (the previous one) means a fresh step.
    """
    if last_boundary is None:
        return FIRST_ATTEMPT
    payload = orjson.loads(last_boundary.data)
    if not isinstance(payload, dict) or payload.get("stepId") != cursor_step_id:
        return FIRST_ATTEMPT
    number = _int(payload.get("attempt"), 1)
    if last_boundary.type == ev.STEP_RETRYING:
        return ResumePoint(_int(payload.get("nextAttempt"), number + 1), False)
    return ResumePoint(number + 1, last_boundary.type == ev.STEP_STARTED)


async def logged_resume_point(store: Store, run_id: str, cursor_step_id: str) -> ResumePoint:
    """`resume_point` from the run's log: its newest step boundary, read newest first so that only
    the log's tail (one step's events at most) is read, not all of it."""
    rows = await store.read_events(run_id, types=ev.STEP_BOUNDARY_EVENTS, newest_first=True, limit=1)
    return resume_point(rows[0] if rows else None, cursor_step_id)
