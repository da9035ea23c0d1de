"""The credits admin API and usage: an org's balance, grants and corrections, and what its steps
cost by project, flow or key over a time range. Admin keys of the org only.

Amounts travel as decimal strings of dollars (`"12.500000"`), never as floats: the store keeps
integer micro-dollars, and a string carries them exactly.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from noukai.types.errors import ErrorCode
from noukai_server.api.auth import api_key, authorize, services
from noukai_server.api.body import openapi_body, read_model
from noukai_server.api.errors import ApiError
from noukai_server.api.params import Org
from noukai_server.api.responses import JSON_BODY, KEYED, TENANT, answers, fails, json_response
from noukai_server.api.services import Services
from noukai_server.runtime.credits import CreditService
from noukai_server.store import ApiKeyRecord

router = APIRouter(prefix="/orgs", tags=["credits"])

Svc = Annotated[Services, Depends(services)]
Key = Annotated[ApiKeyRecord, Depends(api_key)]
_ADMIN = (ErrorCode.NOT_FOUND, ErrorCode.VALIDATION_ERROR)


class CreditsAdd(BaseModel):
    """Credit to add to the org's balance (negative: a correction that takes some back)."""

    model_config = ConfigDict(extra="forbid")
    usd: Decimal = Field(
        description='Dollars, at most six decimals, not zero (a string like "12.50" or a number).'
    )
    note: str | None = Field(default=None, max_length=500, description="Why (kept with the grant).")


class CreditGrantView(BaseModel):
    id: int
    amountUsd: str
    balanceUsd: str = Field(description="The balance right after this grant.")
    note: str | None
    createdAt: datetime


class CreditsView(BaseModel):
    org: str
    limited: bool = Field(description="False: the org has no balance and its runs are unlimited.")
    balanceUsd: str | None
    updatedAt: datetime | None
    grants: list[CreditGrantView] = Field(description="The latest grants and corrections, newest first.")


class UsageTokens(BaseModel):
    prompt: int
    completion: int
    total: int


class UsageGroupView(BaseModel):
    group: str | None = Field(
        description="The org, the project slug, `project/flow`, or the key id (null: runs without a key)."
    )
    costUsd: str
    tokens: UsageTokens
    steps: int
    runs: int


class UsageView(BaseModel):
    org: str
    groupBy: Literal["org", "project", "flow", "key"]
    start: datetime | None = Field(alias="from")
    end: datetime | None = Field(alias="to")
    usage: list[UsageGroupView]
    total: UsageGroupView


def _admin(key: ApiKeyRecord, org: str) -> None:
    authorize(key, org, scope="admin")


@router.post(
    "/{org}/credits",
    responses={
        **answers(CreditsView, "The org's balance after the grant, and its latest grants"),
        **fails(KEYED, TENANT, JSON_BODY, _ADMIN),
    },
    openapi_extra=openapi_body(CreditsAdd),
)
async def add_credits(org: Org, request: Request, svc: Svc, key: Key) -> Response:
    """Add credit in USD (a negative amount corrects). The org's first grant gives it a balance:
    from then on its runs are refused (402 INSUFFICIENT_CREDITS) once the balance is not positive,
    and each completed step is charged. Needs an admin key of the org."""
    _admin(key, org)
    body = await read_model(request, CreditsAdd)
    return json_response(await _credits(svc).add(org, body.usd, body.note))


@router.get(
    "/{org}/credits",
    responses={**answers(CreditsView, "The org's balance and latest grants"), **fails(KEYED, TENANT)},
)
async def get_credits(org: Org, svc: Svc, key: Key) -> Response:
    """The org's balance (`limited: false` and no balance: its runs are unlimited) and its latest
    grants and corrections. Needs an admin key of the org."""
    _admin(key, org)
    return json_response(await _credits(svc).show(org))


def _credits(svc: Services) -> CreditService:
    return CreditService(svc.store)


def _as_utc(value: datetime | None, name: str) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return None if value is None else value.astimezone(UTC)
    raise ApiError(
        ErrorCode.VALIDATION_ERROR,
        f"invalid request: {name}: give a timezone (`Z` or an offset), e.g. 2026-12-01T00:00:00Z",
        errors=[{"loc": ["query", name], "message": "a timezone is required"}],
    )


@router.get(
    "/{org}/usage",
    responses={
        **answers(UsageView, "What the org's completed steps cost, per group"),
        **fails(KEYED, TENANT, (ErrorCode.VALIDATION_ERROR,)),
    },
)
async def get_usage(
    org: Org,
    svc: Svc,
    key: Key,
    start: Annotated[
        datetime | None,
        Query(
            alias="from", description="Only steps completed at or after this time (ISO 8601, with a zone)."
        ),
    ] = None,
    end: Annotated[
        datetime | None,
        Query(alias="to", description="Only steps completed before this time (ISO 8601, with a zone)."),
    ] = None,
    group_by: Annotated[
        Literal["org", "project", "flow", "key"], Query(description="How to group the usage.")
    ] = "org",
) -> Response:
    """Cost, tokens, steps and runs of the org's completed steps in `[from, to)`, grouped by org,
    project, flow or key, largest cost first. Recorded for every org, limited or not. Needs an
    admin key of the org."""
    _admin(key, org)
    since, until = _as_utc(start, "from"), _as_utc(end, "to")
    return json_response(await _credits(svc).usage(org, since=since, until=until, group_by=group_by))
