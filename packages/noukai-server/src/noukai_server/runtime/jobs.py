"""Queue-backed jobs: a job is an ordinary run on the lease queue (trigger `job`); only the answer
differs from `/execute`. Jobs resolve by execution id alone, never by version segment."""

from __future__ import annotations

from typing import Any

from noukai.types.errors import ErrorCode
from noukai.types.wire import ExecuteRequest
from noukai_server.runtime.errors import RequestRejected
from noukai_server.runtime.execute import inputs_from
from noukai_server.runtime.runs import FlowTarget, RunService
from noukai_server.store import RunRecord

# The published SDK validates the job status strictly: only these four values are accepted.
_JOB_STATUS = {
    "queued": "pending",
    "running": "running",
    "waiting": "running",
    "completed": "completed",
    "failed": "failed",
    "cancelled": "failed",
}


def job_status(run: RunRecord) -> dict[str, Any]:
    """The answer to a job poll."""
    error: str | None = None
    if run.status == "cancelled":
        error = f"{ErrorCode.RUN_CANCELLED}: the run was cancelled"
    elif run.status == "failed":
        detail = run.error if isinstance(run.error, dict) else {}
        error = f"{detail.get('code', ErrorCode.INTERNAL_ERROR)}: {detail.get('message', 'failed')}"
    return {
        "executionId": run.id,
        "status": _JOB_STATUS[run.status],
        "result": run.result if run.status == "completed" else None,
        "error": error,
    }


async def submit_job(
    runs: RunService,
    target: FlowTarget,
    body: ExecuteRequest,
    *,
    session_id: str | None,
    idempotency_key: str | None,
    api_key_id: str | None = None,
    traceparent: str | None = None,
) -> dict[str, Any]:
    """Queue a run of `target`; the answer (sent with 202) names the run to poll."""
    if body.tools:
        raise RequestRejected(
            ErrorCode.TOOLS_REQUIRE_SYNC_EXECUTE,
            "client-side tools need /execute or /step; jobs cannot pause for tool results",
        )
    inputs = inputs_from(body)
    runs.check_inputs(target, inputs)
    run = await runs.start(
        target,
        inputs,
        trigger="job",
        session_id=session_id,
        idempotency_key=idempotency_key,
        thread_id=body.thread_id,
        multitask=body.multitask,
        api_key_id=api_key_id,
        metadata=body.metadata,
        traceparent=traceparent,
    )
    return {
        "executionId": run.id,
        "status": _JOB_STATUS[run.status],
        "flowId": target.flow.id,
        "blockCount": len(target.spec.steps),
    }


async def poll_job(runs: RunService, execution_id: str, *, org: str, project: str | None) -> dict[str, Any]:
    """A job's state: pending, running, completed (with its result) or failed (with its error)."""
    return job_status(await runs.get_run(execution_id, org=org, project=project))
