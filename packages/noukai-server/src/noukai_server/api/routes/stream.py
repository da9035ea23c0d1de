"""Streams over a run's log: the paced step protocol, the native resumable stream, the live trace,
and cancellation. Every stream is a view over the stored log plus its live tail."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from starlette.responses import Response
from starlette.routing import Route

from noukai.types import events as ev
from noukai.types.errors import ErrorCode
from noukai.types.wire import StepRequest
from noukai_server.api.auth import api_key, authorize, services, services_of
from noukai_server.api.body import openapi_body, read_model
from noukai_server.api.errors import ApiError
from noukai_server.api.responses import json_response
from noukai_server.api.resume import MAX_SEQ, InvalidResumePosition, resume_position
from noukai_server.api.services import Services
from noukai_server.api.sse import StreamPolicy, follow_frames, sse_response
from noukai_server.eventlog.follower import RunEventFollower
from noukai_server.runtime import parse_version_segment
from noukai_server.store import ApiKeyRecord, RunRecord

router = APIRouter(tags=["streams"])

Svc = Annotated[Services, Depends(services)]
Key = Annotated[ApiKeyRecord, Depends(api_key)]

SEGMENT_ENDS = ev.SEGMENT_END_EVENTS
_SSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "An SSE stream of run events"}
}


async def _step(
    svc: Services,
    key: ApiKeyRecord,
    org: str,
    project: str,
    slug: str,
    version: str | None,
    request: Request,
    session_id: str | None,
) -> Response:
    authorize(key, org, project)
    # `/v0/step` steps through the draft. The hosted backend refuses it (INVALID_VERSION) and the
    # contract allows either; serving it keeps the README's promise that "draft" works everywhere.
    target = await svc.runs.resolve(org, project, slug, parse_version_segment(version))
    body = await read_model(request, StepRequest)
    run_id, after = await svc.runs.begin_step_segment(target, body, org=key.org_id, session_id=session_id)
    policy = StreamPolicy(heartbeat_seconds=svc.config.heartbeat_seconds, stop_after=SEGMENT_ENDS)
    return sse_response(follow_frames(lambda: RunEventFollower(svc.store, svc.bus, run_id, after), policy))


SessionHeader = Annotated[str | None, Header(alias="X-Session-Id")]


@router.post("/seq/{org}/{project}/{slug}/step", responses=_SSE, openapi_extra=openapi_body(StepRequest))
async def step(
    org: str,
    project: str,
    slug: str,
    request: Request,
    svc: Svc,
    key: Key,
    x_session_id: SessionHeader = None,
) -> Response:
    """Run the next step (or, with `runRemaining`, every remaining step) as an SSE stream."""
    return await _step(svc, key, org, project, slug, None, request, x_session_id)


@router.post(
    "/seq/{org}/{project}/{slug}/{version}/step", responses=_SSE, openapi_extra=openapi_body(StepRequest)
)
async def step_version(
    org: str,
    project: str,
    slug: str,
    version: str,
    request: Request,
    svc: Svc,
    key: Key,
    x_session_id: SessionHeader = None,
) -> Response:
    """The step protocol on published version N (`/vN`)."""
    return await _step(svc, key, org, project, slug, version, request, x_session_id)


async def _step_plain(request: Request) -> Response:
    params = request.path_params
    return await _step(
        services_of(request),
        await api_key(request),
        params["org"],
        params["project"],
        params["slug"],
        params.get("version"),
        request,
        request.headers.get("x-session-id"),
    )


async def _run_events_plain(request: Request) -> Response:
    return await _run_events(
        services_of(request),
        await api_key(request),
        request.path_params["execution_id"],
        request.query_params.get("since_id"),
        request.query_params.get("types"),
        request.headers.get("last-event-id"),
    )


def plain_routes(prefix: str) -> list[Route]:
    """`step`, `step_version` and `run_events` again, as plain Starlette routes for the app to try
    first.

    These are the paths every streamed run takes, and FastAPI's per-request machinery (dependency
    solving, parameter models) was a measurable part of a run's cost; these handlers do the same
    work with the same helpers and error handling. The FastAPI routes stay for the OpenAPI
    document (and would answer only if these were not mounted)."""
    return [
        Route(f"{prefix}/seq/{{org}}/{{project}}/{{slug}}/step", _step_plain, methods=["POST"]),
        Route(f"{prefix}/seq/{{org}}/{{project}}/{{slug}}/{{version}}/step", _step_plain, methods=["POST"]),
        Route(f"{prefix}/runs/{{execution_id}}/events", _run_events_plain, methods=["GET"]),
    ]


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


@router.get("/seq/{org}/{project}/{slug}/runs/{execution_id}/trace/stream", responses=_SSE)
async def live_trace(org: str, project: str, slug: str, execution_id: str, svc: Svc, key: Key) -> Response:
    """Every stored event of the run, then its live tail; closes when the run has ended."""
    run = await _run_for(svc, key, execution_id, org, project)
    await _ensure_log_kept(svc, run)
    policy = StreamPolicy(heartbeat_seconds=svc.config.heartbeat_seconds, stop_after=ev.TERMINAL_EVENTS)
    return sse_response(follow_frames(lambda: RunEventFollower(svc.store, svc.bus, run.id, 0), policy))


_SINCE_ID = (
    f"Resume after this seq (ASCII digits, 0 to {MAX_SEQ}); the larger of it and `Last-Event-ID` wins."
)
# The value is parsed by `resume_position`, shared with the plain route, so FastAPI takes the raw
# string; the document still describes the integer the parser accepts.
_SEQ_SCHEMA: dict[str, Any] = {
    "anyOf": [{"type": "integer", "minimum": 0, "maximum": MAX_SEQ}, {"type": "null"}]
}


@router.get("/runs/{execution_id}/events", responses=_SSE)
async def run_events(
    execution_id: str,
    svc: Svc,
    key: Key,
    since_id: Annotated[str | None, Query(description=_SINCE_ID, json_schema_extra=_SEQ_SCHEMA)] = None,
    types: Annotated[str | None, Query(description="Comma-separated event types to keep.")] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> Response:
    """The run's log as a resumable SSE stream: `id:` is the seq; resume with `Last-Event-ID` or
    `since_id`. Heartbeats while quiet; the server closes long streams on purpose (reconnect and
    resume); the stream ends after the run's terminal event."""
    return await _run_events(svc, key, execution_id, since_id, types, last_event_id)


