"""What the API asks of runs: resolve which flow version a request addresses, create runs (the
enqueue is the insert itself), and wait for a run to end by listening to its log.

Nothing here executes a step: requests change run state and read the log; workers do the work.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from noukai.types import events as ev
from noukai.types.errors import ErrorCode
from noukai.types.events import RunCancelledPayload
from noukai.types.wire import StepRequest
from noukai_server.bus import Bus, LogEvent, Subscription
from noukai_server.engine import RunInputs
from noukai_server.engine.agent import normalise_tool_results
from noukai_server.engine.state import AgentState, agent_state, awaits_tool_results
from noukai_server.engine.tools import TOOL_NAME
from noukai_server.flows import (
    FlowSpec,
    FlowValidationError,
    InputError,
    OverrideError,
    apply_block_overrides,
    bind_parameters,
)
from noukai_server.runtime.credits import refuse_without_credit
from noukai_server.runtime.errors import RequestRejected
from noukai_server.runtime.flow_cache import FlowCache
from noukai_server.runtime.idempotency import conflict_rejected, request_fingerprint
from noukai_server.runtime.quotas import RunLimits, queue_full
from noukai_server.runtime.reruns import rerun_start
from noukai_server.runtime.threads import thread_errors, thread_turn, tool_turns

# `X as X` below: the runs list's types, re-exported for the API (routers name no store queries).
from noukai_server.store import MAX_RUNS_PAGE as MAX_RUNS_PAGE
from noukai_server.store import (
    EventRow,
    FlowHead,
    HistoryWindow,
    IdempotencyConflict,
    NewRun,
    QueueFull,
    RunRecord,
    Store,
    ThreadTurn,
)
from noukai_server.store import ListedRun as ListedRun
from noukai_server.store import Position as Position
from noukai_server.store import RunFilter as RunFilter
from noukai_server.store import RunPage as RunPage
from noukai_server.store.records import TriggerType
from noukai_server.telemetry import metrics, tracing
from noukai_server.telemetry.trace_context import new_run_trace, parse_traceparent

MAX_MESSAGES_BYTES = 1024 * 1024
MAX_SESSION_ID_LENGTH = 255
MAX_ATTACHMENTS = 10
MAX_CLIENT_TOOLS = 64
_ALLOWED_ROLES = frozenset({"user", "assistant", "tool"})


@dataclass(frozen=True, slots=True)
class FlowTarget:
    """One flow at one version, ready to run."""

    flow: FlowHead
    version: int
    """0 for the draft."""
    revision: int
    document: dict[str, Any]
    spec: FlowSpec


def parse_version_segment(segment: str | None) -> int | None:
    """`None` for the base path, N for `/vN`; anything else addresses no flow."""
    if segment is None:
        return None
    digits = segment[1:] if segment[:1] in ("v", "V") else ""
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 9:
        raise RequestRejected(ErrorCode.FLOW_NOT_FOUND, f"no flow version {segment!r}")
    return int(digits)


class LocalWorker(Protocol):
    """A worker in this process that can take runs straight from the API (`Worker`)."""

    worker_id: str

    @property
    def lease_seconds(self) -> float: ...

    def reserve(self, org: str, key_id: str | None = None) -> bool: ...

    def release(self, org: str, key_id: str | None = None) -> None: ...

    def adopt(self, run: RunRecord) -> None: ...


class RunService:
    def __init__(
        self,
        store: Store,
        bus: Bus,
        flows: FlowCache,
        *,
        poll_interval: float = 1.0,
        local: LocalWorker | None = None,
        limits: RunLimits | None = None,
        idempotency_ttl_seconds: float | None = None,
        tracing_on: bool = False,
    ):
        self._store = store
        self._bus = bus
        self._flows = flows
        self._poll_interval = poll_interval
        self._local = local
        """New runs go straight to this worker while it has room (else through the queue)."""
        self._limits = limits or RunLimits()
        """Each new run's deadline and the queued-runs caps it is created under."""
        self._idempotency_ttl = idempotency_ttl_seconds
        """How long an idempotency key is remembered (None: for ever)."""
        self._tracing_on = tracing_on
        """Whether traces are exported (`tracing_configured()` at start-up): a run without a
        caller's `traceparent` gets a trace of its own only then."""

    def trace_of_new_run(self, traceparent: str | None) -> tuple[str | None, str | None]:
        """The trace columns of a new run (`NewRun.traceparent`, `.trace_parent_span_id`): a child
        of the caller's span when `traceparent` is valid, else its own trace when tracing is on."""
        trace = new_run_trace(traceparent, tracing_on=self._tracing_on)
        if trace is None:
            return None, None
        return trace.span.traceparent(), trace.parent_span_id

    async def resolve(self, org: str, project: str, slug: str, version: int | None) -> FlowTarget:
        """Base path: the latest published version, else the draft. 0: the draft. N: version N.

        One small read addresses the flow; its document is read (and parsed) only the first time
        this process sees that version or draft revision."""
        head = await self._store.get_flow_head(org, project, slug)
        if head is None:
            raise RequestRejected(ErrorCode.FLOW_NOT_FOUND, f"no flow {org}/{project}/{slug}")
        if version is None:
            version = head.latest_version or 0
        elif version > 0 and (head.latest_version is None or version > head.latest_version):
            raise RequestRejected(
                ErrorCode.FLOW_NOT_FOUND, f"flow {org}/{project}/{slug} has no version {version}"
            )
        revision = head.draft_revision if version == 0 else 0
        cached = self._flows.lookup((head.id, version, revision))
        if cached is not None:
            return FlowTarget(head, version, revision, dict(cached[1]), cached[0])
        found = await self._store.get_flow_document(head.id, version)
        if found is None:  # deleted or re-numbered since the head was read
            raise RequestRejected(
                ErrorCode.FLOW_NOT_FOUND, f"no flow {org}/{project}/{slug} version {version}"
            )
        document, revision = found  # the draft may have moved on since the head was read
        return self._target(head, version, revision, document)

    def _target(self, flow: FlowHead, version: int, revision: int, document: dict[str, Any]) -> FlowTarget:
        try:
            spec = self._flows.get((flow.id, version, revision), document)
        except FlowValidationError as exc:
            raise RequestRejected(ErrorCode(exc.code), exc.message) from exc
        return FlowTarget(flow, version, revision, document, spec)

    def check_inputs(self, target: FlowTarget, inputs: RunInputs) -> None:
        """Refuse, before any run exists, a request the flow cannot run with."""
        check_run_inputs(target.spec, inputs)

    async def resume_tools(
        self,
        target: FlowTarget,
        *,
        org: str,
        execution_id: str | None,
        paused_step: str | None,
        messages: list[dict[str, Any]],
        step_index: int | None = None,
    ) -> RunRecord:
        """Hand a paused agent step the caller's tool results and queue the run again."""
        if not execution_id or not _is_uuid(execution_id):
            raise RequestRejected(ErrorCode.EXECUTION_ID_INVALID, "executionId is not a run id")
        run = await self._store.get_run(execution_id)
        if run is None or run.org_id != org or run.flow_id != target.flow.id:
            raise RequestRejected(ErrorCode.EXECUTION_ID_INVALID, f"no run {execution_id} of this flow")
        agent = agent_state(run.state)
        if run.status != "waiting" or agent is None or not awaits_tool_results(agent):
            raise RequestRejected(
                ErrorCode.EXECUTION_ID_INVALID,
                f"run {execution_id} is {run.status}, not waiting for tool results",
            )
        if paused_step is not None and paused_step != agent["stepId"]:
            raise RequestRejected(
                ErrorCode.PAUSED_STEP_INVALID,
                f"run {execution_id} is paused at step '{agent['stepId']}', not '{paused_step}'",
            )
        if step_index is not None and step_index != agent["stepIndex"]:
            raise RequestRejected(
                ErrorCode.INVALID_STEP_INDEX,
                f"run {execution_id} is paused at stepIndex {agent['stepIndex']}, not {step_index}",
            )
        _check_size(messages, "toolCallMessages")
        pending_ids = [call["id"] for call in agent["pause"]["pending"]]
        try:
            results = normalise_tool_results(messages, pending_ids)
        except ValueError as exc:
            raise RequestRejected(ErrorCode.TOOL_RESULTS_MISMATCH, str(exc)) from exc
        answered: AgentState = {**agent, "results": results}
        if run.thread_id is not None:  # appended to the thread with the run's answer
            pause: Any = agent["pause"]
            await self._store.add_thread_tool_turns(run.id, tool_turns(pause, [dict(r) for r in results]))
        advanced = await self._store.advance_run(
            run.id,
            expected_status="waiting",
            cursor=agent["stepIndex"],
            pause_after=run.pause_after,
            state_patch={"agent": answered},
        )
        if advanced is None:
            raise RequestRejected(
                ErrorCode.EXECUTION_ID_INVALID, f"run {execution_id} was resumed by another request"
            )
        await self._bus.announce_work()
        return run

    async def start(
        self,
        target: FlowTarget,
        inputs: RunInputs,
        *,
        trigger: TriggerType,
        session_id: str | None = None,
        idempotency_key: str | None = None,
        pause_after: int | None = None,
        run_id: str | None = None,
        thread_id: str | None = None,
        multitask: str | None = None,
        api_key_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
        traceparent: str | None = None,
    ) -> RunRecord:
        """Create a run of `target`; `api_key_id` is the key that asked (its running and queued
        caps apply, and usage is counted against it). `metadata` (validated by the wire model) is
        stored with the run; `traceparent` is the request's header (see `trace_of_new_run`)."""
        session_id = session_id_of(session_id)
        inputs = bind_inputs(target, inputs)
        own_traceparent, parent_span_id = self.trace_of_new_run(traceparent)
        thread: ThreadTurn | None = None
        if thread_id is not None:
            thread = thread_turn(thread_id, inputs, history_window(target), multitask)
        new = NewRun(
            id=run_id or str(uuid.uuid4()),
            org_id=target.flow.org_id,
            project_id=target.flow.project_id,
            flow_id=target.flow.id,
            flow_version=target.version,
            flow_revision=target.revision,
            document=target.document,
            trigger_type=trigger,
            input=inputs.to_json(),
            session_id=session_id,
            pause_after=pause_after,
            idempotency_key=idempotency_key,
            thread=thread,
            api_key_id=api_key_id,
            request_hash=None
            if idempotency_key is None
            else request_fingerprint(
                trigger=trigger,
                flow_id=target.flow.id,
                version=target.version,
                inputs=inputs.to_json(),
                thread_id=thread_id,
                multitask=multitask,
                pause_after=pause_after,
            ),
            deadline_at=self._limits.deadline_at(target.spec, datetime.now(UTC)),
            metadata=dict(metadata or {}),
            traceparent=own_traceparent,
            trace_parent_span_id=parent_span_id,
        )
        return await self.admit(new)

    async def admit(self, new: NewRun) -> RunRecord:
        """Create `new` under the org's credit, the queued caps and its idempotency key: the one
        way every run is admitted (execute, step, jobs, reruns)."""
        try:
            try:
                await refuse_without_credit(self._store, new.org_id)
            except RequestRejected:
                # A retry of a request that already made its run gets that run, whatever the
                # org's credit says now: only a new run is refused (the queued cap does the same
                # in the store, in the insert's transaction: `quotas.check_queue`).
                repeat = await self._store.idempotent_repeat(
                    new, idempotency_ttl_seconds=self._idempotency_ttl
                )
                if repeat is None:
                    raise
                return repeat
            return await self._create(new)
        except QueueFull as refused:
            raise queue_full(refused) from None
        except IdempotencyConflict as conflict:  # the key is remembered for another request
            raise conflict_rejected(conflict) from None

    async def _create(self, new: NewRun) -> RunRecord:
        caps = self._limits.queue_caps
        if new.thread is not None:  # through the queue: the turn may have to wait for the thread
            with thread_errors():
                run = await self._store.create_run(
                    new, queue_caps=caps, idempotency_ttl_seconds=self._idempotency_ttl
                )
            await self._bus.announce_work()
            return run
        local = self._local
        if local is None or not local.reserve(new.org_id, new.api_key_id):
            run = await self._store.create_run(
                new, queue_caps=caps, idempotency_ttl_seconds=self._idempotency_ttl
            )
            await self._bus.announce_work()
            return run
        # Shielded: once reserved, the slot must be adopted or released whatever the caller does.
        return await asyncio.shield(self._hand_off(local, new))

    async def _hand_off(self, local: LocalWorker, new: NewRun) -> RunRecord:
        """Create the run already leased to the local worker and start it there: one write
        instead of an insert plus a claim, and no wait for the claim loop to wake."""
        try:
            run = await self._store.create_run(
                new,
                lease_to=local.worker_id,
                lease_seconds=local.lease_seconds,
                queue_caps=self._limits.queue_caps,
                idempotency_ttl_seconds=self._idempotency_ttl,
            )
        except BaseException:
            local.release(new.org_id, new.api_key_id)
            raise
        if run.created:
            local.adopt(run)
        else:  # an idempotent repeat: the run already exists, wherever it is
            local.release(new.org_id, new.api_key_id)
        return run

    async def launch(
        self,
        target: FlowTarget,
        inputs: RunInputs,
        *,
        trigger: TriggerType = "execute",
        session_id: str | None = None,
        idempotency_key: str | None = None,
        thread_id: str | None = None,
        multitask: str | None = None,
        api_key_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
        traceparent: str | None = None,
    ) -> tuple[RunRecord, Subscription]:
        """Create a run already subscribed to its live events (subscribing first means its end
        cannot slip past). The caller owns the subscription (`wait_settled` closes it)."""
        run_id = str(uuid.uuid4())
        subscription = self._bus.subscribe(run_id)
        try:
            run = await self.start(
                target,
                inputs,
                trigger=trigger,
                session_id=session_id,
                idempotency_key=idempotency_key,
                run_id=run_id,
                thread_id=thread_id,
                multitask=multitask,
                api_key_id=api_key_id,
                metadata=metadata,
                traceparent=traceparent,
            )
        except BaseException:
            await subscription.aclose()
            raise
        if run.id != run_id:  # an idempotent repeat: follow the run that already exists
            await subscription.aclose()
            subscription = self._bus.subscribe(run.id)
        return run, subscription

    async def begin_step_segment(
        self,
        target: FlowTarget,
        body: StepRequest,
        *,
        org: str,
        session_id: str | None = None,
        api_key_id: str | None = None,
        traceparent: str | None = None,
    ) -> tuple[str, int]:
        """Start or advance a paced run for one `/step` call; returns the run id and the seq after
        which this call's events begin. The first call creates the run; each later call moves a
        waiting run's cursor to `stepIndex` and queues it again."""
        pause_after = None if body.run_remaining else body.step_index
        if body.execution_id is None:
            if body.step_index != 0 or body.tool_call_messages:
                raise RequestRejected(
                    ErrorCode.INVALID_FIRST_CALL,
                    "a /step call without executionId starts a run: stepIndex must be 0",
                )
            inputs = RunInputs(
                message=body.message,
                parameters=body.parameters,
                attachments=body.attachments,
                block_overrides=body.block_overrides,
                trace=body.trace,
                tools=body.tools,
                tool_choice=body.tool_choice,
            )
            self.check_inputs(target, inputs)
            run = await self.start(
                target,
                inputs,
                trigger="step",
                session_id=session_id,
                pause_after=pause_after,
                thread_id=body.thread_id,
                multitask=body.multitask,
                api_key_id=api_key_id,
                metadata=body.metadata,
                traceparent=traceparent,
            )
            return run.id, 0
        if body.metadata is not None:
            await self._same_metadata(body.execution_id, org, body.metadata)
        if body.tool_call_messages is not None:
            resumed = await self.resume_tools(
                target,
                org=org,
                execution_id=body.execution_id,
                paused_step=None,
                messages=body.tool_call_messages,
                step_index=body.step_index,
            )
            return resumed.id, resumed.last_seq
        run = await self.get_run(body.execution_id, org=org)
        if run.flow_id != target.flow.id:
            raise RequestRejected(ErrorCode.RUN_NOT_FOUND, f"no run {run.id} of this flow")
        step_count = len(run.document.get("steps") or [])
        if not 0 <= body.step_index < step_count:
            raise RequestRejected(
                ErrorCode.INVALID_STEP_INDEX,
                f"stepIndex {body.step_index} is out of range: the flow has {step_count} steps",
            )
        if run.status != "waiting":
            raise RequestRejected(
                ErrorCode.RUN_NOT_RESUMABLE, f"run {run.id} is {run.status}, not waiting for /step"
            )
        if body.step_index != run.cursor:
            raise RequestRejected(
                ErrorCode.INVALID_STEP_INDEX,
                f"run {run.id} continues at stepIndex {run.cursor}, not {body.step_index}",
            )
        advanced = await self._store.advance_run(
            run.id, expected_status="waiting", cursor=body.step_index, pause_after=pause_after
        )
        if advanced is None:
            raise RequestRejected(
                ErrorCode.RUN_NOT_RESUMABLE, f"run {run.id} was advanced by another request"
            )
        await self._bus.announce_work()
        return run.id, run.last_seq

    async def rerun(
        self,
        original: RunRecord,
        *,
        from_step: str | int | None = None,
        metadata: Mapping[str, str] | None = None,
        api_key_id: str | None = None,
        traceparent: str | None = None,
    ) -> RunRecord:
        """Queue a new run of the document `original` ran, with its inputs (trigger `job`), linked
        to it; from `from_step`, the earlier steps' recorded outputs are reused (`reruns`). It is
        admitted as any new run is (credit, queued caps), and gets a trace of its own."""
        plan = rerun_start(original, from_step)
        try:
            spec = self._flows.get(
                (original.flow_id, original.flow_version, original.flow_revision), original.document
            )
        except FlowValidationError as exc:  # a document that ran once still validates; be safe
            raise RequestRejected(ErrorCode(exc.code), exc.message) from exc
        own_traceparent, parent_span_id = self.trace_of_new_run(traceparent)
        new = NewRun(
            id=str(uuid.uuid4()),
            org_id=original.org_id,
            project_id=original.project_id,
            flow_id=original.flow_id,
            flow_version=original.flow_version,
            flow_revision=original.flow_revision,
            document=original.document,
            trigger_type="job",
            input=plan.input,
            state=plan.state,
            cursor=plan.cursor,
            api_key_id=api_key_id,
            deadline_at=self._limits.deadline_at(spec, datetime.now(UTC)),
            metadata=dict(original.metadata if metadata is None else metadata),
            traceparent=own_traceparent,
            trace_parent_span_id=parent_span_id,
            rerun_of=original.id,
            rerun_from_step=plan.from_step,
        )
        return await self.admit(new)

    async def list_runs(self, where: RunFilter, after: Position | None, limit: int) -> RunPage:
        """A page of the tenant's runs, newest first (`store.run_listing`)."""
        return await self._store.list_runs(where, after, limit)

    async def names_of(self, run: RunRecord) -> tuple[str | None, str | None]:
        """The slugs of the run's project and flow (one read; a deleted flow names neither)."""
        flow = await self._store.get_flow_by_id(run.flow_id)
        return (None, None) if flow is None else (flow.project_slug, flow.slug)

    async def _same_metadata(self, run_id: str, org: str, metadata: Mapping[str, str]) -> None:
        """A later `/step` call may repeat the run's metadata (an SDK resending its options) but
        not change it: labels are fixed when the run is created, as its inputs are."""
        run = await self.get_run(run_id, org=org)
        if dict(metadata) != run.metadata:
            raise RequestRejected(
                ErrorCode.VALIDATION_ERROR,
                f"metadata: run {run_id} was created with other metadata, which a later /step call "
                "cannot change; send the same metadata or none",
            )

    async def get_run(self, run_id: str, *, org: str, project: str | None = None) -> RunRecord:
        """The run, if it belongs to the caller's org (and project, for a project key); other
        tenants' runs look exactly like runs that do not exist."""
        run = await self._store.get_run(run_id) if _is_uuid(run_id) else None
        if run is None or run.org_id != org or (project is not None and run.project_id != project):
            raise RequestRejected(ErrorCode.RUN_NOT_FOUND, f"no run {run_id}")
        return run

    async def cancel(self, run: RunRecord) -> RunRecord:
        """Stop a run at its next safe point. Idempotent: a finished run is returned as it is."""
        if run.terminal:
            return run
        final: list[LogEvent] = []

        def cancelled_event(cancelled: RunRecord) -> list[EventRow]:
            # Nobody executes a queued or waiting run, so its last event is written here, in the
            # same transaction as the status change.
            seq = cancelled.last_seq + 1
            event: RunCancelledPayload = {
                "eventType": ev.RUN_CANCELLED,
                "seq": seq,
                "runId": run.id,
                "executionId": run.id,
            }
            data = orjson.dumps(event)
            final.append(LogEvent.create(run.id, seq, ev.RUN_CANCELLED, data))
            return [EventRow(seq, ev.RUN_CANCELLED, data.decode())]

        updated = await self._store.request_cancel(run.id, final_events=cancelled_event)
        if updated is None:
            raise RequestRejected(ErrorCode.RUN_NOT_FOUND, f"no run {run.id}")
        if run.thread_id is not None and updated.terminal:
            await self._bus.announce_work()  # the thread's next turn may have become claimable
        if final:
            await self._bus.publish(run.id, final)
            await metrics.run_finished(run.flow_id, "cancelled", self._store.get_flow_by_id)
            # Nobody executes it: its workflow span is emitted here (tracing is set up in API
            # processes too), else the spans of a run cancelled while waiting lose their parent.
            tracing.end_run(updated, "cancelled", ErrorCode.RUN_CANCELLED.value, "the run was cancelled")
        elif not updated.terminal:
            await self._bus.announce_cancel(run.id)
        return updated

    async def wait_settled(self, run_id: str, subscription: Subscription) -> RunRecord:
        """Wait until the run ends or pauses for client tool results, then close the subscription.
        The store is polled too, so a missed publish (another process, a restart) only delays the
        answer."""
        try:
            return await self._wait_settled(run_id, subscription)
        finally:
            await subscription.aclose()

    async def _wait_settled(self, run_id: str, subscription: Subscription) -> RunRecord:
        loop = asyncio.get_running_loop()
        while True:
            run = await self._store.get_run(run_id)
            if run is None:
                raise RequestRejected(ErrorCode.RUN_NOT_FOUND, f"no run {run_id}")
            if run.terminal or waiting_for_tools(run):
                return run
            # Until the run settles, only its settling events matter: drain the rest in bursts
            # (no task per event) and look at the row again on one of them or after a quiet
            # `poll_interval` (a lost publish only delays the answer).
            deadline = loop.time() + self._poll_interval
            settled = False
            while not settled and (remaining := deadline - loop.time()) > 0:
                if not await subscription.wait(remaining):
                    break
                settled = any(event.type in SETTLING_EVENTS for event in subscription.take_nowait())


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id in a run's stored `traceparent` (None: the run has no trace)."""
    span = parse_traceparent(traceparent)
    return None if span is None else span.trace_id


