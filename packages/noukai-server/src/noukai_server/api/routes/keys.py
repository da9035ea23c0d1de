"""The keys API: list, create and revoke an org's API keys over HTTP, with an `admin` key.

A key never grants more than it has: the new key's scope is at most its creator's, a key limited
to a project lists, creates and revokes keys of that project only, and a key that expires cannot
create one that outlives it. The plaintext of a new key is in the creation's answer and nowhere
else, ever. Another tenant's key id is answered 404, as one that does not exist.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from noukai.types.errors import ErrorCode
from noukai_server.api.auth import api_key, authorize, services
from noukai_server.api.body import openapi_body, read_model
from noukai_server.api.errors import ApiError
from noukai_server.api.key_info import key_info
from noukai_server.api.params import Org
from noukai_server.api.responses import JSON_BODY, KEYED, TENANT, answers, fails, json_response
from noukai_server.api.services import Services
from noukai_server.runtime.key_admin import KeyAdmin
from noukai_server.store import ApiKeyRecord

router = APIRouter(prefix="/orgs", tags=["keys"])

Svc = Annotated[Services, Depends(services)]
Key = Annotated[ApiKeyRecord, Depends(api_key)]
KeyId = Annotated[str, Path(description="The key's id (the part between `nk_` and the next `_`).")]
MAX_LIFETIME = timedelta(days=365 * 100)


class KeyCreate(BaseModel):
    """A new key. Without `project`, a key of the whole org (a project key's own project for a
    key limited to one); without an expiry, one that never expires (or, made by a key that
    expires, one that expires with it)."""

    model_config = ConfigDict(extra="forbid")
    scope: Literal["admin", "run", "read"] = Field(description="What the key may do (docs/deploy.md).")
    name: str | None = Field(default=None, max_length=200, description="A label.")
    project: str | None = Field(default=None, description="Limit the key to this project.")
    expiresAt: datetime | None = Field(default=None, description="When it stops working (with a zone).")
    expiresInSeconds: int | None = Field(
        default=None, ge=1, le=int(MAX_LIFETIME.total_seconds()), description="Or: how long it works."
    )


class KeyView(BaseModel):
    id: str
    name: str | None
    org: str
    project: str | None
    scope: str
    state: Literal["active", "expired", "revoked"]
    createdAt: str
    lastUsedAt: str | None
    expiresAt: str | None
    revokedAt: str | None


class KeyList(BaseModel):
    keys: list[KeyView]


class NewKey(KeyView):
    key: str = Field(description="The key itself: shown this once, never again.")


_KEY_GONE = (ErrorCode.NOT_FOUND,)


def _admin(svc: Services) -> KeyAdmin:
    return KeyAdmin(svc.store)


@router.get(
    "/{org}/keys",
    responses={**answers(KeyList, "The keys, oldest first (never their secrets)"), **fails(KEYED, TENANT)},
)
async def list_keys(org: Org, svc: Svc, key: Key) -> Response:
    """The org's keys with their scope, state, creation, last use and expiry; a key limited to a
    project sees that project's keys. Needs `admin`."""
    authorize(key, org, key.project_slug, scope="admin")
    admin = _admin(svc)
    now = admin.now()
    return json_response({"keys": [key_info(r, now) for r in await admin.visible(key, org)]})


@router.post(
    "/{org}/keys",
    status_code=201,
    responses={
        **answers(NewKey, "The new key, with its plaintext: shown this once", 201),
        **fails(KEYED, TENANT, JSON_BODY),
    },
    openapi_extra=openapi_body(KeyCreate),
)
async def create_key(org: Org, request: Request, svc: Svc, key: Key) -> Response:
    """Create a key of the org, at most as powerful as the calling one. Needs `admin`."""
    authorize(key, org, key.project_slug, scope="admin")
    body = await read_model(request, KeyCreate)
    project = body.project if body.project is not None else key.project_slug
    # Only in its own project, and never a scope it does not hold itself.
    authorize(key, org, project, scope=body.scope)
    if body.expiresAt is not None and body.expiresInSeconds is not None:
        raise ApiError(
            ErrorCode.VALIDATION_ERROR,
            "invalid request: expiresAt: give expiresAt or expiresInSeconds, not both",
            errors=[
                {"loc": ["body", "expiresAt"], "message": "give expiresAt or expiresInSeconds, not both"}
            ],
        )
    admin = _admin(svc)
    now = admin.now()
    expires = body.expiresAt
    if body.expiresInSeconds is not None:
        expires = now + timedelta(seconds=body.expiresInSeconds)
    record, plaintext = await admin.create(
        key, org, project=project, name=body.name, scope=body.scope, expires_at=expires
    )
    return json_response({**key_info(record, now), "key": plaintext}, status_code=201)


@router.delete(
    "/{org}/keys/{key_id}",
    responses={**answers(KeyView, "The key, revoked"), **fails(KEYED, TENANT, _KEY_GONE)},
)
async def revoke_key(org: Org, key_id: KeyId, svc: Svc, key: Key) -> Response:
    """Revoke a key at once (idempotent: a revoked key stays revoked). Needs `admin`; a key
    limited to a project revokes that project's keys only."""
    authorize(key, org, key.project_slug, scope="admin")
    admin = _admin(svc)
    return json_response(key_info(await admin.revoke(key, org, key_id), admin.now()))
