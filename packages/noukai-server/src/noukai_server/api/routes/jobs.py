"""Queue-backed jobs: `POST .../jobs` answers at once with the run's id; `GET .../jobs/{id}` polls.

A job is an ordinary run on the lease queue (trigger `job`); only the answer differs from
`/execute`. Jobs resolve by execution id alone, never by version segment (contract 2.5).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from noukai.types.errors import ErrorCode
from noukai.types.wire import ExecuteRequest, JobAccepted, JobStatus
from noukai_server.api.auth import api_key, authorize, services
from noukai_server.api.body import openapi_body, read_model
from noukai_server.api.params import (
    ExecutionId,
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
    RUN_INPUTS,
    TENANT,
    THREAD_TURN,
    answers,
    fails,
    json_response,
)
from noukai_server.api.services import Services
from noukai_server.runtime import jobs as job_runtime
from noukai_server.runtime import parse_version_segment
from noukai_server.store import ApiKeyRecord

router = APIRouter(tags=["jobs"])

Svc = Annotated[Services, Depends(services)]
Key = Annotated[ApiKeyRecord, Depends(api_key)]
_SUBMIT = {
    **answers(JobAccepted, "The run is queued (or already started): poll it by its execution id", 202),
    **fails(
        KEYED,
        TENANT,
        JSON_BODY,
        FLOW_ADDRESS,
        RUN_INPUTS,
        THREAD_TURN,
        (ErrorCode.TOOLS_REQUIRE_SYNC_EXECUTE,),
    ),
}


async def _submit(
    svc: Services,
    key: ApiKeyRecord,
    org: str,
    project: str,
    slug: str,
    version: str | None,
    request: Request,
    session_id: str | None,
    idempotency_key: str | None,
) -> Response:
    authorize(key, org, project, scope="run")
    target = await svc.runs.resolve(org, project, slug, parse_version_segment(version))
    body = await read_model(request, ExecuteRequest)
    answer = await job_runtime.submit_job(
        svc.runs,
        target,
        body,
        session_id=session_id,
        idempotency_key=idempotency_key_of(idempotency_key),
        api_key_id=key.id,
        traceparent=request.headers.get("traceparent"),
    )
    return json_response(answer, status_code=202)


@router.post(
    "/seq/{org}/{project}/{slug}/jobs",
    status_code=202,
    responses=_SUBMIT,
    openapi_extra=openapi_body(ExecuteRequest),
)
async def submit_job(
    org: Org,
    project: Project,
    slug: Slug,
    request: Request,
    svc: Svc,
    key: Key,
    x_session_id: SessionHeader = None,
    idempotency_key: IdempotencyHeader = None,
) -> Response:
    """Queue a run of the flow's production version and answer at once (202)."""
    return await _submit(svc, key, org, project, slug, None, request, x_session_id, idempotency_key)


@router.post(
    "/seq/{org}/{project}/{slug}/{version}/jobs",
    status_code=202,
    responses=_SUBMIT,
    openapi_extra=openapi_body(ExecuteRequest),
)
async def submit_job_version(
    org: Org,
    project: Project,
    slug: Slug,
    version: Version,
    request: Request,
    svc: Svc,
    key: Key,
    x_session_id: SessionHeader = None,
    idempotency_key: IdempotencyHeader = None,
) -> Response:
    """Queue a run of one version (`v0` is the draft)."""
    return await _submit(svc, key, org, project, slug, version, request, x_session_id, idempotency_key)


@router.get(
    "/seq/{org}/{project}/{slug}/jobs/{execution_id}",
    responses={**answers(JobStatus, "The job"), **fails(KEYED, TENANT, (ErrorCode.RUN_NOT_FOUND,))},
)
async def poll_job(
    org: Org, project: Project, slug: Slug, execution_id: ExecutionId, svc: Svc, key: Key
) -> Response:
    """A job's state: pending, running, completed (with its result) or failed (with its error)."""
    authorize(key, org, project)
    return json_response(await job_runtime.poll_job(svc.runs, execution_id, org=org, project=key.project_id))