def history_window(target: FlowTarget) -> HistoryWindow:
    """The flow's `history` window for runs on a thread (no limit when it declares none)."""
    history = target.spec.history
    if history is None:
        return HistoryWindow()
    return HistoryWindow(max_messages=history.max_messages, max_tokens=history.max_tokens)


def bind_inputs(target: FlowTarget, inputs: RunInputs) -> RunInputs:
    """The inputs with their parameters bound to the flow's declared `inputs` (defaults filled in);
    refused when a required input is missing or a value has the wrong type. Every way of starting
    a run (execute, the first /step call, jobs) goes through `start`, and so through here."""
    if not target.spec.inputs:
        return inputs  # a flow that declares no inputs takes any parameters, as they are
    try:
        parameters = bind_parameters(target.spec, inputs.parameters)
    except InputError as exc:
        raise RequestRejected(
            ErrorCode.VALIDATION_ERROR, f"flow '{target.spec.slug}': {exc.message}"
        ) from exc
    return replace(inputs, parameters=parameters)


SETTLING_EVENTS = frozenset({*ev.TERMINAL_EVENTS, ev.STEP_PAUSED_FOR_TOOL_CALLS})


def waiting_for_tools(run: RunRecord) -> bool:
    """The run waits for the caller's client tool results (not for a `/step` call)."""
    return run.status == "waiting" and awaits_tool_results(agent_state(run.state))


