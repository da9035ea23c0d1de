"""Workers claim runs from the lease queue and drive the engine.

A worker holds a lease per run and renews it while the run executes; if renewal fails (the lease
expired and someone else claimed the run) the run's task is cancelled at once, and the attempt
number fences off any write it might still try. A run the API asked to cancel is stopped at the
next await point, which closes an in-flight model stream instead of waiting for it.

Claims are fair across tenants when the worker has `org_caps`: the oldest claimable run of an org
that holds fewer live leases than its cap (counted in the claim query, on this worker or across the
deployment: see `store.OrgCaps`).

`drain(grace)` is the clean way out (SIGTERM on `noukai worker`): stop claiming, let each run go on
to the end of its current step (its checkpoint stored), hand it back there, and after `grace`
seconds cut off whatever is still inside a step; every run it held is handed back to the queue at
once (`Store.release_leases`) rather than when its lease expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Coroutine, Mapping
from datetime import UTC, datetime
from typing import Any, Final, cast

from noukai.types import events as ev
from noukai.types.errors import ErrorCode
from noukai.types.events import (
    EventFields,
    RunErrorDetail,
    StepPausedFields,
    StepPausedForToolCallsFields,
)
from noukai_server.bus import Bus
from noukai_server.engine import (
    Completed,
    Failed,
    FlowEngine,
    PausedBetweenSteps,
    PausedForTools,
    RunInputs,
    RunState,
    Yielded,
)
from noukai_server.engine.state import awaits_tool_results
from noukai_server.engine.subflow import use_host
from noukai_server.eventlog.writer import RunLogWriter
from noukai_server.flows import FlowSpec, FlowValidationError, OverrideError, apply_block_overrides
from noukai_server.logs import run_id_var
from noukai_server.runtime.attempts import FIRST_ATTEMPT, ResumePoint, logged_resume_point
from noukai_server.runtime.child_runs import ChildRuns
from noukai_server.runtime.flow_cache import FlowCache
from noukai_server.runtime.run_endings import (
    record_internal_error,
    run_started,
    write_cancelled,
    write_completed,
    write_failed,
)
from noukai_server.store import LeaseLost, OrgCaps, RunRecord, RunUpdate, Store
from noukai_server.telemetry import metrics, tracing

logger = logging.getLogger("noukai.worker")


class Worker:
    def __init__(
        self,
        store: Store,
        bus: Bus,
        engine: FlowEngine,
        flows: FlowCache,
        *,
        concurrency: int = 32,
        lease_seconds: float = 30.0,
        poll_interval: float = 1.0,
        worker_id: str | None = None,
        org_caps: OrgCaps | None = None,
        cancel_poll_seconds: float | None = None,
    ) -> None:
        self._store = store
        self._bus = bus
        self._engine = engine
        self._flows = flows
        self._concurrency = concurrency
        self._lease_seconds = lease_seconds
        self._poll_interval = poll_interval
        self._org_caps = org_caps
        # Renewed three times per lease, so two renewals can fail before it expires.
        self._renew_interval = lease_seconds / 3
        self._cancel_poll_seconds = cancel_poll_seconds
        """Ask the store this often for cancels of the runs held here: for a process whose bus does
        not carry the API's cancel notices (no Redis). None: the bus does."""
        self._cancel_poll: asyncio.Task[None] | None = None
        self.worker_id = worker_id or f"worker-{uuid.uuid4().hex[:12]}"
        self._active: dict[str, asyncio.Task[None]] = {}
        self._bodies: dict[str, tuple[asyncio.Task[None], list[str]]] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._draining = False
        """Runs stop at their next step boundary and are handed back (`drain`)."""
        self._org_running: dict[str, int] = {}
        """Runs of each org this worker runs or holds a slot for (the hand-off's cap check)."""
        self._key_running: dict[str, int] = {}
        """The same per API key (runs started without a key are not counted)."""
        self._reserved = 0
        """Slots held for runs the API is creating already leased to this worker (`reserve`)."""
        self._handed_back: list[str] = []
        self._hurry = asyncio.Event()

    async def start(self) -> None:
        self._bus.on_cancel(self._cancel_now)
        metrics.worker_slots(0, self._concurrency)
        self._loop_task = asyncio.create_task(self._claim_loop(), name=f"{self.worker_id}-claims")
        if self._cancel_poll_seconds is not None:
            self._cancel_poll = asyncio.create_task(self._poll_cancels(self._cancel_poll_seconds))

    async def _poll_cancels(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            if not self._bodies:
                continue
            try:
                for run_id in await self._store.cancels_for(self.worker_id):
                    self._cancel_now(run_id)
            except Exception:
                logger.exception("%s: polling for cancels failed; retrying", self.worker_id)

    async def stop(self) -> None:
        """Stop claiming and abandon running runs; their leases expire and another worker (or this
        one after a restart) picks them up again from their last checkpoint."""
        self._stopping = True
        tasks = [t for t in (self._loop_task, self._cancel_poll, *self._active.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def hurry(self) -> None:
        """End a `drain`'s grace period now: the runs still inside a step are handed back."""
        self._hurry.set()

    async def drain(self, grace_seconds: float) -> list[str]:
        """Stop claiming; let every run finish the step it is in (up to `grace_seconds`) and hand
        it back at that step boundary; then cut off the runs still inside a step and hand them
        back too (their step runs again elsewhere as the next attempt). Returns the ids of the
        runs handed back. A run that is waiting (paused, or for tool results) is held by no worker,
        so there is nothing to hand back for it."""
        self._stopping = self._draining = True
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        running = set(self._active.values())
        if running:
            all_done = asyncio.create_task(asyncio.wait(running))
            hurry = asyncio.create_task(self._hurry.wait())
            await asyncio.wait({all_done, hurry}, timeout=grace_seconds, return_when=asyncio.FIRST_COMPLETED)
            for waiter in (all_done, hurry):
                waiter.cancel()
            late = {task for task in running if not task.done()}
            if late:
                logger.warning(
                    "%s: %d run(s) still inside a step after %.1f s: handing them back now",
                    self.worker_id,
                    len(late),
                    grace_seconds,
                )
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._cancel_poll is not None:
            self._cancel_poll.cancel()
            await asyncio.gather(self._cancel_poll, return_exceptions=True)
        # Whatever this worker still holds: the runs cut off above (and any whose hand-back failed).
        released = await self._store.release_leases(self.worker_id)
        if released:
            await self._bus.announce_work()
        return sorted({*self._handed_back, *released})

    async def _claim_loop(self) -> None:
        while not self._stopping:
            try:
                claimed = False
                while self._has_room():
                    run = await self._store.claim_next_run(
                        self.worker_id, self._lease_seconds, self._org_caps
                    )
                    if run is None:
                        break
                    claimed = True
                    self._run(run)
                if not claimed:
                    await self._bus.wait_for_work(self._poll_interval)
                elif not self._has_room():
                    await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("claiming runs failed; retrying")
                await asyncio.sleep(self._poll_interval)

    @property
    def lease_seconds(self) -> float:
        return self._lease_seconds

    @property
    def busy_slots(self) -> int:
        """Slots held now: runs in progress (their tail after the final status included) and
        hand-off reservations not yet adopted or released."""
        return len(self._active) + self._reserved

    def reserve(self, org: str, key_id: str | None = None) -> bool:
        """Hold a slot for a run of `org` (started with `key_id`) about to be created already
        leased to this worker (the API's direct hand-off: no trip through the queue and no claim);
        False when full, stopping, or when `org` or the key already has its cap of runs here (the
        run then goes through the queue, whose claim applies the deployment-wide caps). Every True
        is followed by exactly one `adopt` or `release` for the same org and key."""
        if self._stopping or not self._has_room():
            return False
        caps = self._org_caps
        cap = None if caps is None else caps.cap(org)
        if cap is not None and self._org_running.get(org, 0) >= cap:
            return False
        key_cap = None if caps is None else caps.key_cap(key_id)
        if key_cap is not None and key_id is not None and self._key_running.get(key_id, 0) >= key_cap:
            return False
        self._reserved += 1
        self._count(org, key_id, +1)
        return True

    def release(self, org: str, key_id: str | None = None) -> None:
        self._reserved -= 1
        self._count(org, key_id, -1)

    def adopt(self, run: RunRecord) -> None:
        """Start a reserved run that was created leased to this worker."""
        self.release(run.org_id, run.api_key_id)
        if self._stopping:
            return  # its lease expires and the queue hands it out again
        self._run(run)

    def _count(self, org: str, key_id: str | None, delta: int) -> None:
        metrics.worker_slots(self.busy_slots, self._concurrency)
        _add(self._org_running, org, delta)
        if key_id is not None:
            _add(self._key_running, key_id, delta)

    def _has_room(self) -> bool:
        return self.busy_slots < self._concurrency

    def _run(self, run: RunRecord) -> None:
        task = asyncio.create_task(self._process(run), name=f"run-{run.id}")
        self._active[run.id] = task
        self._count(run.org_id, run.api_key_id, +1)
        task.add_done_callback(lambda done: self._forget(run))

    def _cancel_now(self, run_id: str) -> None:
        """The API asked to cancel a run: if this worker runs it, stop it at once."""
        entry = self._bodies.get(run_id)
        if entry is not None and not entry[0].done():
            entry[1].append("cancel")
            entry[0].cancel()

    def hold(self, run_id: str, task: asyncio.Task[Any], reasons: list[str]) -> None:
        """A child run executing inline in one of this worker's runs: cancels reach it too."""
        self._bodies[run_id] = (task, reasons)

    def let_go(self, run_id: str) -> None:
        self._bodies.pop(run_id, None)

    def stop_reason(self, run_id: str) -> str | None:
        """Why the task of `run_id` (a run, or a child held here) is being stopped: "stopping"
        (this worker is), "cancel", "lost" (its lease), or None."""
        if self._stopping:
            return "stopping"
        entry = self._bodies.get(run_id)
        return entry[1][0] if entry is not None and entry[1] else None

    def _forget(self, run: RunRecord) -> None:
        self._active.pop(run.id, None)
        self._count(run.org_id, run.api_key_id, -1)

    async def _process(self, run: RunRecord) -> None:
        run_id_var.set(run.id)  # this task's own context: every line of the run carries its id
        tracing.bind_run(run)  # and its trace id; its spans are children of its workflow span
        children = ChildRuns(self._store, self._bus, self._engine, self._flows, self, run)
        use_host(children)  # `flow` steps
        logger.info(
            "run %s started (flow %s, attempt %s)",
            run.id,
            run.flow_id,
            run.attempt,
            extra={"flow": run.flow_id},
        )
        writer = _LoggedWriter(self._store, self._bus, run.id, run.attempt, run.last_seq)
        if run.cancel_requested:  # cancelled while it was being handed from one worker to another
            await self._finish_cancelled(run, writer)
            return
        if seconds_left(run.deadline_at) == 0:  # queued (or re-claimed) past its deadline: never runs
            with contextlib.suppress(LeaseLost):
                await self._fail(run, writer, run_timeout_error(run))
            return
        body = asyncio.create_task(self._drive(run, writer, children))
        stop_reason: list[str] = []
        self._bodies[run.id] = (body, stop_reason)
        keeper = asyncio.create_task(self._keep_lease(run, body, stop_reason))
        try:
            await asyncio.wait({body})
        except asyncio.CancelledError:  # the worker is stopping: abandon the run, keep its lease
            for task in (body, keeper):
                task.cancel()
            await asyncio.gather(body, keeper, return_exceptions=True)
            raise
        finally:
            self._bodies.pop(run.id, None)
        keeper.cancel()
        if body.cancelled():
            if stop_reason and stop_reason[0] == "cancel":
                await self._finish_cancelled(run, writer)
            return
        error = body.exception()
        if isinstance(error, LeaseLost):
            logger.warning("run %s: lease lost at attempt %s; dropped", run.id, run.attempt)
        elif error is not None:
            logger.error("run %s failed inside the worker", run.id, exc_info=error)
            await self._finish_internal_error(run, writer)

    async def _keep_lease(self, run: RunRecord, body: asyncio.Task[None], stop_reason: list[str]) -> None:
        interval = self._renew_interval
        while not body.done():
            await asyncio.sleep(interval)
            state = await self._store.extend_lease(run.id, run.attempt, self.worker_id, self._lease_seconds)
            if not state.held or state.cancel_requested:
                if not state.held:
                    metrics.lease_lost()
                stop_reason.append("cancel" if state.held else "lost")
                body.cancel()
                return

    async def _drive(self, run: RunRecord, writer: RunLogWriter, children: ChildRuns) -> None:
        if run.last_seq == 0:
            await metrics.run_started(run.flow_id, run.created_at, self._store.get_flow_by_id)
            await writer.emit(ev.RUN_STARTED, run_started(run, len(run.document.get("steps") or [])))
        inputs = RunInputs.from_json(run.input)
        try:
            spec = self._flows.get((run.flow_id, run.flow_version, run.flow_revision), run.document)
            if inputs.block_overrides:
                spec = apply_block_overrides(spec, inputs.block_overrides)
        except (FlowValidationError, OverrideError) as exc:
            code = getattr(exc, "code", ErrorCode.INVALID_TREE)
            await self._fail(run, writer, {"code": str(code), "message": str(exc)})
            return
        state = RunState.from_json(run.state)
        resume = await self._resume_point(run, spec, state)
        if resume.interrupted:  # its last worker was lost mid-step
            metrics.run_reclaimed()
            children.resumes(run.cursor, resume.attempt)  # the lost attempt's children are its own
        # The run's deadline stops it wherever it is, mid-step included (the step's attempt is
        # cancelled like a cancel would; the writer's batches are shielded, so the log stays whole).
        left = seconds_left(run.deadline_at)
        deadline = asyncio.timeout(left)
        try:
            async with deadline:
                outcome = await self._engine.run(
                    spec,
                    inputs,
                    state,
                    writer,
                    run={"id": run.id, "flow": spec.slug, "version": run.flow_version},
                    start_index=run.cursor,
                    pause_after=run.pause_after,
                    attempt=resume.attempt,
                    interrupted=resume.interrupted,
                    stop_between_steps=self._is_draining,
                )
        except TimeoutError:
            if not deadline.expired():
                raise
            await self._fail(run, writer, run_timeout_error(run), state)
            return
        if isinstance(outcome, Completed):
            await write_completed(run, writer, outcome.result, state, len(spec.steps))
            await metrics.run_finished(run.flow_id, "completed", self._store.get_flow_by_id)
            logger.info("run %s completed", run.id, extra={"status": "completed"})
        elif isinstance(outcome, PausedBetweenSteps):
            paused: StepPausedFields = {
                "runId": run.id,
                "executionId": run.id,
                "stepId": outcome.completed_step_id,
                "stepIndex": outcome.completed_index,
                "nextStepIndex": outcome.next_index,
            }
            await writer.emit_with_update(
                ev.STEP_PAUSED,
                paused,
                RunUpdate(status="waiting", cursor=outcome.next_index, pause_after=None),
            )
            logger.info(
                "run %s paused after step %s", run.id, outcome.completed_step_id, extra={"status": "waiting"}
            )
        elif isinstance(outcome, PausedForTools):
            pause = outcome.pause
            waiting: StepPausedForToolCallsFields = {
                "runId": run.id,
                "executionId": run.id,
                "stepId": outcome.step_id,
                "stepIndex": outcome.step_index,
                "attempt": outcome.attempt,
                "iterationsUsed": pause["iterations"],
                "toolCallMessages": pause["messages"],
                "toolCalls": pause["pending"],
                "accumulatedOutputs": state.outputs,
            }
            await writer.emit_with_update(
                ev.STEP_PAUSED_FOR_TOOL_CALLS,
                waiting,
                RunUpdate(status="waiting", cursor=outcome.step_index, state=state.to_json()),
            )
            logger.info("run %s waiting for tool results", run.id, extra={"status": "waiting"})
        elif isinstance(outcome, Failed):
            error: RunErrorDetail = {
                "code": outcome.code,
                "message": outcome.message,
                "stepId": outcome.step_id,
            }
            await self._fail(run, writer, error, state)
        elif isinstance(outcome, Yielded):
            await self._hand_back(run, writer, outcome.next_index)

    def _is_draining(self) -> bool:
        return self._draining

    async def _hand_back(self, run: RunRecord, writer: RunLogWriter, next_index: int) -> None:
        """The run stopped at a step boundary because this worker is draining: its checkpoint is
        stored, so give the lease back now and any worker continues at `next_index`."""
        await writer.settle()
        if await self._store.release_leases(self.worker_id, [run.id]):
            self._handed_back.append(run.id)
            await self._bus.announce_work()
            logger.info("run %s handed back at step %d (worker draining)", run.id, next_index)

    async def _resume_point(self, run: RunRecord, spec: FlowSpec, state: RunState) -> ResumePoint:
        """The attempt the step at the cursor runs as: a step that already started in this run
        (its worker was lost, or a retry was pending) runs again as its next attempt; an agent step
        that paused for client tools continues the same attempt."""
        if run.last_seq == 0 or run.cursor >= len(spec.steps):
            return FIRST_ATTEMPT
        agent = state.agent
        if agent is not None and agent["stepIndex"] == run.cursor:
            if not awaits_tool_results(agent):
                return ResumePoint(agent["attempt"], False)
            state.agent = None  # a pause nobody answered cannot resume: the step starts over
        return await logged_resume_point(self._store, run.id, spec.steps[run.cursor].id)

    async def _fail(
        self,
        run: RunRecord,
        writer: RunLogWriter,
        error: RunErrorDetail,
        state: RunState | None = None,
    ) -> None:
        await write_failed(run, writer, error, state)
        await metrics.run_finished(run.flow_id, "failed", self._store.get_flow_by_id)
        logger.info(
            "run %s failed: %s: %s", run.id, error["code"], error["message"], extra={"status": "failed"}
        )

    async def _finish_cancelled(self, run: RunRecord, writer: RunLogWriter) -> None:
        with contextlib.suppress(LeaseLost):
            await write_cancelled(run, writer)
            await metrics.run_finished(run.flow_id, "cancelled", self._store.get_flow_by_id)
            logger.info("run %s cancelled", run.id, extra={"status": "cancelled"})

    async def _finish_internal_error(self, run: RunRecord, writer: RunLogWriter) -> None:
        """Record an unexpected failure (`run_endings.record_internal_error`); the run's state
        row is left as it is."""

        async def fail(fresh: RunLogWriter, error: RunErrorDetail, _stored: RunRecord) -> None:
            await self._fail(run, fresh, error)

        await record_internal_error(self._store, self._bus, run, writer, fail)


class _LoggedWriter(RunLogWriter):
    """The run's writer, logging each provider failure the engine records (a step error or retry
    whose code is PROVIDER_*) as a warning. Messages of provider errors are redacted at the source
    (`providers/_errors.py`): they never hold a key."""

    # A plain function handing back the writer's own coroutine: no extra coroutine frame per event
    # on the token path, only a set lookup.
    def emit(self, event_type: str, payload: EventFields) -> Coroutine[Any, Any, None]:
        if event_type in _STEP_FAILURES:
            _log_step_failure(event_type, cast(Mapping[str, Any], payload))
        if event_type in _STEP_ENDS:
            metrics.step_ended(event_type, cast(Mapping[str, Any], payload))
        return super().emit(event_type, payload)


_STEP_FAILURES: Final = frozenset({ev.STEP_ERROR, ev.STEP_RETRYING})
_STEP_ENDS: Final = frozenset({ev.STEP_COMPLETED, ev.STEP_ERROR, ev.STEP_RETRYING})
"""The events that end a step attempt: what the step metrics count (`telemetry.metrics`)."""


def _log_step_failure(event_type: str, payload: Mapping[str, Any]) -> None:
    error = payload.get("error")
    if not isinstance(error, Mapping) or not str(error.get("code", "")).startswith("PROVIDER_"):
        return
    code = str(error["code"])
    retry = f"; attempt {payload.get('nextAttempt')} next" if event_type == ev.STEP_RETRYING else ""
    logger.warning(
        "provider failure in step %s (attempt %s): %s: %s%s",
        payload.get("stepId"),
        payload.get("attempt"),
        code,
        error.get("message", ""),
        retry,
        extra={"step_id": payload.get("stepId"), "code": code},
    )


def _add(counts: dict[str, int], name: str, delta: int) -> None:
    count = counts.get(name, 0) + delta
    if count:
        counts[name] = count
    else:
        del counts[name]


def seconds_left(deadline_at: datetime | None) -> float | None:
    """Seconds until a run's deadline (0 once past it); None for a run without one."""
    if deadline_at is None:
        return None
    if deadline_at.tzinfo is None:
        deadline_at = deadline_at.replace(tzinfo=UTC)
    return max(0.0, (deadline_at - datetime.now(UTC)).total_seconds())


def run_timeout_error(run: RunRecord) -> RunErrorDetail:
    at = "" if run.deadline_at is None else f" ({run.deadline_at.isoformat(timespec='seconds')})"
    return {
        "code": ErrorCode.RUN_TIMEOUT.value,
        "message": f"run {run.id} passed its deadline{at} and was stopped",
    }
