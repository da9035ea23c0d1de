"""Child runs: what a `flow` step (or an agent's `flow:` tool) runs, as a run of its own.

A child is a real run: its own row (with `parent_run_id`, `parent_step_id` and `depth`), its own
log, cursor and checkpoints. It is executed inline, by the worker task of its parent (no claim, no
extra slot), and every event of its log is copied into the parent's log as a `subflow_event`.

- **Identity.** A child's id is derived from its parent's id, the step, the step's key (its
  `foreach` index, or the tool call id) and the step's attempt: a retry of the step (after a
  retryable failure or a `STEP_TIMEOUT`, which ended the child) starts a fresh child. An attempt
  that continues one whose worker was lost (`ChildRuns.resumes`) runs under the next number, so
  it looks back for the child the interrupted attempt started: an unfinished one is taken over,
  one that ended is the step's end, and a completed child is never run twice.
- **Lease.** The child is leased to the parent's worker until just after the parent's deadline
  (`child_lease_seconds`), far longer than a run's lease, so the queue does not hand it to another
  worker while the parent still lives. When the parent's worker is lost, the parent's next
  attempt takes the child over (`Store.take_over_child`: a new attempt of the child, which fences
  the old holder's writes) and the child resumes from its own checkpoint: its completed steps are
  not run again. Workers handing their runs back keep their children (`release_leases`).
- **Cancel and failure.** Cancelling the parent cancels the child (it runs inside the parent's
  task). A child cancelled on its own, or failing, fails the parent's step (`SUBFLOW_CANCELLED`,
  `SUBFLOW_FAILED`). Only a child's transient failure (`_TRANSIENT_CODES`) is retried, by the
  step's retry policy, with a fresh child; any other end would only come again.
- **Depth.** At most `MAX_DEPTH` levels (`SUBFLOW_TOO_DEEP`): pushes refuse cycles through the
  stored flows (`flow_graph.py`), and the depth bounds anything that slipped past (a draft
  changed after its parent was pushed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from noukai.types import events as ev
from noukai.types.errors import ErrorCode
from noukai.types.events import (
    EventFields,
    RunErrorDetail,
    SubflowEventFields,
)
from noukai_server.bus import Bus
from noukai_server.engine import Completed, Failed, FlowEngine, RunInputs, RunState, StepFailure
from noukai_server.engine.sink import EventSink
from noukai_server.engine.subflow import ChildRequest, ChildResult, FlowTool, use_host
from noukai_server.eventlog.writer import RunLogWriter
from noukai_server.flows import FlowAddress, FlowSpec, FlowValidationError, InputError, bind_parameters
from noukai_server.logs import run_id_var
from noukai_server.providers import ToolSpec
from noukai_server.runtime.attempts import FIRST_ATTEMPT, ResumePoint, logged_resume_point
from noukai_server.runtime.flow_cache import FlowCache
from noukai_server.runtime.run_endings import (
    record_internal_error,
    run_started,
    write_cancelled,
    write_completed,
    write_failed,
)
from noukai_server.store import FlowHead, LeaseLost, NewRun, RunRecord, RunUpdate, Store
from noukai_server.telemetry import tracing
from noukai_server.telemetry.trace_context import new_run_trace

logger = logging.getLogger("noukai.child_runs")

MAX_DEPTH: Final = 5
"""The deepest a child may be nested (a run a request started is at depth 0)."""
CHILD_LEASE_SECONDS: Final = 7 * 24 * 3600.0
"""A child's lease when its parent has no deadline. Held by the parent's worker, not renewed, so
only the parent's next attempt (`take_over_child`) moves a child whose worker was lost."""
LEASE_MARGIN_SECONDS: Final = 60.0
_TRANSIENT_CODES: Final = frozenset(
    code.value
    for code in (
        ErrorCode.PROVIDER_ERROR,
        ErrorCode.PROVIDER_RATE_LIMITED,
        ErrorCode.PROVIDER_TIMEOUT,
        ErrorCode.STEP_TIMEOUT,
        ErrorCode.STEP_INTERRUPTED,
    )
)
"""A child's errors that make the parent's step fail retryably (see `_child_failed`)."""
_IDS: Final = uuid.UUID("6f1d1c5e-52a4-4c55-9d0e-0c8e3b7a9f21")
"""The namespace of child run ids (uuid5 of `parent/step/key`, `@attempt` added after the first)."""


