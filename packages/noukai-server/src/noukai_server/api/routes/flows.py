"""Flow management: save drafts, publish immutable versions, read them back.

`PUT /flows/{org}/{project}/{slug}` takes the flow as JSON, or as YAML text with a YAML content
type; both are validated exactly like `noukai flows push`.
"""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from noukai.types.errors import ErrorCode
from noukai_server.api.auth import api_key, authorize, services
from noukai_server.api.errors import ApiError
from noukai_server.api.responses import json_response
from noukai_server.api.services import Services

router = APIRouter(prefix="/flows", tags=["flow management"])

Svc = Annotated[Services, Depends(services)]
_YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain")
MAX_FLOW_BYTES = 1024 * 1024


@router.put("/{org}/{project}/{slug}")
async def save_draft(
    org: str,
    project: str,
    slug: str,
    request: Request,
    svc: Svc,
    key: Annotated[Any, Depends(api_key)],
) -> Response:
    """Create the flow or replace its draft. Published versions are never changed."""
    authorize(key, org, project)
    raw = await request.body()
    if len(raw) > MAX_FLOW_BYTES:
        raise ApiError(ErrorCode.BODY_TOO_LARGE, "a flow document may be at most 1 MiB")
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip()
    source: Any = raw
    filename = "flow.yaml" if content_type in _YAML_TYPES else "flow.json"
    if filename == "flow.json":
        # Parsed here so a document without a slug can take it from the path.
        with contextlib.suppress(orjson.JSONDecodeError):
            source = orjson.loads(raw)
    return json_response(await svc.flow_admin.save_draft(org, project, slug, source, filename=filename))


@router.post("/{org}/{project}/{slug}/publish", status_code=201)
async def publish(
    org: str, project: str, slug: str, svc: Svc, key: Annotated[Any, Depends(api_key)]
) -> Response:
    """Freeze the current draft as the next numbered version."""
    authorize(key, org, project)
    return json_response(await svc.flow_admin.publish(org, project, slug), status_code=201)


@router.get("/{org}/{project}/{slug}")
async def get_flow(
    org: str, project: str, slug: str, svc: Svc, key: Annotated[Any, Depends(api_key)]
) -> Response:
    authorize(key, org, project)
    return json_response(await svc.flow_admin.get(org, project, slug))


@router.get("/{org}/{project}/{slug}/versions")
async def list_versions(
    org: str, project: str, slug: str, svc: Svc, key: Annotated[Any, Depends(api_key)]
) -> Response:
    authorize(key, org, project)
    return json_response(await svc.flow_admin.list_versions(org, project, slug))


@router.get("/{org}/{project}/{slug}/versions/{version}")
async def get_version(
    org: str,
    project: str,
    slug: str,
    version: int,
    svc: Svc,
    key: Annotated[Any, Depends(api_key)],
) -> Response:
    authorize(key, org, project)
    return json_response(await svc.flow_admin.get_version(org, project, slug, version))


@router.get("/{org}/{project}")
async def list_flows(org: str, project: str, svc: Svc, key: Annotated[Any, Depends(api_key)]) -> Response:
    authorize(key, org, project)
    return json_response(await svc.flow_admin.list_flows(org, project))
