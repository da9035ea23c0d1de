"""Streams over a run's log: the paced step protocol, the native resumable stream, the live trace,
and cancellation. Every stream is a view over the stored log plus its live tail."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Final, Protocol

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from noukai.types import events as ev
from noukai.types.errors import ErrorCode
from noukai.types.wire import CancelResult, RunInfo, RunStatus, StepRequest, TriggerType
from noukai_server.api.auth import api_key, authorize, require_scope, services, services_of
from noukai_server.api.body import read_model
from noukai_server.api.endpoints import Endpoint, Param
from noukai_server.api.errors import ApiError
from noukai_server.api.params import (
    EXECUTION_ID,
    ORG,
    PROJECT,
    SESSION,
    SLUG,
    VERSION,
    ExecutionId,
    Org,
    Project,
    Slug,
)
from noukai_server.api.responses import (
    FLOW_ADDRESS,
    JSON_BODY,
    KEYED,
    STEP_INPUTS,
    TENANT,
    THREAD_TURN,
    TOOL_RESUME,
    answers,
    fails,
    json_response,
    streams,
)
from noukai_server.api.resume import MAX_SEQ, InvalidResumePosition, resume_position
from noukai_server.api.services import Services
from noukai_server.api.sse import SseResponse, StreamPolicy, follow_frames, sse_response
from noukai_server.eventlog.follower import RunEventFollower
from noukai_server.runtime import parse_version_segment
from noukai_server.runtime.runs import trace_id_of
from noukai_server.store import ApiKeyRecord, RunRecord

router = APIRouter(tags=["streams"])

Svc = Annotated[Services, Depends(services)]
Key = Annotated[ApiKeyRecord, Depends(api_key)]

SEGMENT_ENDS = ev.SEGMENT_END_EVENTS

SINCE_ID = Param(
    "since_id",
    "query",
    f"Resume after this seq (ASCII digits, 0 to {MAX_SEQ}); the larger of it and `Last-Event-ID` wins.",
    # The raw string is parsed by `resume_position`; the document describes the integer it accepts.
    {"type": "integer", "minimum": 0, "maximum": MAX_SEQ},
)
TYPES = Param("types", "query", "Comma-separated event types to keep (all by default).")
LAST_EVENT_ID = Param(
    "Last-Event-ID",
    "header",
    "The `id:` of the last event received (an event seq, as `since_id`); blank means none.",
    {"type": "string", "pattern": r"^\s*[0-9]*\s*$"},
)

_STEP_ERRORS = fails(
    KEYED,
    TENANT,
    JSON_BODY,
    FLOW_ADDRESS,
    STEP_INPUTS,
    TOOL_RESUME,
    THREAD_TURN,
    (ErrorCode.INVALID_FIRST_CALL, ErrorCode.RUN_NOT_FOUND, ErrorCode.RUN_NOT_RESUMABLE),
)
_STEP_STREAM = streams(
    "The segment's events, from `run_started` (first call) to `step_paused`, "
    "`step_paused_for_tool_calls`, `step_error` or `flow_completed`; then the stream ends."
)


async def step(
    request: Request,
    *,
    org: str,
    project: str,
    slug: str,
    x_session_id: str | None,
    version: str | None = None,
) -> Response:
    """Run the next step (or, with `runRemaining`, every remaining step) as an SSE stream."""
    svc = services_of(request)
    key = await api_key(request)
    authorize(key, org, project, scope="run")
    # `/v0/step` steps through the draft. The hosted backend refuses it (INVALID_VERSION) and the
    # contract allows either; serving it keeps the README's promise that "draft" works everywhere.
    target = await svc.runs.resolve(org, project, slug, parse_version_segment(version))
    body = await read_model(request, StepRequest)
    run_id, after = await svc.runs.begin_step_segment(
        target,
        body,
        org=key.org_id,
        session_id=x_session_id,
        api_key_id=key.id,
        traceparent=request.headers.get("traceparent"),
    )
    policy = StreamPolicy(heartbeat_seconds=svc.config.heartbeat_seconds, stop_after=SEGMENT_ENDS)
    return sse_response(
        follow_frames(lambda: RunEventFollower(svc.store, svc.bus, run_id, after), policy), svc.streams
    )


async def run_events(
    request: Request,
    *,
    execution_id: str,
    since_id: str | None,
    types: str | None,
    last_event_id: str | None,
) -> Response:
    """The run's log as a resumable SSE stream: `id:` is the seq; resume with `Last-Event-ID` or
    `since_id`. Heartbeats while quiet; the server closes long streams on purpose (reconnect and
    resume); the stream ends after the run's terminal event."""
    svc = services_of(request)
    key = await api_key(request)
    # One parser (`resume_position`) for both inputs; a bad position is refused (422
    # VALIDATION_ERROR) before the run is looked up or a byte is streamed.
    try:
        after = resume_position(since_id, last_event_id)
    except InvalidResumePosition as exc:
        raise ApiError(
            ErrorCode.VALIDATION_ERROR,
            f"invalid request: {exc}",
            errors=[{"loc": list(exc.where), "message": exc.reason}],
        ) from None
    run = await _run_for(svc, key, execution_id)
    await _ensure_log_kept(svc, run)
    wanted = None
    if types:
        wanted = frozenset(t.strip() for t in types.split(",") if t.strip())
    config = svc.config
    policy = StreamPolicy(
        heartbeat_seconds=config.heartbeat_seconds,
        max_lifetime_seconds=config.stream_lifetime_seconds,
        retry_ms=config.retry_ms,
        stop_after=ev.TERMINAL_EVENTS,
        types=wanted,
    )
    return sse_response(
        follow_frames(lambda: RunEventFollower(svc.store, svc.bus, run.id, after), policy), svc.streams
    )