@dataclass(frozen=True, slots=True)
class _Target:
    head: FlowHead
    version: int
    revision: int
    document: dict[str, Any]
    spec: FlowSpec


def child_lease_seconds(parent: RunRecord) -> float:
    """Until a little after the parent's deadline: the parent cannot need its child longer, and a
    child its parent left behind (cancelled while its worker was lost) is then claimable, and
    failed at once for its deadline (which is its parent's)."""
    if parent.deadline_at is None:
        return CHILD_LEASE_SECONDS
    deadline = parent.deadline_at if parent.deadline_at.tzinfo else parent.deadline_at.replace(tzinfo=UTC)
    return max(0.0, (deadline - datetime.now(UTC)).total_seconds()) + LEASE_MARGIN_SECONDS


def child_run_id(parent_id: str, step_id: str, key: str, attempt: int = 1) -> str:
    """The id of the child that attempt `attempt` of the parent's step starts for `key`."""
    # The first attempt's name has no suffix: the ids children got before attempts counted.
    name = f"{parent_id}/{step_id}/{key}" if attempt == 1 else f"{parent_id}/{step_id}/{key}@{attempt}"
    return str(uuid.uuid5(_IDS, name))


class ChildWorker(Protocol):
    """The worker whose task runs the parent (`runtime.Worker`)."""

    @property
    def worker_id(self) -> str: ...

    def hold(self, run_id: str, task: asyncio.Task[Any], reasons: list[str]) -> None:
        """Count the child's task as one of the worker's runs while it runs: a cancel of the child
        reaches it (`reasons` then gets "cancel")."""
        ...

    def let_go(self, run_id: str) -> None: ...

    def stop_reason(self, run_id: str) -> str | None:
        """Why the task running `run_id` is being stopped: "cancel", "lost" (its lease), "stopping"
        (the worker is), or None (a deadline or a timeout, or not stopped)."""
        ...


