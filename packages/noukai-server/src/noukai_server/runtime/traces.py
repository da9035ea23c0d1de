"""Run and step traces: views over the attempts folded from a run's log (`attempts.py`).

A trace shows each step's latest attempt (the run trace) or any attempt of one step (the step
trace), typed exactly as the wire contract's `StepTrace`. What a trace shows of inputs and
outputs follows the flow's `trace_capture_mode` (see `noukai_server.engine.capture`), and each context is
capped in size (`truncated: true` when cut).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final, Literal

from noukai.types.errors import ErrorCode
from noukai_server.engine.capture import CAPTURES_CONTENT, CAPTURES_SIZES, captured, json_size, truncate
from noukai_server.providers.pricing import format_cost
from noukai_server.runtime.attempts import (
    TRACE_EVENT_TYPES,
    Iteration,
    RunAttempts,
    StepAttempt,
    Usage,
    fold_attempts,
)
from noukai_server.runtime.errors import RequestRejected
from noukai_server.store import RunRecord, Store

DEFAULT_MAX_CONTEXT_BYTES: Final = 64 * 1024
ZERO_COST: Final = format_cost(Decimal(0))

AttemptSelector = Literal["latest", "all"] | int


def parse_attempt(value: str | None) -> AttemptSelector:
    """`?attempt=`: missing or `latest`, `all`, or an attempt number from 1."""
    if value is None or value == "latest":
        return "latest"
    if value == "all":
        return "all"
    if value.isascii() and value.isdigit() and len(value) <= 9 and int(value) >= 1:
        return int(value)
    raise RequestRejected(
        ErrorCode.VALIDATION_ERROR,
        f"attempt must be 'latest', 'all' or an attempt number from 1, not {value[:40]!r}",
    )


@dataclass(frozen=True, slots=True)
class CapturePolicy:
    """What traces of one run may show: its flow's capture mode and redacted fields."""

    mode: str = "full"
    redact_fields: tuple[str, ...] = ()
    max_context_bytes: int = DEFAULT_MAX_CONTEXT_BYTES

    @classmethod
    def of(
        cls, document: Mapping[str, Any], max_context_bytes: int = DEFAULT_MAX_CONTEXT_BYTES
    ) -> CapturePolicy:
        """The policy of a run's flow document (the canonical form leaves defaults out)."""
        mode = document.get("trace_capture_mode", "full")
        fields = document.get("redact_fields") or ()
        return cls(
            mode=mode if isinstance(mode, str) else "full",
            redact_fields=tuple(f for f in fields if isinstance(f, str)),
            max_context_bytes=max_context_bytes,
        )

    @property
    def snapshots(self) -> bool:
        """Whether inputs and outputs are kept at all (replay needs them)."""
        return self.mode in CAPTURES_CONTENT


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _duration_ms(start: datetime | None, end: datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return max(0, int((end - start) / timedelta(milliseconds=1)))


def run_summary(run: RunRecord) -> dict[str, Any]:
    """The trace's `flowRun`."""
    started = run.started_at or run.created_at
    body: dict[str, Any] = {
        "id": run.id,
        "flowId": run.flow_id,
        "flowVersion": run.flow_version,
        "status": run.status,
        "triggerType": run.trigger_type,
        "startedAt": iso(started),
        "stepCount": len(run.document.get("steps") or []),
    }
    if run.completed_at is not None:
        body["completedAt"] = iso(run.completed_at)
        body["durationMs"] = _duration_ms(started, run.completed_at)
    if run.status == "failed" and isinstance(run.error, dict):
        body["error"] = {k: run.error[k] for k in ("code", "message", "stepId") if k in run.error}
    return body


def step_trace(attempt: StepAttempt, policy: CapturePolicy) -> dict[str, Any]:
    """One attempt as a wire `StepTrace`."""
    input_context = attempt.input
    input_size = attempt.input_size
    if attempt.iterations and input_context is None:
        inputs = [i.input for i in attempt.iterations.values() if i.input is not None]
        sizes = [i.input_size for i in attempt.iterations.values() if i.input_size is not None]
        input_context = {"iterations": inputs} if inputs else None
        input_size = sum(sizes) if sizes else None
    body = _trace(
        attempt,
        policy,
        status=attempt.status,
        started=attempt.started_at,
        completed=attempt.completed_at,
        duration=attempt.duration_ms,
        usage=attempt.usage,
        input_context=input_context,
        input_size=input_size,
        output=(attempt.output,) if attempt.has_output and attempt.status == "completed" else None,
        error=attempt.error,
    )
    if attempt.backoff_ms is not None:
        body["backoffMs"] = attempt.backoff_ms
    if attempt.iterations:
        body["iterations"] = len(attempt.iterations)
    return body


def iteration_trace(attempt: StepAttempt, iteration: Iteration, policy: CapturePolicy) -> dict[str, Any]:
    """One `foreach` iteration of an attempt as a wire `StepTrace` with its `loopIndex`."""
    started = iteration.started_at
    if iteration.input is None and iteration.completed_at is not None and iteration.duration_ms is not None:
        started = iteration.completed_at - timedelta(milliseconds=iteration.duration_ms)
    body = _trace(
        attempt,
        policy,
        status=iteration.status,
        started=started,
        completed=iteration.completed_at,
        duration=iteration.duration_ms,
        usage=iteration.usage,
        input_context=iteration.input,
        input_size=iteration.input_size,
        output=(iteration.output,) if iteration.has_output else None,
        error=iteration.error,
    )
    body["loopIndex"] = iteration.loop_index
    return body


def _trace(
    attempt: StepAttempt,
    policy: CapturePolicy,
    *,
    status: str,
    started: datetime | None,
    completed: datetime | None,
    duration: int | None,
    usage: Usage,
    input_context: dict[str, Any] | None,
    input_size: int | None,
    output: tuple[Any] | None,
    error: dict[str, Any] | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "stepId": attempt.step_id,
        "stepIndex": attempt.step_index,
        "attempt": attempt.attempt,
        "status": status,
    }
    if attempt.name is not None:
        body["name"] = attempt.name
    if started is not None:
        body["startedAt"] = iso(started)
    if completed is not None:
        body["completedAt"] = iso(completed)
    if duration is None:
        duration = _duration_ms(started, completed)
    if duration is not None:
        body["durationMs"] = duration
    if usage.model is not None:
        body["modelUsed"] = usage.model
    body["tokens"] = {
        "prompt": usage.prompt,
        "completion": usage.completion,
        "total": usage.prompt + usage.completion,
    }
    body["costUsd"] = usage.cost_usd or ZERO_COST
    truncated = False
    if policy.mode in CAPTURES_SIZES:
        if input_size is not None:
            body["inputSizeBytes"] = input_size
        if output is not None:
            body["outputSizeBytes"] = json_size(output[0])
    if input_context is not None:
        kept = captured(input_context, policy.mode, policy.redact_fields)
        if kept is not None:
            body["inputContext"], cut = truncate(kept, policy.max_context_bytes)
            truncated = truncated or cut
    if output is not None:
        kept = captured({"output": output[0]}, policy.mode, policy.redact_fields)
        if kept is not None:
            body["outputContext"], cut = truncate(kept, policy.max_context_bytes)
            truncated = truncated or cut
    if error is not None and policy.mode != "off":
        shown = captured(error, policy.mode, policy.redact_fields) or {"code": error.get("code")}
        body["errorContext"], cut = truncate(shown, policy.max_context_bytes)
        truncated = truncated or cut
    body["truncated"] = truncated
    return body


class TraceService:
    """Reads a run's log and serves its traces; the caller has checked the run is the tenant's."""

    def __init__(self, store: Store, *, max_context_bytes: int = DEFAULT_MAX_CONTEXT_BYTES) -> None:
        self._store = store
        self._max_context_bytes = max_context_bytes

    def policy(self, run: RunRecord) -> CapturePolicy:
        return CapturePolicy.of(run.document, self._max_context_bytes)

    async def attempts(self, run: RunRecord, *, types: Collection[str] = TRACE_EVENT_TYPES) -> RunAttempts:
        """Every step attempt of the run; `EVENTS_EXPIRED` once retention pruned its log."""
        rows = await self._store.read_events(run.id, types=types)
        if not rows and run.last_seq > 0 and run.terminal and not await self._store.has_events(run.id):
            raise RequestRejected(
                ErrorCode.EVENTS_EXPIRED,
                f"the events of run {run.id} were pruned after the retention period",
                executionId=run.id,
            )
        return fold_attempts(rows)

    async def run_trace(self, run: RunRecord) -> dict[str, Any]:
        """`{"flowRun": ..., "steps": [the latest attempt of each step that started]}`."""
        folded = await self.attempts(run)
        policy = self.policy(run)
        return {
            "flowRun": run_summary(run),
            "steps": [step_trace(attempt, policy) for attempt in folded.latest()],
        }

    async def step_trace(
        self, run: RunRecord, step_id: str, selector: AttemptSelector, loop_index: int | None = None
    ) -> dict[str, Any]:
        """One attempt of a step (`latest` or a number) as a StepTrace, or `all` of them as
        `{"stepId", "attempts": [...]}`; with `loop_index`, the attempts' views of that iteration."""
        folded = await self.attempts(run)
        attempts = folded.steps.get(step_id)
        if attempts is None:
            steps = run.document.get("steps") or []
            known = any(isinstance(s, dict) and s.get("id") == step_id for s in steps)
            why = "has not started in this run" if known else "is not a step of this run's flow"
            raise RequestRejected(ErrorCode.STEP_NOT_FOUND, f"step {step_id!r} {why}", executionId=run.id)
        policy = self.policy(run)
        if loop_index is not None:
            attempts = [a for a in attempts if loop_index in a.iterations]
            if not attempts:
                raise RequestRejected(
                    ErrorCode.ATTEMPT_NOT_FOUND,
                    f"iteration {loop_index} of step {step_id!r} has not run",
                    executionId=run.id,
                )

        def view(attempt: StepAttempt) -> dict[str, Any]:
            if loop_index is None:
                return step_trace(attempt, policy)
            return iteration_trace(attempt, attempt.iterations[loop_index], policy)

        if selector == "all":
            return {"stepId": step_id, "attempts": [view(a) for a in attempts]}
        if selector == "latest":
            return view(attempts[-1])
        for attempt in attempts:
            if attempt.attempt == selector:
                return view(attempt)
        where = f" with iteration {loop_index}" if loop_index is not None else ""
        numbers = ", ".join(str(a.attempt) for a in attempts)
        raise RequestRejected(
            ErrorCode.ATTEMPT_NOT_FOUND,
            f"step {step_id!r} has no attempt {selector}{where}; its attempts: {numbers}",
            executionId=run.id,
        )