ENDPOINTS: Final = (
    Endpoint(
        "POST",
        "/seq/{org}/{project}/{slug}/step",
        step,
        (ORG, PROJECT, SLUG, SESSION),
        {**_STEP_STREAM, **_STEP_ERRORS},
        name="step",
        body=StepRequest,
        tags=("streams",),
        sse=True,
    ),
    Endpoint(
        "POST",
        "/seq/{org}/{project}/{slug}/{version}/step",
        step,
        (ORG, PROJECT, SLUG, VERSION, SESSION),
        {**_STEP_STREAM, **_STEP_ERRORS},
        name="step_version",
        body=StepRequest,
        tags=("streams",),
        description="The step protocol on one version (`vN`; `v0` is the draft).",
        sse=True,
    ),
    Endpoint(
        "GET",
        "/runs/{execution_id}/events",
        run_events,
        (EXECUTION_ID, SINCE_ID, TYPES, LAST_EVENT_ID),
        {
            **streams("Every event after the resume position, each with `id: <seq>`, then the live tail."),
            **fails(KEYED, (ErrorCode.VALIDATION_ERROR, ErrorCode.RUN_NOT_FOUND, ErrorCode.EVENTS_EXPIRED)),
        },
        name="run_events",
        tags=("streams",),
        sse=True,
    ),
)
"""The streams served by plain Starlette routes (see `noukai_server.api.endpoints`)."""


async def _run_for(
    svc: Services, key: ApiKeyRecord, run_id: str, org: str | None = None, project: str | None = None
) -> RunRecord:
    if org is not None:
        authorize(key, org, project)
    run = await svc.runs.get_run(run_id, org=key.org_id, project=key.project_id)
    if org is not None and run.org_id != org:
        raise ApiError(ErrorCode.RUN_NOT_FOUND, f"no run {run_id}")
    return run


async def _ensure_log_kept(svc: Services, run: RunRecord) -> None:
    if run.terminal and run.last_seq > 0 and not await svc.store.has_events(run.id):
        raise ApiError(
            ErrorCode.EVENTS_EXPIRED,
            f"the events of run {run.id} were pruned after the retention period",
            executionId=run.id,
            runStatus=run.status,
        )


_RUN_ERRORS = fails(KEYED, (ErrorCode.RUN_NOT_FOUND,))


@router.get(
    "/seq/{org}/{project}/{slug}/runs/{execution_id}/trace/stream",
    response_class=SseResponse,
    status_code=200,
    responses={
        **streams("Every stored event of the run, then its live tail, to the run's terminal event."),
        **fails(KEYED, TENANT, (ErrorCode.RUN_NOT_FOUND, ErrorCode.EVENTS_EXPIRED)),
    },
)
async def live_trace(
    org: Org, project: Project, slug: Slug, execution_id: ExecutionId, svc: Svc, key: Key
) -> Response:
    """Every stored event of the run, then its live tail; closes when the run has ended."""
    run = await _run_for(svc, key, execution_id, org, project)
    await _ensure_log_kept(svc, run)
    policy = StreamPolicy(heartbeat_seconds=svc.config.heartbeat_seconds, stop_after=ev.TERMINAL_EVENTS)
    return sse_response(
        follow_frames(lambda: RunEventFollower(svc.store, svc.bus, run.id, 0), policy), svc.streams
    )


