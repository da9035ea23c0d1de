"""API-key authentication and tenant checks.

Keys are looked up by the id embedded in them and compared by hash in constant time (in the
store). A key belongs to one org, optionally one project; using it elsewhere is answered 403
whether or not the addressed flow exists, so a key cannot probe other tenants' flows.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from noukai.types.errors import ErrorCode
from noukai_server.api import rate_limits
from noukai_server.api.errors import ApiError
from noukai_server.api.services import Services
from noukai_server.store import ApiKeyExpired, ApiKeyRecord


def services_of(request: Request) -> Services:
    value: Services = request.app.state.services
    return value


async def services(request: Request) -> Services:
    """The `Depends` form. `async` on purpose: FastAPI runs a plain `def` dependency in its thread
    pool, a thread hop per request for an attribute read."""
    return services_of(request)


# Declares the key in the OpenAPI document (the `ApiKey` HTTP bearer scheme on every route that
# depends on `api_key`), so Swagger UI's Authorize button and "Try it out" send the header. It never
# refuses a request itself (`auto_error=False`): `api_key` reads the header and answers the errors.
bearer_scheme = HTTPBearer(
    scheme_name="ApiKey",
    bearerFormat="nk_...",
    description="An API key (`noukai keys create`), sent as `Authorization: Bearer nk_...`.",
    auto_error=False,
)


async def api_key(
    request: Request,
    _declared: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)] = None,
) -> ApiKeyRecord:
    """The request's key, or 401 UNAUTHENTICATED. `_declared` is there for the OpenAPI document
    only; plain routes call this with the request alone."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(ErrorCode.UNAUTHENTICATED, "missing API key: send `Authorization: Bearer nk_...`")
    record = await authenticate(services_of(request), token.strip())
    if record is None:
        raise ApiError(ErrorCode.UNAUTHENTICATED, "invalid or revoked API key")
    await rate_limits.enforce(request, record)  # 429 RATE_LIMITED over the key's or org's rate
    return record


async def authenticate(svc: Services, token: str) -> ApiKeyRecord | None:
    """The key's record; None for a key that is not ours, wrong or revoked; 401 UNAUTHENTICATED
    saying so for a genuine key past its expiry (the store learns that only after the hash
    matched, so the message tells nothing to someone who does not hold the key)."""
    try:
        return await svc.store.authenticate(token)
    except ApiKeyExpired as exc:
        raise ApiError(
            ErrorCode.UNAUTHENTICATED,
            f"this API key expired at {exc.expires_at.isoformat()}: create a new one (`noukai keys create`)",
        ) from None


def authorize(key: ApiKeyRecord, org: str, project: str | None = None, *, scope: str = "read") -> None:
    """403 FORBIDDEN unless the key belongs to `org` and `project` and has `scope`
    (`require_scope`). `project` None names something of the whole org (its credits, its usage):
    a key limited to one project is refused it. The tenant is checked first: another tenant is
    told only that the key cannot access it."""
    if key.org_id != org:
        raise ApiError(ErrorCode.FORBIDDEN, f"this API key cannot access org {org!r}")
    if key.project_slug is not None and project is None:
        raise ApiError(
            ErrorCode.FORBIDDEN,
            f"this API key is limited to project {org}/{key.project_slug}: what belongs to the whole"
            " org needs an org-wide key",
        )
    if key.project_slug is not None and key.project_slug != project:
        raise ApiError(ErrorCode.FORBIDDEN, f"this API key cannot access project {org}/{project}")
    require_scope(key, scope)


SCOPE_RANKS: dict[str, int] = {"read": 0, "run": 1, "admin": 2}
"""Each scope grants what the ones below it grant: `admin` manages flows, keys and credits and
does everything `run` does; `run` starts and steers runs and reads; `read` reads only (streams,
runs, traces)."""


def has_scope(key: ApiKeyRecord, needed: str) -> bool:
    rank = SCOPE_RANKS[needed]
    return any(SCOPE_RANKS.get(scope, -1) >= rank for scope in key.scopes.split())


def require_scope(key: ApiKeyRecord, needed: str) -> None:
    """403 FORBIDDEN unless the key's scopes grant `needed` (`admin`, `run` or `read`)."""
    if not has_scope(key, needed):
        raise ApiError(ErrorCode.FORBIDDEN, f"this API key lacks the {needed!r} scope (it has: {key.scopes})")
