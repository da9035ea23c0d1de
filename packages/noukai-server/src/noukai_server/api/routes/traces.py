"""Run and step traces (contract 2.6): views over the run's log, resolved by execution id alone
(never a version segment). Another tenant's run is answered like a run that does not exist."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from starlette.responses import Response

from noukai.types.errors import ErrorCode
from noukai.types.wire import StepAttempts, StepTrace, Trace
from noukai_server.api.auth import api_key, authorize, services
from noukai_server.api.params import ExecutionId, Org, Project, Slug
from noukai_server.api.responses import KEYED, TENANT, answers, fails, json_response
from noukai_server.api.services import Services
from noukai_server.runtime.traces import parse_attempt
from noukai_server.store import ApiKeyRecord

router = APIRouter(tags=["traces"])

Svc = Annotated[Services, Depends(services)]
ATTEMPT_PATTERN = "^(latest|all|[1-9][0-9]{0,8})$"
"""The attempt selectors `parse_attempt` accepts (it also takes leading zeros)."""
Key = Annotated[ApiKeyRecord, Depends(api_key)]


_RUN = (ErrorCode.RUN_NOT_FOUND, ErrorCode.EVENTS_EXPIRED)


@router.get(
    "/seq/{org}/{project}/{slug}/runs/{execution_id}/trace",
    responses={**answers(Trace, "The run's trace"), **fails(KEYED, TENANT, _RUN)},
)
async def run_trace(
    org: Org, project: Project, slug: Slug, execution_id: ExecutionId, svc: Svc, key: Key
) -> Response:
    """The run (`flowRun`) and the latest attempt of each step that started (`steps`)."""
    authorize(key, org, project)
    run = await svc.runs.get_run(execution_id, org=key.org_id, project=key.project_id)
    return json_response(await svc.traces.run_trace(run))


@router.get(
    "/seq/{org}/{project}/{slug}/runs/{execution_id}/steps/{step_id}/trace",
    responses={
        **answers(StepTrace | StepAttempts, "One attempt (a StepTrace), or every attempt with `attempt=all`"),
        **fails(
            KEYED,
            TENANT,
            _RUN,
            (ErrorCode.VALIDATION_ERROR, ErrorCode.STEP_NOT_FOUND, ErrorCode.ATTEMPT_NOT_FOUND),
        ),
    },
)
async def step_trace(
    org: Org,
    project: Project,
    slug: Slug,
    execution_id: ExecutionId,
    step_id: Annotated[str, Path(description="The step's id in the flow.")],
    svc: Svc,
    key: Key,
    attempt: Annotated[
        str | None,
        Query(
            description="`latest` (the default), `all` for every attempt, or an attempt number from 1.",
            json_schema_extra={"pattern": ATTEMPT_PATTERN},
        ),
    ] = None,
    loop_index: Annotated[
        int | None, Query(ge=0, description="One iteration of a `foreach` step (from 0).")
    ] = None,
) -> Response:
    """One attempt of a step as a StepTrace, or `{"stepId", "attempts": [...]}` for `attempt=all`."""
    selector = parse_attempt(attempt)
    authorize(key, org, project)
    run = await svc.runs.get_run(execution_id, org=key.org_id, project=key.project_id)
    return json_response(await svc.traces.step_trace(run, step_id, selector, loop_index))
