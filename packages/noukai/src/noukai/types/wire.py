"""Request and response bodies of the HTTP wire contract (camelCase on the wire, snake_case in Python).

These models are shared by the server and the SDK. Unknown fields are ignored so that newer clients
and servers stay compatible with older ones.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from pydantic.alias_generators import to_camel

API_PREFIX: Final = "/api/v1"
"""Every endpoint of the HTTP API is under this path."""


class WireModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=False)


class ErrorBody(WireModel):
    """An error's `detail`: a stable `code` and a human `message`, plus details that depend on the
    code (`errors` for VALIDATION_ERROR, `executionId`, `stepId`, `issues`, ...)."""

    model_config = ConfigDict(json_schema_extra={"additionalProperties": True})

    code: str
    message: str


class ErrorEnvelope(WireModel):
    """Every error answer: `{"detail": {"code": ..., "message": ..., ...}}`."""

    detail: ErrorBody


METADATA_MAX_KEYS: Final = 16
METADATA_KEY_PATTERN: Final = r"^[A-Za-z0-9_.-]{1,64}$"
METADATA_VALUE_MAX_LENGTH: Final = 256
RunMetadata = Annotated[
    dict[
        Annotated[str, Field(pattern=METADATA_KEY_PATTERN)],
        Annotated[StrictStr, Field(max_length=METADATA_VALUE_MAX_LENGTH)],
    ],
    Field(max_length=METADATA_MAX_KEYS),
]
"""A run's caller labels: at most 16 keys of 1-64 letters, digits, `_`, `.` or `-`, each with a
string value of at most 256 characters (a number or a boolean is refused, not converted)."""

Multitask = Literal["reject", "enqueue"]
"""What a new turn does when its thread already has an active run."""


class ExecuteRequest(WireModel):
    """Body of `POST .../execute` (fresh call or tool resume) and `POST .../jobs`."""

    message: str | None = None
    messages: list[dict[str, Any]] | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    block_overrides: dict[str, dict[str, Any]] | None = None
    attachments: list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    iterations_used: int = 0
    accumulated_outputs: dict[str, Any] = Field(default_factory=dict)
    trace: bool = False
    execution_id: str | None = None
    paused_at_step: str | None = None
    tool_call_messages: list[dict[str, Any]] | None = None
    thread_id: str | None = None
    """Run as the next turn of this thread: the run's `messages` are the thread's history (cut to
    the flow's `history` window) plus this request's turn, appended to the thread on completion."""
    multitask: Multitask | None = None
    """When the thread already has an active run: `reject` (the default: 409 THREAD_BUSY) or
    `enqueue` (this run waits its turn and starts when the active one ends)."""
    metadata: RunMetadata | None = None
    """Labels stored with the new run (filter `GET /runs` by them); ignored on a tool resume."""


class StepRequest(WireModel):
    """Body of `POST .../step` (the paced step protocol)."""

    execution_id: str | None = None
    step_index: int = 0
    accumulated_outputs: dict[str, Any] = Field(default_factory=dict)
    message: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    attachments: list[dict[str, Any]] | None = None
    input_overrides: dict[str, Any] = Field(default_factory=dict)
    block_overrides: dict[str, dict[str, Any]] | None = None
    run_remaining: bool = False
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    tool_call_messages: list[dict[str, Any]] | None = None
    iterations_used: int = 0
    trace: bool = False
    thread_id: str | None = None
    """On the first call (no executionId): run as the next turn of this thread (see ExecuteRequest)."""
    multitask: Multitask | None = None
    metadata: RunMetadata | None = None
    """On the first call: labels stored with the new run. A later call (with executionId) cannot
    change them: the same labels or none are accepted, others are refused (422)."""


class ExecuteResult(WireModel):
    status: Literal["completed", "failed"]
    result: Any = None
    execution_id: str | None = None
    flow_id: str
    block_count: int


class TokenUsage(WireModel):
    prompt: int = 0
    completion: int = 0
    total: int = 0


# --- Response bodies -------------------------------------------------------------------------------
# What the server answers, one model per JSON body. The server serialises its answers with orjson
# straight from dicts of exactly these shapes (the models document them in the OpenAPI document and
# let a client validate them); fields the server always sends are required, nullable ones say so.

RunStatus = Literal["queued", "running", "waiting", "completed", "failed", "cancelled"]
"""A run's state: queued, running, waiting (for the next `/step` call or for tool results) or one of
the three terminal ones."""
TriggerType = Literal["execute", "step", "job"]
"""Which endpoint started a run."""
JobState = Literal["pending", "running", "completed", "failed"]
"""A job's state as the published SDK validates it (a cancelled run reads as failed)."""
StepStatus = Literal["running", "completed", "failed", "skipped"]

COST_PATTERN: Final = r"^\d+\.\d{6}$"
"""`costUsd`: a decimal string with exactly six places, such as `"0.000150"`."""


class RunError(WireModel):
    """Why a run failed; more keys may be added."""

    model_config = ConfigDict(json_schema_extra={"additionalProperties": True})

    code: str
    message: str
    step_id: str | None = None


class ExecuteCompleted(ExecuteResult):
    """`/execute` answered a finished run: `result` is its final output."""

    status: Literal["completed"]
    execution_id: str


class ExecuteFailed(ExecuteResult):
    """`/execute` answered a run that failed after the 200 status line was sent (a long run kept
    alive with whitespace); a run that fails sooner is answered with its error status instead."""

    status: Literal["failed"]
    execution_id: str
    error: RunError


class PausedResult(WireModel):
    """`/execute` answered a run that paused for the caller's tool results (contract 4.1)."""

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


ExecuteResponse = Annotated[ExecuteCompleted | ExecuteFailed | PausedResult, Field(discriminator="status")]
"""The 200 body of `POST .../execute`, told apart by `status`."""


class JobAccepted(WireModel):
    """The 202 body of `POST .../jobs`: the run to poll."""

    execution_id: str
    status: JobState
    flow_id: str
    block_count: int


class JobStatus(WireModel):
    """The body of `GET .../jobs/{executionId}`."""

    execution_id: str
    status: JobState
    result: Any = None
    """The final output once completed, else null."""
    error: str | None
    """`"CODE: message"` once failed, else null."""


class RunInfo(WireModel):
    """A run's state (`GET /runs/{executionId}`)."""

    execution_id: str
    flow_id: str
    flow_version: int
    """0 for a run of the draft."""
    status: RunStatus
    trigger_type: TriggerType
    cursor: int
    """The flow-absolute index of the step the run is at."""
    result: Any = None
    error: RunError | None
    last_seq: int
    """The seq of the run's last event (resume a stream after it)."""
    created_at: datetime
    completed_at: datetime | None
    # Added with the runs API; optional so that a newer client reads an older server's answer.
    org: str | None = None
    """The org's slug."""
    project: str | None = None
    """The project's slug."""
    flow: str | None = None
    """The flow's slug."""
    session_id: str | None = None
    thread_id: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    """The caller's labels (`metadata` on execute, step, jobs or rerun)."""
    started_at: datetime | None = None
    """When a worker first took the run (None while queued)."""
    duration_ms: int | None = None
    """completedAt - startedAt in milliseconds; None until the run has ended."""
    attempt: int = 0
    """How many times a worker took the run (a re-claim after a lost lease counts)."""
    cancel_requested: bool = False
    trace_id: str | None = None
    """The run's OpenTelemetry trace id (32 hex digits), when it has one."""
    rerun_of: str | None = None
    """The execution id of the run this one reruns."""
    rerun_from_step: str | None = None
    """The step id the rerun started from (the earlier steps' outputs were reused)."""
    parent_run_id: str | None = None
    """For a child run (a `flow` step's, or an agent's `flow:` tool's): the run that started it."""
    parent_step_id: str | None = None
    """The parent's step that started this child run."""
    depth: int = 0
    """0 for a run a request started, 1 for its child, 2 for a grandchild."""


class RunList(WireModel):
    """The body of `GET /runs`: a page of runs, newest first (`result` is null in list items)."""

    runs: list[RunInfo]
    next_cursor: str | None
    """Pass as `cursor` for the next page; null on the last page."""


class RerunRequest(WireModel):
    """The body of `POST /runs/{executionId}/rerun` (every field optional)."""

    model_config = ConfigDict(extra="forbid")

    from_step: StrictStr | StrictInt | None = None
    """Start from this step (its id, or its 0-based index), reusing the earlier steps' outputs."""
    metadata: RunMetadata | None = None
    """The new run's labels; the original's when omitted."""


class CancelResult(WireModel):
    """The body of `POST /runs/{executionId}/cancel`."""

    execution_id: str
    status: RunStatus
    cancel_requested: bool
    """True once the run will stop (or has ended)."""


class RunSummary(WireModel):
    """A trace's `flowRun`."""

    id: str
    """The run's execution id."""
    flow_id: str
    flow_version: int
    status: RunStatus
    trigger_type: TriggerType
    started_at: datetime
    step_count: int
    completed_at: datetime | None = None
    duration_ms: int | None = None
    error: RunError | None = None
    """Only on a failed run."""


class StepTrace(WireModel):
    """One attempt of a step (or one `foreach` iteration of it, with `loopIndex`)."""

    step_id: str
    step_index: int
    attempt: int = Field(ge=1)
    status: StepStatus
    name: str | None = None
    loop_index: int | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    duration_ms: int | None = None
    model_used: str | None = None
    tokens: TokenUsage
    cost_usd: str = Field(pattern=COST_PATTERN)
    input_size_bytes: int | None = None
    output_size_bytes: int | None = None
    input_context: dict[str, Any] | None = None
    output_context: dict[str, Any] | None = None
    error_context: dict[str, Any] | None = None
    truncated: bool
    """True when a context was cut to the server's size cap."""
    backoff_ms: int | None = None
    """The wait before the next attempt, when this one is retried."""
    iterations: int | None = None
    """How many `foreach` iterations the attempt ran."""


class StepAttempts(WireModel):
    """Every attempt of one step (`?attempt=all`)."""

    step_id: str
    attempts: list[StepTrace]


class Trace(WireModel):
    """A run's trace: the run, and the latest attempt of each step that started."""

    flow_run: RunSummary
    steps: list[StepTrace]


class ErrorSnapshot(WireModel):
    code: str
    message: str


class SessionStepSnapshot(WireModel):
    """The final attempt of a step, as a replay serves it."""

    step_id: str
    attempt: int
    loop_index: int | None
    status: str
    started_at: datetime | None = None
    completed_at: datetime | None = None
    duration_ms: int | None = None
    input_snapshot: dict[str, Any] | None
    output_snapshot: Any = None
    """What a replay serves as the step's output."""
    error_snapshot: ErrorSnapshot | None
    truncated: bool


class SessionExecution(WireModel):
    """One run tagged with the session, however many requests it took."""

    execution_id: str
    flow_id: str
    slug: str | None
    trigger_type: TriggerType
    status: Literal["pending", "running", "completed", "failed", "cancelled"]
    started_at: datetime
    completed_at: datetime | None
    trace_capture_mode: str
    snapshots_available: bool
    error_at_step: str | None
    steps: list[SessionStepSnapshot]


class SessionResponse(WireModel):
    """The body of `GET /seq/sessions/{sessionId}`: executions in start order."""

    session_id: str
    executions: list[SessionExecution]


class FlowInfo(WireModel):
    """A flow and its draft (`PUT` and `GET /flows/{org}/{project}/{slug}`)."""

    id: str
    org: str
    project: str
    slug: str
    name: str | None
    draft_revision: int
    latest_version: int | None
    """The latest published version, null before the first publish."""
    draft: dict[str, Any]
    """The draft flow document (canonical form)."""
    created_at: datetime
    updated_at: datetime


class FlowVersionInfo(WireModel):
    """A published version (the 201 body of `POST .../publish`, and each entry of the list)."""

    version: int
    created_at: datetime


class FlowVersionDocument(FlowVersionInfo):
    """A published version with its frozen document."""

    document: dict[str, Any]


class FlowVersionList(WireModel):
    versions: list[FlowVersionInfo]


class FlowSummary(WireModel):
    id: str
    slug: str
    name: str | None
    draft_revision: int
    updated_at: datetime


class FlowList(WireModel):
    flows: list[FlowSummary]


class Health(WireModel):
    status: Literal["ok"]
    version: str


class ThreadCreate(WireModel):
    """Body of `POST /threads` (every field optional)."""

    metadata: dict[str, Any] = Field(default_factory=dict)
    ttl_seconds: int | None = Field(default=None, ge=1, le=10 * 365 * 24 * 3600)
    """Erase the thread this long after its last activity (the server's default without it)."""
    project: str | None = None
    """The project of the thread, for an org-wide key (a project key's threads are its project's)."""


class ThreadFork(WireModel):
    """Body of `POST /threads/{id}/fork`."""

    position: int | None = Field(default=None, ge=0)
    """Copy the messages 1..position (all of them without it)."""
    metadata: dict[str, Any] | None = None
    """The new thread's metadata (the source's without it)."""
    ttl_seconds: int | None = Field(default=None, ge=1, le=10 * 365 * 24 * 3600)


class ThreadInfo(WireModel):
    """A thread (`POST /threads`, `GET /threads/{id}`)."""

    thread_id: str
    metadata: dict[str, Any]
    active_run_id: str | None
    """The run currently taking its turn (None: the thread is idle)."""
    run_count: int
    message_count: int
    ttl_seconds: int
    created_at: datetime
    updated_at: datetime
    expires_at: datetime


class ThreadMessageInfo(WireModel):
    """One message of a thread's history."""

    position: int
    role: str
    message: dict[str, Any]
    """The whole message: `role`, `content`, and `tool_calls` / `tool_call_id` for tool turns."""
    run_id: str | None
    created_at: datetime


class ThreadMessagePage(WireModel):
    """`GET /threads/{id}/messages`: a page of messages, oldest first."""

    messages: list[ThreadMessageInfo]
    next_cursor: str | None
    """Pass as `cursor` for the next page; None on the last page."""


class ThreadErased(WireModel):
    """`DELETE /threads/{id}`: what was erased."""

    thread_id: str
    deleted: bool
    messages: int
    """Messages deleted."""
    runs: int
    """Runs whose input, state, result and error were blanked."""
    events: int
    """Events deleted from those runs' logs."""
