"""The runs API: list a tenant's runs (filtered, newest first, a page at a time) and rerun one.

`GET /runs/{executionId}` and `POST /runs/{executionId}/cancel` live with the streams
(`routes/stream.py`), whose `run_info` builds every `RunInfo` body.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Final, get_args

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from noukai.types.errors import ErrorCode
from noukai.types.wire import (
    METADATA_KEY_PATTERN,
    METADATA_MAX_KEYS,
    METADATA_VALUE_MAX_LENGTH,
    RerunRequest,
    RunInfo,
    RunList,
    RunStatus,
    TriggerType,
)
from noukai_server.api.auth import api_key, authorize, require_scope, services
from noukai_server.api.body import openapi_body, read_model
from noukai_server.api.errors import ApiError
from noukai_server.api.params import ExecutionId
from noukai_server.api.responses import JSON_BODY, KEYED, answers, fails, json_response
from noukai_server.api.routes.stream import RunNames, run_info, run_names
from noukai_server.api.services import Services
from noukai_server.runtime.runs import MAX_RUNS_PAGE, ListedRun, Position, RunFilter
from noukai_server.store import ApiKeyRecord

router = APIRouter(tags=["runs"])

Svc = Annotated[Services, Depends(services)]
Key = Annotated[ApiKeyRecord, Depends(api_key)]

DEFAULT_PAGE: Final = 50
_METADATA_KEY: Final = re.compile(METADATA_KEY_PATTERN)
_ONE_STATUS: Final = "|".join(sorted(get_args(RunStatus)))
_STATUS_LIST: Final = rf"^\s*({_ONE_STATUS})\s*(,\s*({_ONE_STATUS})\s*)*$"
_PAIR: Final = rf"{METADATA_KEY_PATTERN[:-1]}:.{{0,{METADATA_VALUE_MAX_LENGTH}}}$"


def _instant_query(what: str) -> Any:
    # Parsed by `_instant` (a zone is required); documented as the RFC 3339 instant it accepts.
    return Query(description=f"{what} (ISO 8601, with a zone).", json_schema_extra={"format": "date-time"})


def _invalid(param: str, message: str) -> ApiError:
    return ApiError(
        ErrorCode.VALIDATION_ERROR,
        f"invalid request: {param}: {message}",
        errors=[{"loc": ["query", param], "message": message}],
    )


@router.get(
    "/runs",
    responses={
        **answers(RunList, "A page of runs, newest first; `nextCursor` is null on the last page"),
        # FORBIDDEN: another org, or a project key asking for another project.
        **fails(KEYED, (ErrorCode.FORBIDDEN, ErrorCode.VALIDATION_ERROR)),
    },
)
async def list_runs(
    svc: Svc,
    key: Key,
    org: Annotated[str | None, Query(description="The org's slug (the key's org by default).")] = None,
    project: Annotated[
        str | None, Query(min_length=1, max_length=64, description="Only this project's runs (its slug).")
    ] = None,
    flow: Annotated[
        str | None, Query(min_length=1, max_length=64, description="Only this flow's runs (its slug).")
    ] = None,
    version: Annotated[
        int | None, Query(ge=0, le=999_999_999, description="Only runs of this version (0: the draft).")
    ] = None,
    status: Annotated[
        str | None,
        Query(pattern=_STATUS_LIST, description="Comma-separated statuses, e.g. `failed,cancelled`."),
    ] = None,
    trigger: Annotated[TriggerType | None, Query(description="Which endpoint started the runs.")] = None,
    since: Annotated[str | None, _instant_query("Created at or after this instant")] = None,
    until: Annotated[str | None, _instant_query("Created before this instant")] = None,
    session: Annotated[
        str | None, Query(min_length=1, max_length=255, description="Only runs recorded in this session.")
    ] = None,
    thread: Annotated[
        str | None, Query(min_length=1, max_length=255, description="Only this thread's runs (its id).")
    ] = None,
    metadata: Annotated[
        list[str] | None,
        Query(
            description="`key:value`; repeat it to require several (all must match).",
            json_schema_extra={"items": {"type": "string", "pattern": _PAIR}},
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_RUNS_PAGE, description="Runs per page.")] = DEFAULT_PAGE,
    cursor: Annotated[str | None, Query(description="The previous page's `nextCursor`.")] = None,
) -> Response:
    """The runs of the key's org (a project key: of its project), newest first. Each item is a
    `RunInfo` without its `result` (read the run for it)."""
    tenant = key.org_id if org is None else org
    authorize(key, tenant, key.project_slug if project is None else project)
    where = RunFilter(
        org_id=tenant,
        project_id=key.project_id,
        project_slug=project,
        flow_slug=flow,
        version=version,
        statuses=_statuses(status),
        trigger=trigger,
        since=_instant(since, "since"),
        until=_instant(until, "until"),
        session_id=session,
        thread_id=thread,
        metadata=_pairs(metadata or []),
    )
    page = await svc.runs.list_runs(where, decode_cursor(cursor), limit)
    return json_response(
        {
            "runs": [run_info(run, _names(run)) for run in page.runs],
            "nextCursor": None if page.next_after is None else encode_cursor(page.next_after),
        }
    )


@router.post(
    "/runs/{execution_id}/rerun",
    status_code=202,
    responses={
        **answers(RunInfo, "The new run, queued", status=202),
        **fails(
            KEYED,
            JSON_BODY,
            (
                ErrorCode.FORBIDDEN,
                ErrorCode.RUN_NOT_FOUND,
                ErrorCode.STEP_NOT_FOUND,
                ErrorCode.RERUN_NOT_POSSIBLE,
                ErrorCode.QUEUE_FULL,
                ErrorCode.INSUFFICIENT_CREDITS,
            ),
        ),
    },
    openapi_extra=openapi_body(RerunRequest),
)
async def rerun(execution_id: ExecutionId, request: Request, svc: Svc, key: Key) -> Response:
    """Start a new run of the same flow version with the same inputs, queued like a job and linked
    to the original (`rerunOf`). With `fromStep`, the steps before it are not run again: the new
    run starts there with their outputs as the original recorded them. An empty body (or none)
    reruns from the first step with the original's metadata."""
    require_scope(key, "run")
    body = await read_model(request, RerunRequest) if (await request.body()).strip() else RerunRequest()
    original = await svc.runs.get_run(execution_id, org=key.org_id, project=key.project_id)
    run = await svc.runs.rerun(
        original,
        from_step=body.from_step,
        metadata=body.metadata,
        api_key_id=key.id,
        traceparent=request.headers.get("traceparent"),
    )
    return json_response(run_info(run, await run_names(svc, run)), status_code=202)


