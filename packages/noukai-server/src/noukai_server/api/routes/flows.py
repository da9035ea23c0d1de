"""Flow management: save drafts, publish immutable versions, read them back.

`PUT /flows/{org}/{project}/{slug}` takes the flow as JSON, or as YAML text with a YAML content
type; both are validated exactly like `noukai flows push`. Unlike the JSON routes (`api/body.py`),
this one also takes YAML media types (and `text/plain`, read as YAML, which JSON is a subset of);
a body sent as JSON (or with another type) that is not JSON but reads as a YAML mapping is refused
with a message naming the YAML content type to send, rather than as bare invalid JSON.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
import yaml
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from noukai.types.errors import ErrorCode
from noukai.types.wire import FlowInfo, FlowList, FlowVersionDocument, FlowVersionInfo, FlowVersionList
from noukai_server.api.auth import api_key, authorize, services
from noukai_server.api.errors import ApiError
from noukai_server.api.params import Org, Project, Slug
from noukai_server.api.responses import KEYED, TENANT, answers, fails, json_response
from noukai_server.api.services import Services
from noukai_server.runtime.flow_admin import parse_body_off_loop, refuse_deep_document

router = APIRouter(prefix="/flows", tags=["flow management"])

Svc = Annotated[Services, Depends(services)]
_YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain")
MAX_FLOW_BYTES = 1024 * 1024
MAX_FLOW_VERSION = 2**31 - 1
"""Versions are numbered from 1 in a 32-bit column: a number outside that range names no version."""

_FLOW_DOCUMENT: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The flow document (at most 1 MiB); its `slug`, when given, must be the path's.",
        "content": {
            "application/json": {"schema": {"type": "object", "additionalProperties": True}},
            **{kind: {"schema": {"type": "string"}} for kind in _YAML_TYPES},
        },
    }
}
_NO_FLOW = (ErrorCode.FLOW_NOT_FOUND,)
_YAML_HINT = (
    "the body is not JSON; it looks like YAML: send it with Content-Type: application/yaml"
    " (with curl: -H 'Content-Type: application/yaml' --data-binary @flow.yaml)"
)


def _looks_like_yaml(raw: bytes) -> bool:
    """Whether `raw`, which is not JSON, reads as a YAML mapping written as YAML (a body that opens
    like JSON, `{` or `[`, is broken JSON, and is told so)."""
    if raw.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"{", b"["):
        return False
    try:
        data = yaml.safe_load(raw)
    except (yaml.YAMLError, ValueError, RecursionError):
        return False
    return isinstance(data, dict)


_LOOKS_LIKE_YAML = object()


def _json_or_raw(raw: bytes) -> Any:
    """The parsed JSON body; `raw` itself when it is not JSON (the flow parser says why); or
    `_LOOKS_LIKE_YAML` when it reads as YAML (the client forgot the YAML content type)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _LOOKS_LIKE_YAML if _looks_like_yaml(raw) else raw


def _issue(message: str) -> dict[str, Any]:
    return {"message": message, "stepId": None, "stepIndex": None, "field": None, "line": None}


@router.put(
    "/{org}/{project}/{slug}",
    responses={
        **answers(FlowInfo, "The flow with its new draft"),
        **fails(KEYED, TENANT, (ErrorCode.INVALID_TREE, ErrorCode.NO_STEPS, ErrorCode.BODY_TOO_LARGE)),
    },
    openapi_extra=_FLOW_DOCUMENT,
)
async def save_draft(
    org: Org,
    project: Project,
    slug: Slug,
    request: Request,
    svc: Svc,
    key: Annotated[Any, Depends(api_key)],
) -> Response:
    """Create the flow or replace its draft. Published versions are never changed."""
    authorize(key, org, project, scope="admin")
    raw = await request.body()
    if len(raw) > MAX_FLOW_BYTES:
        raise ApiError(ErrorCode.BODY_TOO_LARGE, "a flow document may be at most 1 MiB")
    refuse_deep_document(raw)
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    source: Any = raw
    filename = "flow.yaml" if content_type in _YAML_TYPES else "flow.json"
    if filename == "flow.json":
        # Parsed here so a document without a slug can take it from the path; off the event loop.
        source = await parse_body_off_loop(_json_or_raw, raw)
        if source is _LOOKS_LIKE_YAML:
            raise ApiError(ErrorCode.INVALID_TREE, _YAML_HINT, issues=[_issue(_YAML_HINT)])
    return json_response(await svc.flow_admin.save_draft(org, project, slug, source, filename=filename))


@router.post(
    "/{org}/{project}/{slug}/publish",
    status_code=201,
    responses={**answers(FlowVersionInfo, "The new version", 201), **fails(KEYED, TENANT, _NO_FLOW)},
)
async def publish(
    org: Org, project: Project, slug: Slug, svc: Svc, key: Annotated[Any, Depends(api_key)]
) -> Response:
    """Freeze the current draft as the next numbered version."""
    authorize(key, org, project, scope="admin")
    return json_response(await svc.flow_admin.publish(org, project, slug), status_code=201)


@router.get(
    "/{org}/{project}/{slug}",
    responses={**answers(FlowInfo, "The flow and its draft"), **fails(KEYED, TENANT, _NO_FLOW)},
)
async def get_flow(
    org: Org, project: Project, slug: Slug, svc: Svc, key: Annotated[Any, Depends(api_key)]
) -> Response:
    """The flow, its draft and its latest published version."""
    authorize(key, org, project)
    return json_response(await svc.flow_admin.get(org, project, slug))


@router.get(
    "/{org}/{project}/{slug}/versions",
    responses={**answers(FlowVersionList, "Its published versions"), **fails(KEYED, TENANT, _NO_FLOW)},
)
async def list_versions(
    org: Org, project: Project, slug: Slug, svc: Svc, key: Annotated[Any, Depends(api_key)]
) -> Response:
    """The flow's published versions, oldest first."""
    authorize(key, org, project)
    return json_response(await svc.flow_admin.list_versions(org, project, slug))


@router.get(
    "/{org}/{project}/{slug}/versions/{version}",
    responses={
        **answers(FlowVersionDocument, "The version and its document"),
        # VALIDATION_ERROR: a version that is not an integer.
        **fails(KEYED, TENANT, _NO_FLOW, (ErrorCode.VALIDATION_ERROR,)),
    },
)
async def get_version(
    org: Org,
    project: Project,
    slug: Slug,
    version: int,
    svc: Svc,
    key: Annotated[Any, Depends(api_key)],
) -> Response:
    """One published version with its frozen document."""
    authorize(key, org, project)
    if not 1 <= version <= MAX_FLOW_VERSION:  # never sent to the store, where it would not fit
        raise ApiError(ErrorCode.FLOW_NOT_FOUND, f"flow {org}/{project}/{slug} has no version {version}")
    return json_response(await svc.flow_admin.get_version(org, project, slug, version))


@router.get(
    "/{org}/{project}", responses={**answers(FlowList, "The project's flows"), **fails(KEYED, TENANT)}
)
async def list_flows(org: Org, project: Project, svc: Svc, key: Annotated[Any, Depends(api_key)]) -> Response:
    """The project's flows."""
    authorize(key, org, project)
    return json_response(await svc.flow_admin.list_flows(org, project))