class ChildRuns:
    """The `SubflowHost` of one run (the parent): runs its children inline."""

    def __init__(
        self,
        store: Store,
        bus: Bus,
        engine: FlowEngine,
        flows: FlowCache,
        worker: ChildWorker,
        parent: RunRecord,
    ) -> None:
        self._store = store
        self._bus = bus
        self._engine = engine
        self._flows = flows
        self._worker = worker
        self._parent = parent
        self._resumed: tuple[int, int] | None = None

    def resumes(self, step_index: int, attempt: int) -> None:
        """The parent's step at `step_index` runs as `attempt` because the attempt before it was
        interrupted (its worker was lost): that attempt's children are this one's."""
        self._resumed = (step_index, attempt)

    async def flow_tool(self, flow: str) -> FlowTool:
        spec = (await self._resolve(flow, None)).spec
        description = spec.description or spec.name or f"Runs the flow {flow} and answers with its result."
        return FlowTool(flow, ToolSpec(spec.slug, description, inputs_schema(spec)), not spec.inputs)

    async def run_child(
        self,
        request: ChildRequest,
        sink: EventSink,
        on_start: Callable[[str], Awaitable[None]] | None = None,
    ) -> ChildResult:
        parent = self._parent
        depth = parent.depth + 1
        if depth > MAX_DEPTH:
            raise StepFailure(
                ErrorCode.SUBFLOW_TOO_DEEP,
                f"step '{request.step_id}' would run {request.flow} at depth {depth}; "
                f"flows nest at most {MAX_DEPTH} deep",
            )
        child_id, child = await self._find(request)
        if child is None:
            child = await self._create(child_id, request, depth)
        elif not child.terminal:
            taken = await self._store.take_over_child(
                child_id, parent.id, self._worker.worker_id, child_lease_seconds(parent)
            )
            child = taken or await self._store.get_run(child_id) or child
        tracing.child_run(child.id)
        if on_start is not None:
            await on_start(child.id)
        if child.terminal:  # it ended before the parent's last worker could record its step
            return _ended(child)
        if child.cancel_requested:  # asked while no worker held it (its parent's was lost)
            writer = _ForwardingWriter(self._store, self._bus, child, sink, request.flow)
            await _finish_cancelled(child, writer)
            raise StepFailure(ErrorCode.SUBFLOW_CANCELLED, f"the child run {child.id} was cancelled")
        try:
            spec = self._flows.get((child.flow_id, child.flow_version, child.flow_revision), child.document)
        except FlowValidationError as exc:  # the server no longer has a function or tool it names
            raise StepFailure(ErrorCode.SUBFLOW_INVALID, f"flow {request.flow}: {exc.message}") from exc
        return await self._run(child, spec, request.flow, sink)

    async def _find(self, request: ChildRequest) -> tuple[str, RunRecord | None]:
        """The id of the request's child and the child when it exists. An attempt that continues
        an interrupted one looks back: the interrupted attempt's child (running, or ended before
        the step could record it), or an unfinished child of an earlier attempt (one a chain of
        interrupted attempts took over: a retry after a failure or a timeout always ends its
        child, so an unfinished one was never given up)."""
        parent = self._parent
        own = child_run_id(parent.id, request.step_id, request.key, request.attempt)
        child = await self._store.get_run(own)
        if child is not None or self._resumed != (request.step_index, request.attempt):
            return own, child
        for earlier in range(request.attempt - 1, 0, -1):
            found = await self._store.get_run(child_run_id(parent.id, request.step_id, request.key, earlier))
            if found is not None and (earlier == request.attempt - 1 or not found.terminal):
                return found.id, found
        return own, None

    async def _resolve(self, flow: str, version: int | None) -> _Target:
        """The flow a step names, as `RunService.resolve` finds it for a request; refused (a
        `StepFailure`) when it is missing, in another org, or invalid."""
        try:
            address = FlowAddress.parse(flow)
        except ValueError as exc:
            raise StepFailure(ErrorCode.SUBFLOW_INVALID, str(exc)) from exc
        if address.org != self._parent.org_id:
            raise StepFailure(
                ErrorCode.SUBFLOW_INVALID,
                f"flow {flow} is in another org; a flow runs only flows of its own org",
            )
        head = await self._store.get_flow_head(address.org, address.project, address.slug)
        if head is None:
            raise StepFailure(ErrorCode.SUBFLOW_INVALID, f"no flow {flow}")
        if version is None:
            version = head.latest_version or 0
        elif version > 0 and (head.latest_version is None or version > head.latest_version):
            raise StepFailure(ErrorCode.SUBFLOW_INVALID, f"flow {flow} has no version {version}")
        found = await self._store.get_flow_document(head.id, version)
        if found is None:
            raise StepFailure(ErrorCode.SUBFLOW_INVALID, f"no flow {flow} version {version}")
        document, revision = found
        try:
            spec = self._flows.get((head.id, version, revision), document)
        except FlowValidationError as exc:
            raise StepFailure(ErrorCode.SUBFLOW_INVALID, f"flow {flow}: {exc.message}") from exc
        return _Target(head, version, revision, document, spec)

    async def _create(self, child_id: str, request: ChildRequest, depth: int) -> RunRecord:
        target = await self._resolve(request.flow, request.version)
        spec, head = target.spec, target.head
        try:
            parameters = bind_parameters(spec, request.parameters)
        except InputError as exc:
            raise StepFailure(ErrorCode.SUBFLOW_INVALID, f"flow {request.flow}: {exc.message}") from exc
        if request.message is None and spec.uses_message():
            raise StepFailure(
                ErrorCode.SUBFLOW_INVALID,
                f"flow {request.flow} uses `message` in its templates; give the step a `message`",
            )
        parent = self._parent
        # The child's workflow span is a child of the parent's step span (current here).
        # Without tracing here, it continues the parent's stored trace (logs name it).
        trace = new_run_trace(tracing.current_traceparent() or parent.traceparent, tracing_on=False)
        new = NewRun(
            id=child_id,
            org_id=head.org_id,
            project_id=head.project_id,
            flow_id=head.id,
            flow_version=target.version,
            flow_revision=target.revision,
            document=target.document,
            trigger_type=parent.trigger_type,
            input=RunInputs(message=request.message, parameters=parameters).to_json(),
            api_key_id=parent.api_key_id,
            deadline_at=parent.deadline_at,
            traceparent=None if trace is None else trace.span.traceparent(),
            trace_parent_span_id=None if trace is None else trace.parent_span_id,
            parent_run_id=parent.id,
            parent_step_id=request.step_id,
            depth=depth,
        )
        return await self._store.create_run(
            new, lease_to=self._worker.worker_id, lease_seconds=child_lease_seconds(parent)
        )

    async def _run(self, child: RunRecord, spec: FlowSpec, flow: str, sink: EventSink) -> ChildResult:
        """Drive the child in a task of its own (so that a cancel of the child alone can stop it),
        held by the worker while it runs."""
        reasons: list[str] = []
        writer = _ForwardingWriter(self._store, self._bus, child, sink, flow)
        task = asyncio.create_task(self._drive(child, spec, writer), name=f"run-{child.id}")
        self._worker.hold(child.id, task, reasons)
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:  # the parent is stopped: so is its child
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            why = self._worker.stop_reason(self._parent.id)
            if why not in ("lost", "stopping"):  # else the parent's next attempt takes it over
                await _finish_cancelled(child, writer)
            raise
        finally:
            self._worker.let_go(child.id)
        if task.cancelled():  # cancelled on its own (the parent was not)
            await _finish_cancelled(child, writer)
            raise StepFailure(
                ErrorCode.SUBFLOW_CANCELLED, f"the child run {child.id} of flow {flow} was cancelled"
            )
        error = task.exception()
        # A StepFailure is the child's end, already recorded; LeaseLost means another attempt of
        # the parent holds the child now, and this one must stop (the parent's worker drops it).
        if error is not None and not isinstance(error, StepFailure | LeaseLost):
            logger.error("child run %s failed inside the worker", child.id, exc_info=error)
            await self._record_internal_error(child, writer)
            raise StepFailure(
                ErrorCode.SUBFLOW_FAILED, f"the child run {child.id} of flow {flow} failed inside the server"
            ) from error
        return task.result()

    async def _record_internal_error(self, child: RunRecord, writer: RunLogWriter) -> None:
        """As the worker records a run's unexpected failure (`run_endings.record_internal_error`),
        keeping the state the store holds."""

        async def fail(fresh: RunLogWriter, error: RunErrorDetail, stored: RunRecord) -> None:
            await write_failed(child, fresh, error, RunState.from_json(stored.state))

        await record_internal_error(self._store, self._bus, child, writer, fail)

    async def _drive(self, child: RunRecord, spec: FlowSpec, writer: _ForwardingWriter) -> ChildResult:
        run_id_var.set(child.id)
        tracing.bind_run(child)
        host = ChildRuns(self._store, self._bus, self._engine, self._flows, self._worker, child)
        use_host(host)
        if child.last_seq == 0:
            await writer.emit(ev.RUN_STARTED, run_started(child, len(spec.steps)))
        inputs = RunInputs.from_json(child.input)
        state = RunState.from_json(child.state)
        resume = await self._resume_point(child, spec)
        if resume.interrupted:
            host.resumes(child.cursor, resume.attempt)
        outcome = await self._engine.run(
            spec,
            inputs,
            state,
            writer,
            run={"id": child.id, "flow": spec.slug, "version": child.flow_version},
            start_index=child.cursor,
            attempt=resume.attempt,
            interrupted=resume.interrupted,
        )
        if isinstance(outcome, Completed):
            await write_completed(child, writer, outcome.result, state, len(spec.steps))
            return ChildResult(child.id, outcome.result)
        if isinstance(outcome, Failed):
            error: RunErrorDetail = {
                "code": outcome.code,
                "message": outcome.message,
                "stepId": outcome.step_id,
            }
        else:  # a pause: a child has no caller to answer client tools or a `/step` call
            error = {
                "code": ErrorCode.SUBFLOW_INVALID.value,
                "message": f"flow {spec.slug} paused, which a child run cannot: nobody would resume it",
            }
        await write_failed(child, writer, error, state)
        raise _child_failed(child, error)

    async def _resume_point(self, child: RunRecord, spec: FlowSpec) -> ResumePoint:
        """As the worker's: a step of the child that already started runs again as its next attempt."""
        if child.last_seq == 0 or child.cursor >= len(spec.steps):
            return FIRST_ATTEMPT
        return await logged_resume_point(self._store, child.id, spec.steps[child.cursor].id)