def check_client_tools(tools: list[dict[str, Any]]) -> None:
    """Client tools must be OpenAI function definitions with usable names (contract 4)."""
    if len(tools) > MAX_CLIENT_TOOLS:
        raise RequestRejected(ErrorCode.TOOLS_INVALID, f"at most {MAX_CLIENT_TOOLS} tools are accepted")
    names: set[str] = set()
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(function, dict):
            raise RequestRejected(
                ErrorCode.TOOLS_INVALID,
                f'tools[{index}] must be {{"type": "function", "function": {{"name": ...}}}}',
            )
        name = function.get("name")
        if not isinstance(name, str) or not TOOL_NAME.match(name):
            raise RequestRejected(
                ErrorCode.TOOL_NAME_INVALID,
                f"tools[{index}].function.name {name!r} must match {TOOL_NAME.pattern}",
            )
        if name in names:
            raise RequestRejected(ErrorCode.TOOL_NAME_INVALID, f"tool name {name!r} is used twice")
        names.add(name)
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise RequestRejected(
                ErrorCode.TOOLS_INVALID, f"tools[{index}].function.parameters must be a JSON schema"
            )


def session_id_of(header: str | None) -> str | None:
    """The session a run is recorded in, from `X-Session-Id`: any string (the published SDK sends
    whatever the caller passed, even an empty one, which records nothing)."""
    if header is None or not header.strip():
        return None
    if len(header) > MAX_SESSION_ID_LENGTH:
        raise RequestRejected(
            ErrorCode.VALIDATION_ERROR, f"X-Session-Id is longer than {MAX_SESSION_ID_LENGTH} characters"
        )
    return header


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _check_size(messages: list[dict[str, Any]], field: str) -> None:
    if len(orjson.dumps(messages)) > MAX_MESSAGES_BYTES:
        raise RequestRejected(ErrorCode.MESSAGES_TOO_LARGE, f"{field} exceed 1 MiB")


