"""Results the SDK returns: execute results, paused results, jobs, runs and traces.

Wire names are camelCase; attributes are snake_case. Unknown fields are ignored, so a newer server
can add fields freely.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr
from pydantic.alias_generators import to_camel

from noukai.types import wire

TokenUsage = wire.TokenUsage

TERMINAL_RUN_STATUSES = frozenset({"completed", "failed", "cancelled"})

_ERROR_CODE = re.compile(r"([A-Z][A-Z0-9_]*):")
"""The code that starts a job's `error` string (`"CODE: message"`)."""


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class ExecuteResult(wire.ExecuteResult):
    """A finished run's answer. `result` (also `output`) is the last executed step's output."""

    session_id: str | None = None
    """The session id the SDK tagged the call with (client side; None outside a session)."""
    error: dict[str, Any] | None = None
    """`{"code", "message", "stepId"?}` when `status` is "failed" (the answer of a run that failed
    while `/execute` kept its connection alive); None otherwise."""

    @property
    def output(self) -> Any:
        return self.result


class _PausedFields(_Model):
    status: Literal["tool_calls_required"]
    execution_id: str
    paused_at_step: str
    iterations_used: int
    tool_call_messages: list[dict[str, Any]]
    tool_calls: list[dict[str, Any]]
    """OpenAI-shaped calls: `{"id", "type": "function", "function": {"name", "arguments"}}`."""
    accumulated_outputs: dict[str, Any] = Field(default_factory=dict)
    flow_id: str
    block_count: int
    session_id: str | None = None
    result: None = None
    """Always None: a paused run has no result yet (present so that `.result` reads on either
    kind of answer, as in the README's resume loop)."""


class PausedResult(_PausedFields):
    """The run paused for tool results (sync client). `resume()` sends them and returns the next
    answer: a finished result or another pause."""

    _resumer: Callable[[PausedResult, list[dict[str, Any]]], ExecuteResult | PausedResult] | None = (
        PrivateAttr(None)
    )

    def resume(self, tool_results: list[dict[str, Any]]) -> ExecuteResult | PausedResult:
        if self._resumer is None:
            raise RuntimeError("this PausedResult was not returned by a Noukai client")
        return self._resumer(self, list(tool_results))


class AsyncPausedResult(_PausedFields):
    """The run paused for tool results (async client); `await result.resume(tool_results)`."""

    _resumer: (
        Callable[[AsyncPausedResult, list[dict[str, Any]]], Awaitable[ExecuteResult | AsyncPausedResult]]
        | None
    ) = PrivateAttr(None)

    async def resume(self, tool_results: list[dict[str, Any]]) -> ExecuteResult | AsyncPausedResult:
        if self._resumer is None:
            raise RuntimeError("this AsyncPausedResult was not returned by an AsyncNoukai client")
        return await self._resumer(self, list(tool_results))


class JobAccepted(_Model):
    execution_id: str
    status: str
    flow_id: str
    block_count: int


class JobStatus(_Model):
    """A job's state (`job.poll()`, `job.wait()`)."""

    execution_id: str
    status: str
    """"pending", "running", "completed", "failed" or "cancelled". The server's job answer says
    "failed" for a cancelled run too (the published SDK accepts only four statuses); `poll()`
    tells the two apart by the run's own status (or, failing that, the `RUN_CANCELLED:` error)."""
    result: Any = None
    error: Any = None
    """`"CODE: message"` once failed or cancelled, else None."""

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_RUN_STATUSES

    @property
    def cancelled(self) -> bool:
        """The run was cancelled (`POST /runs/{id}/cancel`) rather than failing."""
        return self.status == "cancelled"

    @property
    def error_code(self) -> str | None:
        """The code of `error` (`"RUN_CANCELLED"` for a cancelled job), or None."""
        found = _ERROR_CODE.match(self.error) if isinstance(self.error, str) else None
        return found.group(1) if found else None


class RunSummary(_Model):
    id: str
    flow_id: str
    flow_version: int | None = None
    status: str
    trigger_type: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    duration_ms: int | None = None
    step_count: int | None = None
    error: dict[str, Any] | None = None
    """`{"code", "message", "stepId"?}` on a failed run."""


class StepTrace(_Model):
    step_id: str
    step_index: int | None = None
    name: str | None = None
    attempt: int = 1
    status: str
    """"running", "completed", "failed" or "skipped"."""
    loop_index: int | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    duration_ms: int | None = None
    model_used: str | None = None
    tokens: TokenUsage | None = None
    cost_usd: str | None = None
    input_context: dict[str, Any] | None = None
    output_context: dict[str, Any] | None = None
    error_context: dict[str, Any] | None = None
    input_size_bytes: int | None = None
    output_size_bytes: int | None = None
    truncated: bool = False
    backoff_ms: int | None = None
    """How long the step waited before its next attempt (after a failed attempt that is retried)."""
    iterations: int | None = None
    """How many `foreach` iterations the attempt ran."""


class StepAttempts(_Model):
    step_id: str
    attempts: list[StepTrace]


class Trace(_Model):
    flow_run: RunSummary
    steps: list[StepTrace]

    @property
    def summary(self) -> RunSummary:
        """The run's summary (`flowRun` on the wire)."""
        return self.flow_run


class RunInfo(_Model):
    """A run's state (`GET /runs/{id}`)."""

    execution_id: str
    flow_id: str | None = None
    flow_version: int | None = None
    status: str
    """"queued", "running", "waiting", "completed", "failed" or "cancelled"."""
    trigger_type: str | None = None
    cursor: int | None = None
    result: Any = None
    error: Any = None
    last_seq: int = 0
    created_at: datetime | None = None
    completed_at: datetime | None = None
    # The fields below came with the runs API (`GET /runs`); an older server leaves the defaults.
    org: str | None = None
    """The org's slug."""
    project: str | None = None
    """The project's slug."""
    flow: str | None = None
    """The flow's slug."""
    session_id: str | None = None
    thread_id: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    """The caller's key/value tags, given when the run started (`metadata=`)."""
    started_at: datetime | None = None
    duration_ms: int | None = None
    """Completed minus started; None while the run goes on."""
    attempt: int = 0
    """How many times a worker took the run (a re-claim after a lost lease counts)."""
    cancel_requested: bool = False
    trace_id: str | None = None
    """The run's OpenTelemetry trace id (32 hex digits), when the server traces."""
    rerun_of: str | None = None
    """The execution id of the run this one re-runs (`client.runs.rerun()`)."""
    rerun_from_step: str | None = None
    """The step the rerun started at (the earlier steps' outputs were reused)."""
    parent_run_id: str | None = None
    """For a child run (a `flow` step's, or an agent's `flow:` tool's): the run that started it."""
    parent_step_id: str | None = None
    """The parent's step that started this child run."""
    depth: int = 0
    """0 for a run a request started, 1 for its child, 2 for a grandchild."""

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_RUN_STATUSES


class RunPage(_Model):
    """One page of `client.runs.list()`: runs newest first, and the cursor of the next page."""

    runs: list[RunInfo]
    next_cursor: str | None = None
    """Pass it as `cursor=` for the next page; None on the last page."""


class CancelResult(_Model):
    """The answer to a cancel: the run's status now, and whether it will stop."""

    execution_id: str
    status: str
    cancel_requested: bool = True