class _ForwardingWriter(RunLogWriter):
    """The child's log writer, which also copies each event into the parent's log, wrapped as a
    `subflow_event`. A grandchild's events arrive here already wrapped and go up unchanged, so
    the top run's log holds every descendant's events, each with its own run id and depth."""

    def __init__(self, store: Store, bus: Bus, child: RunRecord, parent: EventSink, flow: str) -> None:
        super().__init__(store, bus, child.id, child.attempt, child.last_seq)
        self._parent = parent
        self._child = child
        self._flow = flow

    async def emit(self, event_type: str, payload: EventFields) -> None:
        await super().emit(event_type, payload)
        await self._forward(event_type, payload)

    async def emit_with_update(self, event_type: str, payload: EventFields, update: RunUpdate) -> None:
        await super().emit_with_update(event_type, payload, update)
        await self._forward(event_type, payload)

    async def _forward(self, event_type: str, payload: EventFields) -> None:
        if event_type == ev.SUBFLOW_EVENT:
            nested: Any = payload
            await self._parent.emit(ev.SUBFLOW_EVENT, nested)
            return
        child = self._child
        wrapped: SubflowEventFields = {
            "parentStepId": child.parent_step_id or "",
            "childRunId": child.id,
            "flow": self._flow,
            "depth": child.depth,
            "event": {"eventType": event_type, "seq": self.last_seq, **payload},
        }
        await self._parent.emit(ev.SUBFLOW_EVENT, wrapped)


