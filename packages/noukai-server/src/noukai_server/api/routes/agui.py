"""`POST /seq/{org}/{project}/{slug}[/vN]/agui`: a flow as an AG-UI agent (protocol 1.0).

Thin: the key, the body and the response; the translation is `runtime.protocols.agui`. Refusals
before the stream starts are the usual `{"detail": ...}` envelope with their status; once the
stream has started, a failed run is a RUN_ERROR event. docs/protocols.md.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from noukai_server.api.auth import api_key, authorize, services
from noukai_server.api.body import read_model
from noukai_server.api.params import Org, Project, Slug, Version
from noukai_server.api.services import Services
from noukai_server.api.sse import sse_response
from noukai_server.runtime.protocols import FlowAddress, ProtocolRuns, Segment
from noukai_server.runtime.protocols.agui import (
    AguiTranslation,
    RunAgentInputBody,
    agui_request,
    agui_stream,
    on_client_thread,
)
from noukai_server.runtime.threads import Tenant, ThreadService
from noukai_server.store import ApiKeyRecord

# Not in Noukai's OpenAPI document: the stream's contract is AG-UI's (docs/protocols.md); the
# refusals before it starts are the usual envelope.
router = APIRouter(tags=["protocols"], include_in_schema=False)


async def _agui(request: Request, svc: Services, key: ApiKeyRecord, address: FlowAddress) -> Response:
    authorize(key, address.org, address.project, scope="run")
    body = await read_model(request, RunAgentInputBody)
    agui = agui_request(body)
    runs = ProtocolRuns(svc.store, svc.bus, svc.runs, heartbeat_seconds=svc.config.heartbeat_seconds)
    target = await runs.target(key, address)
    segment: Segment
    if agui.tool_results:
        segment = await runs.resume(target, key, agui.tool_results)
    else:
        threads = ThreadService(svc.store, default_ttl_seconds=svc.config.thread_ttl_seconds)
        tenant = Tenant(key.org_id, key.project_id)
        inputs, thread_id = await on_client_thread(threads, tenant, address.project, agui)
        segment = await runs.start(
            target,
            inputs,
            session_id=request.headers.get("x-session-id"),
            thread_id=thread_id,
            key=key,
            traceparent=request.headers.get("traceparent"),
        )
    translation = AguiTranslation(segment, agui.thread_id, agui.run_id)
    return sse_response(agui_stream(translation, runs.events(segment)), svc.streams)


@router.post("/seq/{org}/{project}/{slug}/agui")
async def agui(
    org: Org,
    project: Project,
    slug: Slug,
    request: Request,
    svc: Annotated[Services, Depends(services)],
    key: Annotated[ApiKeyRecord, Depends(api_key)],
) -> Response:
    """Run the flow (its production version) as an AG-UI agent; `tool` messages answering the
    frontend tool calls a run stopped on resume that run."""
    return await _agui(request, svc, key, FlowAddress(org, project, slug))


@router.post("/seq/{org}/{project}/{slug}/{version}/agui")
async def agui_version(
    org: Org,
    project: Project,
    slug: Slug,
    version: Version,
    request: Request,
    svc: Annotated[Services, Depends(services)],
    key: Annotated[ApiKeyRecord, Depends(api_key)],
) -> Response:
    """The AG-UI endpoint on one version (`vN`; `v0` is the draft)."""
    return await _agui(request, svc, key, FlowAddress.parse(f"{org}/{project}/{slug}/{version}"))
