"""`POST /seq/{org}/{project}/{slug}[/vN]/execute`: run a flow and answer with its result."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Request
from starlette.responses import Response, StreamingResponse

from noukai.types.errors import ErrorCode
from noukai.types.wire import ErrorEnvelope, ExecuteRequest, ExecuteResult
from noukai_server.api.auth import api_key, authorize, services
from noukai_server.api.body import openapi_body, read_model
from noukai_server.api.errors import ApiError
from noukai_server.api.responses import json_response
from noukai_server.api.services import Services
from noukai_server.engine import RunInputs
from noukai_server.runtime import FlowTarget, parse_version_segment
from noukai_server.runtime.runs import waiting_for_tools
from noukai_server.store import ApiKeyRecord, RunRecord

router = APIRouter(tags=["flows"])

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": ExecuteResult},
    400: {"model": ErrorEnvelope},
    401: {"model": ErrorEnvelope},
    403: {"model": ErrorEnvelope},
    404: {"model": ErrorEnvelope},
    502: {"model": ErrorEnvelope},
}


def inputs_from(body: ExecuteRequest) -> RunInputs:
    message = body.message
    if message is None and body.messages:
        # A conversation's last user turn is the current message (0.5.x `messages` input).
        turns = [m for m in body.messages if m.get("role") == "user"]
        content = turns[-1].get("content") if turns else None
        message = content if isinstance(content, str) else None
    return RunInputs(
        tools=body.tools,
        tool_choice=body.tool_choice,
        message=message,
        messages=body.messages,
        parameters=body.parameters,
        attachments=body.attachments,
        block_overrides=body.block_overrides,
        trace=body.trace,
    )


async def _execute(
    svc: Services,
    key: ApiKeyRecord,
    org: str,
    project: str,
    slug: str,
    version: str | None,
    body: ExecuteRequest,
    session_id: str | None,
    idempotency_key: str | None,
) -> Response:
    authorize(key, org, project)
    target = await svc.runs.resolve(org, project, slug, parse_version_segment(version))
    if body.execution_id is not None or body.tool_call_messages is not None:
        # A resume: the caller's tool results for a run paused at an agent step.
        subscription = svc.bus.subscribe(body.execution_id or "")
        try:
            run = await svc.runs.resume_tools(
                target,
                org=key.org_id,
                execution_id=body.execution_id,
                paused_step=body.paused_at_step,
                messages=body.tool_call_messages or [],
            )
        except BaseException:
            await subscription.aclose()
            raise
    else:
        inputs = inputs_from(body)
        svc.runs.check_inputs(target, inputs)
        run, subscription = await svc.runs.launch(
            target,
            inputs,
            trigger="execute",
            session_id=session_id,
            idempotency_key=idempotency_key,
        )
    waiter = asyncio.ensure_future(svc.runs.wait_settled(run.id, subscription))
    done, _ = await asyncio.wait({waiter}, timeout=svc.config.heartbeat_seconds)
    if done:
        return execute_answer(target, waiter.result())
    # A long run: commit to 200 now and keep the connection alive with whitespace (valid before
    # a JSON document), so proxies and client read timeouts never cut a healthy run. The final
    # body then reports failure as `status: failed`, since the status line is already sent.
    return StreamingResponse(
        _keepalive_json(waiter, target, svc.config.heartbeat_seconds),
        media_type="application/json",
    )


async def _keepalive_json(
    waiter: asyncio.Future[RunRecord], target: FlowTarget, interval: float
) -> AsyncIterator[bytes]:
    try:
        while True:
            done, _ = await asyncio.wait({waiter}, timeout=interval)
            if done:
                break
            yield b" "
        run = waiter.result()
        if waiting_for_tools(run):
            yield orjson.dumps(paused_result(target, run))
            return
        body: dict[str, Any] = {
            "status": "completed" if run.status == "completed" else "failed",
            "result": run.result,
            "executionId": run.id,
            "flowId": target.flow.id,
            "blockCount": len(target.spec.steps),
        }
        if run.status != "completed":
            body["error"] = run.error or {"code": ErrorCode.RUN_CANCELLED, "message": "cancelled"}
        yield orjson.dumps(body)
    finally:
        waiter.cancel()


def paused_result(target: FlowTarget, run: RunRecord) -> dict[str, Any]:
    """The contract's `PausedResult`: what the caller needs to run its tools and resume."""
    agent = run.state["agent"]
    pause = agent["pause"]
    return {
        "status": "tool_calls_required",
        "executionId": run.id,
        "pausedAtStep": agent["stepId"],
        "iterationsUsed": pause["iterations"],
        "toolCallMessages": pause["messages"],
        "toolCalls": pause["pending"],
        "accumulatedOutputs": run.state.get("outputs") or {},
        "flowId": target.flow.id,
        "blockCount": len(target.spec.steps),
    }


def execute_answer(target: FlowTarget, run: RunRecord) -> Response:
    """A completed run answers 200 with its result; a failed or cancelled one answers with the
    error status of its code, so SDK callers get an exception with `.code` to branch on."""
    if waiting_for_tools(run):
        return json_response(paused_result(target, run))
    if run.status == "completed":
        return json_response(
            {
                "status": "completed",
                "result": run.result,
                "executionId": run.id,
                "flowId": target.flow.id,
                "blockCount": len(target.spec.steps),
            }
        )
    error = run.error if isinstance(run.error, dict) else {}
    raw_code = error.get("code")
    if run.status == "cancelled":
        code = ErrorCode.RUN_CANCELLED
    elif isinstance(raw_code, str) and raw_code in ErrorCode._value2member_map_:
        code = ErrorCode(raw_code)
    else:
        code = ErrorCode.INTERNAL_ERROR
    message = error.get("message") or f"run {run.id} ended as {run.status}"
    details: dict[str, Any] = {"executionId": run.id}
    if error.get("stepId"):
        details["stepId"] = error["stepId"]
    raise ApiError(code, message, **details)


SessionHeader = Annotated[str | None, Header(alias="X-Session-Id")]
IdempotencyHeader = Annotated[str | None, Header(alias="Idempotency-Key")]


@router.post(
    "/seq/{org}/{project}/{slug}/execute",
    responses=_RESPONSES,
    openapi_extra=openapi_body(ExecuteRequest),
)
async def execute(
    org: str,
    project: str,
    slug: str,
    request: Request,
    svc: Annotated[Services, Depends(services)],
    key: Annotated[ApiKeyRecord, Depends(api_key)],
    x_session_id: SessionHeader = None,
    idempotency_key: IdempotencyHeader = None,
) -> Response:
    """Run the flow's production version (its latest published one, else its draft)."""
    body = await read_model(request, ExecuteRequest)
    return await _execute(svc, key, org, project, slug, None, body, x_session_id, idempotency_key)


@router.post(
    "/seq/{org}/{project}/{slug}/{version}/execute",
    responses=_RESPONSES,
    openapi_extra=openapi_body(ExecuteRequest),
)
async def execute_version(
    org: str,
    project: str,
    slug: str,
    version: str,
    request: Request,
    svc: Annotated[Services, Depends(services)],
    key: Annotated[ApiKeyRecord, Depends(api_key)],
    x_session_id: SessionHeader = None,
    idempotency_key: IdempotencyHeader = None,
) -> Response:
    """Run one version: `v0` is the draft, `vN` published version N."""
    body = await read_model(request, ExecuteRequest)
    return await _execute(svc, key, org, project, slug, version, body, x_session_id, idempotency_key)
