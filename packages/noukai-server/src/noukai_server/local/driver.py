"""One in-process run on the engine's loop: the run-level events around the engine's step events,
as the server's worker writes them (`runtime/worker.py`), and the waits for client tool results.

A run ends in one of four ways, each recorded as the last event of its log: `flow_completed`,
`run_failed`, `run_cancelled` (a stop), or `step_paused_for_tool_calls` left unanswered.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal

from noukai.types import events as ev
from noukai.types.errors import ErrorCode
from noukai.types.events import (
    FlowCompletedSummary,
    RunErrorDetail,
    RunStartedFields,
    StepPausedForToolCallsFields,
)
from noukai_server.engine import Completed, Failed, PausedForTools, RunInputs, RunState
from noukai_server.engine.state import ToolResult
from noukai_server.flows import FlowSpec
from noukai_server.local.assembly import EngineParts
from noukai_server.local.log import LogEntry, MemoryRunLog
from noukai_server.providers.pricing import format_cost

logger = logging.getLogger("noukai.local")

RunStatus = Literal["running", "completed", "failed", "cancelled", "waiting"]

END: Final = None
"""What a run's inbox receives after its last event."""

_STATUS_OF_LAST: Final[dict[str, RunStatus]] = {
    ev.FLOW_COMPLETED: "completed",
    ev.RUN_FAILED: "failed",
    ev.RUN_CANCELLED: "cancelled",
    ev.STEP_PAUSED_FOR_TOOL_CALLS: "waiting",
}


@dataclass(eq=False)
class LocalRun:
    """A run's engine-side record. `deliver` gets each log entry, then `END`, on the engine's
    thread; it must hand them on without blocking (a thread-safe queue)."""

    run_id: str
    spec: FlowSpec
    inputs: RunInputs
    trigger: str
    deliver: Callable[[LogEntry | None], None]
    log: MemoryRunLog = field(init=False)
    task: asyncio.Task[None] | None = None
    ended: threading.Event = field(default_factory=threading.Event)
    """Set once the run's last event was delivered (what `stop` waits for, from any thread)."""
    _answers: list[list[ToolResult] | None] = field(default_factory=list, init=False)
    _waiter: asyncio.Future[None] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.log = MemoryRunLog(self.deliver)

    @property
    def status(self) -> RunStatus:
        last = self.log.last_type
        return "running" if last is None else _STATUS_OF_LAST.get(last, "running")

    def answer(self, results: list[ToolResult] | None) -> None:
        """On the engine's loop: the caller's results for the pending calls (None: no answer)."""
        self._answers.append(results)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def next_answer(self) -> list[ToolResult] | None:
        while not self._answers:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self._answers.pop(0)


def start(parts: EngineParts, run: LocalRun) -> None:
    """On the engine's loop: start the run's task. Its done callback writes the end of a run that
    was stopped or broke, so the log always ends with a terminal event and the inbox gets `END`."""
    run.task = asyncio.get_running_loop().create_task(_drive(parts, run), name=f"local-run-{run.run_id}")
    run.task.add_done_callback(lambda task: _finish(run, task))


def stop(run: LocalRun) -> None:
    """On the engine's loop: stop the run wherever it is (mid-step included), as a cancel does on
    the server: an in-flight model stream is closed, a sync function's thread is abandoned."""
    if run.task is not None and not run.task.done():
        run.task.cancel()


async def _drive(parts: EngineParts, run: LocalRun) -> None:
    run.log.append(ev.RUN_STARTED, _started(run))
    # The run's deadline covers all of it, waits for tool results included, as on the server.
    seconds = parts.run_seconds(run.spec)
    limit = asyncio.timeout(seconds)
    try:
        async with limit:
            await _steps(parts, run)
    except TimeoutError:
        if not limit.expired():  # a TimeoutError of a step's own making is not the deadline
            raise
        message = f"run {run.run_id} passed its deadline ({seconds:g} s) and was stopped"
        _fail(run, {"code": ErrorCode.RUN_TIMEOUT.value, "message": message})


async def _steps(parts: EngineParts, run: LocalRun) -> None:
    spec, log = run.spec, run.log
    state = RunState()
    start_index, attempt = 0, 1
    while True:
        outcome = await parts.engine.run(
            spec,
            run.inputs,
            state,
            log,
            run={"id": run.run_id, "flow": spec.slug, "version": 0},
            start_index=start_index,
            attempt=attempt,
        )
        if isinstance(outcome, Completed):
            log.append(
                ev.FLOW_COMPLETED,
                {
                    "runId": run.run_id,
                    "executionId": run.run_id,
                    "result": outcome.result,
                    "summary": _summary(state, len(spec.steps)),
                },
            )
            return
        if isinstance(outcome, Failed):
            _fail(run, {"code": outcome.code, "message": outcome.message, "stepId": outcome.step_id})
            return
        if not isinstance(outcome, PausedForTools):  # only a worker asks for step pauses or hand-backs
            raise RuntimeError(f"unexpected engine outcome {outcome!r}")
        pause = outcome.pause
        waiting: StepPausedForToolCallsFields = {
            "runId": run.run_id,
            "executionId": run.run_id,
            "stepId": outcome.step_id,
            "stepIndex": outcome.step_index,
            "attempt": outcome.attempt,
            "iterationsUsed": pause["iterations"],
            "toolCallMessages": pause["messages"],
            "toolCalls": pause["pending"],
            "accumulatedOutputs": state.outputs,
        }
        log.append(ev.STEP_PAUSED_FOR_TOOL_CALLS, waiting)
        results = await run.next_answer()
        if results is None or state.agent is None:
            return  # nobody answers: the run ends waiting, as an unanswered run on the server
        # As the server resumes a paused agent step: the same attempt continues with the results.
        state.agent = {**state.agent, "results": results}
        start_index, attempt = outcome.step_index, outcome.attempt


def _started(run: LocalRun) -> RunStartedFields:
    # `flowId` is the slug (an in-process flow has no stored id) and `flowVersion` 0 (the draft).
    return {
        "runId": run.run_id,
        "executionId": run.run_id,
        "flowId": run.spec.slug,
        "stepCount": len(run.spec.steps),
        "flowVersion": 0,
        "triggerType": run.trigger,
    }


def _fail(run: LocalRun, error: RunErrorDetail) -> None:
    run.log.append(ev.RUN_FAILED, {"runId": run.run_id, "executionId": run.run_id, "error": error})


def _finish(run: LocalRun, task: asyncio.Task[None]) -> None:
    try:
        if task.cancelled():
            if run.log.last_type is None:  # stopped before its task began: still a whole log
                run.log.append(ev.RUN_STARTED, _started(run))
            run.log.append(ev.RUN_CANCELLED, {"runId": run.run_id, "executionId": run.run_id})
        elif (error := task.exception()) is not None:
            logger.error("run %s failed inside the engine", run.run_id, exc_info=error)
            message = f"the run failed inside the engine: {type(error).__name__}: {error}"
            _fail(run, {"code": ErrorCode.INTERNAL_ERROR.value, "message": message})
    finally:
        try:
            run.deliver(END)
        finally:
            run.ended.set()


def _summary(state: RunState, step_count: int) -> FlowCompletedSummary:
    return {
        "stepCount": step_count,
        "skipped": list(state.skipped),
        "tokens": {
            "prompt": state.prompt_tokens,
            "completion": state.completion_tokens,
            "total": state.prompt_tokens + state.completion_tokens,
        },
        "costUsd": format_cost(state.cost_usd),
    }