def _names(run: ListedRun) -> RunNames:
    return RunNames(run.project_slug, run.flow_slug)


def encode_cursor(position: Position) -> str:
    """An opaque `nextCursor`: the last listed run's creation time and id."""
    created_at, run_id = position
    raw = f"{created_at.astimezone(UTC).isoformat()}|{run_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> Position | None:
    if cursor is None or not cursor.strip():
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor.strip() + "=" * (-len(cursor.strip()) % 4)).decode()
        stamp, run_id = raw.split("|")
        created_at = datetime.fromisoformat(stamp)
        uuid.UUID(run_id)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _invalid("cursor", "not a cursor this server gave (pass `nextCursor` as it is)") from None
    if created_at.tzinfo is None:
        raise _invalid("cursor", "not a cursor this server gave (pass `nextCursor` as it is)")
    return created_at, run_id


def _statuses(value: str | None) -> tuple[Any, ...]:
    # The parameter's pattern has already refused anything but known statuses.
    return () if value is None else tuple(dict.fromkeys(part.strip() for part in value.split(",")))


def _instant(value: str | None, param: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise _invalid(param, f"not an ISO 8601 instant: {value!r} (e.g. 2026-12-01T00:00:00Z)") from None
    if parsed.tzinfo is None:
        raise _invalid(param, "give a timezone (`Z` or an offset), e.g. 2026-12-01T00:00:00Z")
    return parsed.astimezone(UTC)


def _pairs(values: list[str]) -> tuple[tuple[str, str], ...]:
    if len(values) > METADATA_MAX_KEYS:
        raise _invalid("metadata", f"at most {METADATA_MAX_KEYS} pairs")
    pairs: dict[str, str] = {}
    for item in values:
        name, sep, wanted = item.partition(":")
        if not sep or not _METADATA_KEY.match(name) or len(wanted) > METADATA_VALUE_MAX_LENGTH:
            raise _invalid(
                "metadata",
                f"{item!r} is not `key:value` (a key of 1-64 letters, digits, `_`, `.` or `-`; a value "
                f"of at most {METADATA_VALUE_MAX_LENGTH} characters)",
            )
        if pairs.get(name, wanted) != wanted:
            raise _invalid("metadata", f"key {name!r} is asked with two values; a run has one")
        pairs[name] = wanted
    return tuple(pairs.items())
