"""How a run's log begins and ends, written once for the runs a worker claims and for the child
runs their `flow` steps start (`runtime/worker.py`, `runtime/child_runs.py`): the `run_started`
payload, `run_failed` and `run_cancelled` with the row's end, and an unexpected failure recorded
with a fresh writer. What only one of them does (the worker's metrics and log lines, the child's
shielding) stays with it."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from noukai.types import events as ev
from noukai.types.errors import ErrorCode
from noukai.types.events import (
    FlowCompletedFields,
    RunCancelledFields,
    RunErrorDetail,
    RunFailedFields,
    RunStartedFields,
)
from noukai_server.bus import Bus
from noukai_server.engine import RunState
from noukai_server.eventlog.writer import RunLogWriter
from noukai_server.providers.pricing import format_cost
from noukai_server.store import RunRecord, RunUpdate, Store
from noukai_server.telemetry import tracing

logger = logging.getLogger("noukai.run_endings")


def run_started(run: RunRecord, step_count: int) -> RunStartedFields:
    return {
        "runId": run.id,
        "executionId": run.id,
        "flowId": run.flow_id,
        "stepCount": step_count,
        "flowVersion": run.flow_version,
        "triggerType": run.trigger_type,
    }


async def write_completed(
    run: RunRecord, writer: RunLogWriter, result: Any, state: RunState, step_count: int
) -> None:
    """`flow_completed`, with the run's totals, and the row's end in one write."""
    completed: FlowCompletedFields = {
        "runId": run.id,
        "executionId": run.id,
        "result": result,
        "summary": {
            "stepCount": step_count,
            "skipped": list(state.skipped),
            "tokens": {
                "prompt": state.prompt_tokens,
                "completion": state.completion_tokens,
                "total": state.prompt_tokens + state.completion_tokens,
            },
            "costUsd": format_cost(state.cost_usd),
        },
    }
    update = RunUpdate(status="completed", result=result, state=state.to_json())
    await writer.emit_with_update(ev.FLOW_COMPLETED, completed, update)
    tracing.end_run(run, "completed")


async def write_failed(
    run: RunRecord, writer: RunLogWriter, error: RunErrorDetail, state: RunState | None = None
) -> None:
    """`run_failed` and the row's end in one write (the run's state too, when given)."""
    update = RunUpdate(status="failed", error=error)
    if state is not None:
        update = RunUpdate(status="failed", error=error, state=state.to_json())
    failed: RunFailedFields = {"runId": run.id, "executionId": run.id, "error": error}
    await writer.emit_with_update(ev.RUN_FAILED, failed, update)
    tracing.end_run(run, "failed", error["code"], error["message"])


async def write_cancelled(run: RunRecord, writer: RunLogWriter) -> None:
    """`run_cancelled` and the row's end in one write."""
    cancelled: RunCancelledFields = {"runId": run.id, "executionId": run.id}
    await writer.emit_with_update(ev.RUN_CANCELLED, cancelled, RunUpdate(status="cancelled"))
    tracing.end_run(run, "cancelled", ErrorCode.RUN_CANCELLED.value, "the run was cancelled")


async def record_internal_error(
    store: Store,
    bus: Bus,
    run: RunRecord,
    writer: RunLogWriter,
    fail: Callable[[RunLogWriter, RunErrorDetail, RunRecord], Awaitable[None]],
) -> None:
    """Record an unexpected failure of `run` with `fail(fresh writer, error, stored run)`. The
    run's writer may be out of step with the store (its last write is what failed), so a fresh
    one continues from what the store holds, once the writer's background write (still in flight
    when the engine raised) has ended. Nothing is written for a run that already ended or that
    another attempt holds now; a failure to record is logged, never raised."""
    error: RunErrorDetail = {
        "code": ErrorCode.INTERNAL_ERROR.value,
        "message": "the run failed inside the server",
    }
    try:
        await writer.settle()
        current = await store.get_run(run.id)
        if current is None or current.terminal or current.attempt != run.attempt:
            return
        fresh = RunLogWriter(store, bus, run.id, run.attempt, current.last_seq)
        await fail(fresh, error, current)
    except Exception:
        logger.exception("run %s: could not record the internal error", run.id)
