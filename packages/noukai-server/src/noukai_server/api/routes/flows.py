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
from noukai_server.flows import FlowValidationError
from noukai_server.runtime.flow_admin import parse_flow_document, save_flow
from noukai_server.store import FlowRecord, FlowVersionRecord

router = APIRouter(prefix="/flows", tags=["flow management"])

Svc = Annotated[Services, Depends(services)]
_YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain")
MAX_FLOW_BYTES = 1024 * 1024


def _flow_json(flow: FlowRecord, org: str, latest: int | None) -> dict[str, Any]:
    return {
        "id": flow.id,
        "org": org,
        "project": flow.project_slug,
        "slug": flow.slug,
        "name": flow.name,
        "draftRevision": flow.draft_revision,
        "latestVersion": latest,
        "draft": flow.draft,
        "createdAt": flow.created_at.isoformat(),
        "updatedAt": flow.updated_at.isoformat(),
    }


def _version_json(version: FlowVersionRecord, *, document: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"version": version.version, "createdAt": version.created_at.isoformat()}
    if document:
        body["document"] = version.document
    return body


def _invalid(exc: FlowValidationError) -> ApiError:
    issues = [
        {
            "message": i.message,
            "stepId": i.step_id,
            "stepIndex": i.step_index,
            "field": i.field,
            "line": i.line,
        }
        for i in exc.issues
    ]
    return ApiError(ErrorCode(exc.code), exc.message, issues=issues)


async def _flow_or_404(svc: Services, org: str, project: str, slug: str) -> FlowRecord:
    flow = await svc.store.get_flow(org, project, slug)
    if flow is None:
        raise ApiError(ErrorCode.FLOW_NOT_FOUND, f"no flow {org}/{project}/{slug}")
    return flow


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
    try:
        spec = parse_flow_document(
            source,
            slug=slug,
            filename=filename,
            known_functions=set(svc.functions.names()),
            known_tools=set(svc.tools.names()),
        )
    except FlowValidationError as exc:
        raise _invalid(exc) from exc
    flow, _ = await save_flow(svc.store, org, project, spec)
    latest = await svc.store.latest_version(flow.id)
    return json_response(_flow_json(flow, org, latest.version if latest else None))


@router.post("/{org}/{project}/{slug}/publish", status_code=201)
async def publish(
    org: str, project: str, slug: str, svc: Svc, key: Annotated[Any, Depends(api_key)]
) -> Response:
    """Freeze the current draft as the next numbered version."""
    authorize(key, org, project)
    flow = await _flow_or_404(svc, org, project, slug)
    version = await svc.store.publish(flow.id)
    return json_response(_version_json(version, document=False), status_code=201)


@router.get("/{org}/{project}/{slug}")
async def get_flow(
    org: str, project: str, slug: str, svc: Svc, key: Annotated[Any, Depends(api_key)]
) -> Response:
    authorize(key, org, project)
    flow = await _flow_or_404(svc, org, project, slug)
    latest = await svc.store.latest_version(flow.id)
    return json_response(_flow_json(flow, org, latest.version if latest else None))


@router.get("/{org}/{project}/{slug}/versions")
async def list_versions(
    org: str, project: str, slug: str, svc: Svc, key: Annotated[Any, Depends(api_key)]
) -> Response:
    authorize(key, org, project)
    flow = await _flow_or_404(svc, org, project, slug)
    versions = await svc.store.list_versions(flow.id)
    return json_response({"versions": [_version_json(v, document=False) for v in versions]})


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
    flow = await _flow_or_404(svc, org, project, slug)
    record = await svc.store.get_version(flow.id, version)
    if record is None:
        raise ApiError(ErrorCode.FLOW_NOT_FOUND, f"flow {org}/{project}/{slug} has no version {version}")
    return json_response(_version_json(record, document=True))


@router.get("/{org}/{project}")
async def list_flows(org: str, project: str, svc: Svc, key: Annotated[Any, Depends(api_key)]) -> Response:
    authorize(key, org, project)
    flows = await svc.store.list_flows(org, project)
    return json_response(
        {
            "flows": [
                {
                    "id": f.id,
                    "slug": f.slug,
                    "name": f.name,
                    "draftRevision": f.draft_revision,
                    "updatedAt": f.updated_at.isoformat(),
                }
                for f in flows
            ]
        }
    )