async def _finish_cancelled(child: RunRecord, writer: RunLogWriter) -> None:
    # Shielded and quiet: this runs while the parent's task is being cancelled, and a child whose
    # lease moved on (a new attempt of the parent took it over) is not this writer's to end.
    with contextlib.suppress(LeaseLost):
        await asyncio.shield(write_cancelled(child, writer))


def _ended(child: RunRecord) -> ChildResult:
    """The result of a child that had already ended, or the step's failure."""
    if child.status == "completed":
        return ChildResult(child.id, child.result)
    if child.status == "cancelled":
        raise StepFailure(ErrorCode.SUBFLOW_CANCELLED, f"the child run {child.id} was cancelled")
    error = child.error if isinstance(child.error, dict) else {}
    raise _child_failed(child, error)


def _child_failed(child: RunRecord, error: Mapping[str, Any]) -> StepFailure:
    """The parent step's `SUBFLOW_FAILED`: retryable when the child's own error is one a step
    retries (a provider's transient failure, a timeout, a lost worker), since a retry of the step
    starts a fresh child that may not meet it; any other error would only come again."""
    retryable = error.get("code") in _TRANSIENT_CODES
    return StepFailure(ErrorCode.SUBFLOW_FAILED, _failure_message(child, error), retryable=retryable)


def _failure_message(child: RunRecord, error: Mapping[str, Any]) -> str:
    step = f" at step '{error['stepId']}'" if error.get("stepId") else ""
    return (
        f"the child run {child.id} of flow {child.document.get('slug', child.flow_id)} failed{step}: "
        f"{error.get('code', ErrorCode.INTERNAL_ERROR.value)}: {error.get('message', '')}"
    )


_JSON_TYPES: Final = {
    "string": "string",
    "integer": "integer",
    "number": "number",
    "boolean": "boolean",
    "array": "array",
    "object": "object",
}


def inputs_schema(spec: FlowSpec) -> dict[str, Any]:
    """The JSON schema of a flow's parameters, from its declared `inputs` (an agent's `flow:`
    tool offers it to the model). A flow that declares none takes a `message`."""
    if not spec.inputs:
        return {
            "type": "object",
            "properties": {"message": {"type": "string", "description": "what to ask the flow"}},
        }
    properties: dict[str, Any] = {}
    for name, declared in spec.inputs.items():
        schema: dict[str, Any] = {"type": _JSON_TYPES[declared.type]}
        if declared.description:
            schema["description"] = declared.description
        properties[name] = schema
    required = [name for name, declared in spec.inputs.items() if declared.is_required]
    return {"type": "object", "properties": properties, "required": required}
