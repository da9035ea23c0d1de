"""Synchronous execution (`/execute`): start or resume a run, wait for it and build the answer.

A run that settles within the heartbeat answers at once; a longer one commits to 200 and keeps
the connection alive with whitespace (valid before a JSON document) until its final body.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from noukai.types.errors import ErrorCode
from noukai.types.wire import ExecuteRequest
from noukai_server.bus import Bus
from noukai_server.engine import RunInputs
from noukai_server.engine.state import paused_agent
from noukai_server.runtime.errors import RequestRejected
from noukai_server.runtime.runs import FlowTarget, RunService, waiting_for_tools
from noukai_server.store import RunRecord


def inputs_from(body: ExecuteRequest) -> RunInputs:
    """The run inputs of an `/execute` or `/jobs` request body."""
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


@dataclass(frozen=True, slots=True)
class ExecuteAnswer:
    """Exactly one is set: `body`, a 200 JSON answer, or `stream`, the bytes of a 200 JSON answer
    preceded by whitespace keep-alives."""

    body: dict[str, Any] | None = None
    stream: AsyncIterator[bytes] | None = None


async def execute(
    runs: RunService,
    bus: Bus,
    target: FlowTarget,
    body: ExecuteRequest,
    *,
    org_id: str,
    api_key_id: str | None = None,
    session_id: str | None,
    idempotency_key: str | None,
    heartbeat_seconds: float,
    traceparent: str | None = None,
) -> ExecuteAnswer:
    """Start (or resume, within the caller's `org_id`) a run of `target` and wait up to
    `heartbeat_seconds` for it. A run that ended badly within that time raises `RequestRejected`
    with its error code."""
    if body.execution_id is not None or body.tool_call_messages is not None:
        # A resume: the caller's tool results for a run paused at an agent step.
        subscription = bus.subscribe(body.execution_id or "")
        try:
            run = await runs.resume_tools(
                target,
                org=org_id,
                execution_id=body.execution_id,
                paused_step=body.paused_at_step,
                messages=body.tool_call_messages or [],
            )
        except BaseException:
            await subscription.aclose()
            raise
    else:
        inputs = inputs_from(body)
        runs.check_inputs(target, inputs)
        run, subscription = await runs.launch(
            target,
            inputs,
            trigger="execute",
            session_id=session_id,
            idempotency_key=idempotency_key,
            thread_id=body.thread_id,
            multitask=body.multitask,
            api_key_id=api_key_id,
            metadata=body.metadata,
            traceparent=traceparent,
        )
    waiter = asyncio.ensure_future(runs.wait_settled(run.id, subscription))
    done, _ = await asyncio.wait({waiter}, timeout=heartbeat_seconds)
    if done:
        return ExecuteAnswer(body=settled_answer(target, waiter.result()))
    # A long run: commit to 200 now and keep the connection alive with whitespace, so proxies and
    # client read timeouts never cut a healthy run. The final body then reports failure as
    # `status: failed`, since the status line is already sent.
    return ExecuteAnswer(stream=_keepalive_json(waiter, target, heartbeat_seconds))


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
    agent = paused_agent(run.state)
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


def settled_answer(target: FlowTarget, run: RunRecord) -> dict[str, Any]:
    """A completed (or paused) run's 200 body; a failed or cancelled run raises `RequestRejected`
    with its code, so SDK callers get an exception with `.code` to branch on."""
    if waiting_for_tools(run):
        return paused_result(target, run)
    if run.status == "completed":
        return {
            "status": "completed",
            "result": run.result,
            "executionId": run.id,
            "flowId": target.flow.id,
            "blockCount": len(target.spec.steps),
        }
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
    raise RequestRejected(code, message, **details)