@router.post(
    "/runs/{execution_id}/cancel",
    responses={
        **answers(CancelResult, "The run's status now, and whether it will stop"),
        # FORBIDDEN: a key without the `run` scope.
        **fails(KEYED, (ErrorCode.FORBIDDEN, ErrorCode.RUN_NOT_FOUND)),
    },
)
async def cancel_run(execution_id: ExecutionId, svc: Svc, key: Key) -> Response:
    """Stop a queued, running or waiting run at its next safe point. Idempotent."""
    require_scope(key, "run")
    run = await _run_for(svc, key, execution_id)
    return json_response(cancel_result(await svc.runs.cancel(run)))


@router.get("/runs/{execution_id}", responses={**answers(RunInfo, "The run"), **_RUN_ERRORS})
async def get_run(execution_id: ExecutionId, svc: Svc, key: Key) -> Response:
    """A run's state: status, cursor, result or error, labels, trace id and rerun link."""
    run = await _run_for(svc, key, execution_id)
    return json_response(run_info(run, await run_names(svc, run)))


async def run_names(svc: Services, run: RunRecord) -> RunNames:
    """The slugs of the run's project and flow (one read; a deleted flow names none)."""
    return RunNames(*await svc.runs.names_of(run))


def cancel_result(run: RunRecord) -> dict[str, Any]:
    """A `CancelResult` body."""
    return {
        "executionId": run.id,
        "status": run.status,
        "cancelRequested": run.cancel_requested or run.terminal,
    }


@dataclass(frozen=True, slots=True)
class RunNames:
    """The slugs a `RunInfo` names its run's project and flow by."""

    project: str | None
    flow: str | None


class RunInfoSource(Protocol):
    """What a `RunInfo` is built from: a `RunRecord`, or a `ListedRun` of the runs list."""

    @property
    def id(self) -> str: ...
    @property
    def org_id(self) -> str: ...
    @property
    def flow_id(self) -> str: ...
    @property
    def flow_version(self) -> int: ...
    @property
    def status(self) -> RunStatus: ...
    @property
    def trigger_type(self) -> TriggerType: ...
    @property
    def cursor(self) -> int: ...
    @property
    def result(self) -> Any: ...
    @property
    def error(self) -> Any: ...
    @property
    def last_seq(self) -> int: ...
    @property
    def attempt(self) -> int: ...
    @property
    def cancel_requested(self) -> bool: ...
    @property
    def session_id(self) -> str | None: ...
    @property
    def thread_id(self) -> str | None: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def started_at(self) -> datetime | None: ...
    @property
    def completed_at(self) -> datetime | None: ...
    @property
    def metadata(self) -> dict[str, str]: ...
    @property
    def traceparent(self) -> str | None: ...
    @property
    def rerun_of(self) -> str | None: ...
    @property
    def rerun_from_step(self) -> str | None: ...
    @property
    def parent_run_id(self) -> str | None: ...
    @property
    def parent_step_id(self) -> str | None: ...
    @property
    def depth(self) -> int: ...


def run_info(run: RunInfoSource, names: RunNames) -> dict[str, Any]:
    """A `RunInfo` body."""
    started, completed = run.started_at, run.completed_at
    return {
        "executionId": run.id,
        "flowId": run.flow_id,
        "flowVersion": run.flow_version,
        "status": run.status,
        "triggerType": run.trigger_type,
        "cursor": run.cursor,
        "result": run.result,
        "error": run.error,
        "lastSeq": run.last_seq,
        "createdAt": run.created_at.isoformat(),
        "completedAt": completed.isoformat() if completed else None,
        "org": run.org_id,
        "project": names.project,
        "flow": names.flow,
        "sessionId": run.session_id,
        "threadId": run.thread_id,
        "metadata": run.metadata,
        "startedAt": started.isoformat() if started else None,
        # A run cancelled before any worker took it has no start, so no duration.
        "durationMs": round((completed - started).total_seconds() * 1000) if started and completed else None,
        "attempt": run.attempt,
        "cancelRequested": run.cancel_requested,
        "traceId": trace_id_of(run.traceparent),
        "rerunOf": run.rerun_of,
        "rerunFromStep": run.rerun_from_step,
        "parentRunId": run.parent_run_id,
        "parentStepId": run.parent_step_id,
        "depth": run.depth,
    }