def check_run_inputs(spec: FlowSpec, inputs: RunInputs) -> None:
    """Refuse, before any run exists, inputs `spec` cannot run with (`RequestRejected` with the
    code the API answers). In-process flows (`local`) check their calls with it too."""
    if inputs.messages is not None:
        _check_messages(inputs.messages)
    if inputs.attachments is not None and len(inputs.attachments) > MAX_ATTACHMENTS:
        raise RequestRejected(
            ErrorCode.VALIDATION_ERROR, f"at most {MAX_ATTACHMENTS} attachments are accepted"
        )
    if inputs.message is None and not inputs.messages and spec.uses_message():
        raise RequestRejected(
            ErrorCode.MISSING_MESSAGE, f"flow '{spec.slug}' uses `message` in its templates; send a message"
        )
    if inputs.block_overrides:
        try:
            apply_block_overrides(spec, inputs.block_overrides)
        except OverrideError as exc:
            raise RequestRejected(ErrorCode.INVALID_OVERRIDE, str(exc)) from exc
    if inputs.tools:
        check_client_tools(inputs.tools)
        if not any(step.type == "agent" for step in spec.steps):
            raise RequestRejected(
                ErrorCode.TOOLS_NOT_ENABLED, f"flow '{spec.slug}' has no agent step, so it cannot call tools"
            )


def _check_messages(messages: list[dict[str, Any]]) -> None:
    # Tool results sent back (`toolCallMessages`) may omit `role`, so only `messages` checks roles.
    _check_size(messages, "messages")
    for index, message in enumerate(messages):
        role = message.get("role")
        if role not in _ALLOWED_ROLES:
            raise RequestRejected(
                ErrorCode.MESSAGES_ROLE_INVALID,
                f"messages[{index}].role is {role!r}; allowed roles: assistant, tool, user",
            )
