"""`POST /seq/{org}/{project}/{slug}[/vN]/execute`: run a flow and answer with its result."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response, StreamingResponse

from noukai.types.wire import ExecuteRequest, ExecuteResponse
from noukai_server.api.auth import api_key, authorize, services
from noukai_server.api.body import openapi_body, read_model
from noukai_server.api.params import (
    IdempotencyHeader,
    Org,
    Project,
    SessionHeader,
    Slug,
    Version,
    idempotency_key_of,
)
from noukai_server.api.responses import (
    FLOW_ADDRESS,
    JSON_BODY,
    KEYED,
    RUN_FAILURES,
    RUN_INPUTS,
    TENANT,
    THREAD_TURN,
    TOOL_RESUME,
    answers,
    fails,
    json_response,
)
from noukai_server.api.services import Services
from noukai_server.runtime import parse_version_segment
from noukai_server.runtime.execute import execute as run_execute
from noukai_server.store import ApiKeyRecord

router = APIRouter(tags=["flows"])

_RESPONSES = {
    **answers(
        ExecuteResponse,
        "The run completed, or paused for the caller's tools (`tool_calls_required`); a run still"
        " going after the heartbeat is answered 200 at once, with whitespace until its body, which"
        " is then `completed`, `tool_calls_required` or `failed`",
    ),
    # A run that fails before the heartbeat is answered with its error's status and code.
    **fails(KEYED, TENANT, JSON_BODY, FLOW_ADDRESS, RUN_INPUTS, TOOL_RESUME, RUN_FAILURES, THREAD_TURN),
}


async def _execute(
    svc: Services,
    key: ApiKeyRecord,
    org: str,
    project: str,
    slug: str,
    version: str | None,
    body: ExecuteRequest,
    session_id: str | None,
    idempotency_key: str | None,
    traceparent: str | None,
) -> Response:
    authorize(key, org, project, scope="run")
    target = await svc.runs.resolve(org, project, slug, parse_version_segment(version))
    answer = await run_execute(
        svc.runs,
        svc.bus,
        target,
        body,
        org_id=key.org_id,
        api_key_id=key.id,
        session_id=session_id,
        idempotency_key=idempotency_key_of(idempotency_key),
        heartbeat_seconds=svc.config.heartbeat_seconds,
        traceparent=traceparent,
    )
    if answer.stream is not None:
        return StreamingResponse(answer.stream, media_type="application/json")
    return json_response(answer.body)


@router.post(
    "/seq/{org}/{project}/{slug}/execute",
    responses=_RESPONSES,
    openapi_extra=openapi_body(ExecuteRequest),
)
async def execute(
    org: Org,
    project: Project,
    slug: Slug,
    request: Request,
    svc: Annotated[Services, Depends(services)],
    key: Annotated[ApiKeyRecord, Depends(api_key)],
    x_session_id: SessionHeader = None,
    idempotency_key: IdempotencyHeader = None,
) -> Response:
    """Run the flow's production version (its latest published one, else its draft)."""
    body = await read_model(request, ExecuteRequest)
    return await _execute(
        svc,
        key,
        org,
        project,
        slug,
        None,
        body,
        x_session_id,
        idempotency_key,
        request.headers.get("traceparent"),
    )


@router.post(
    "/seq/{org}/{project}/{slug}/{version}/execute",
    responses=_RESPONSES,
    openapi_extra=openapi_body(ExecuteRequest),
)
async def execute_version(
    org: Org,
    project: Project,
    slug: Slug,
    version: Version,
    request: Request,
    svc: Annotated[Services, Depends(services)],
    key: Annotated[ApiKeyRecord, Depends(api_key)],
    x_session_id: SessionHeader = None,
    idempotency_key: IdempotencyHeader = None,
) -> Response:
    """Run one version: `v0` is the draft, `vN` published version N."""
    body = await read_model(request, ExecuteRequest)
    return await _execute(
        svc,
        key,
        org,
        project,
        slug,
        version,
        body,
        x_session_id,
        idempotency_key,
        request.headers.get("traceparent"),
    )