async def _run_events(
    svc: Services,
    key: ApiKeyRecord,
    execution_id: str,
    since_id: str | None,
    types: str | None,
    last_event_id: str | None,
) -> Response:
    """Both routes of the native stream: the resume position is parsed here, by one parser, and a bad
    one is refused (422 `VALIDATION_ERROR`) before the run is looked up or a byte is streamed."""
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
    return sse_response(follow_frames(lambda: RunEventFollower(svc.store, svc.bus, run.id, after), policy))


@router.post("/runs/{execution_id}/cancel")
async def cancel_run(execution_id: str, svc: Svc, key: Key) -> Response:
    """Stop a queued, running or waiting run at its next safe point. Idempotent."""
    run = await _run_for(svc, key, execution_id)
    updated = await svc.runs.cancel(run)
    return json_response(
        {
            "executionId": updated.id,
            "status": updated.status,
            "cancelRequested": updated.cancel_requested or updated.terminal,
        }
    )


@router.get("/runs/{execution_id}")
async def get_run(execution_id: str, svc: Svc, key: Key) -> Response:
    """A run's state: status, cursor, result or error."""
    run = await _run_for(svc, key, execution_id)
    return json_response(
        {
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
            "completedAt": run.completed_at.isoformat() if run.completed_at else None,
        }
    )
