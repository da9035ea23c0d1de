"""What the API asks of runs: resolve which flow version a request addresses, create runs (the
enqueue is the insert itself), and wait for a run to end by listening to its log.

Nothing here executes a step: requests change run state and read the log; workers do the work.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from noukai.bus import Bus, Subscription
from noukai.engine import RunInputs
from noukai.flows import FlowSpec, FlowValidationError, OverrideError, apply_block_overrides
from noukai.runtime.errors import RequestRejected
from noukai.runtime.flow_cache import FlowCache
from noukai.store import FlowRecord, NewRun, RunRecord, Store
from noukai.store.records import TriggerType
from noukai.types import events as ev
from noukai.types.errors import ErrorCode

MAX_MESSAGES_BYTES = 1024 * 1024
MAX_ATTACHMENTS = 10
_ALLOWED_ROLES = frozenset({"user", "assistant", "tool"})


@dataclass(frozen=True, slots=True)
class FlowTarget:
    """One flow at one version, ready to run."""

    flow: FlowRecord
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
    if not digits.isdigit() or len(digits) > 9:
        raise RequestRejected(ErrorCode.FLOW_NOT_FOUND, f"no flow version {segment!r}")
    return int(digits)


class RunService:
    def __init__(self, store: Store, bus: Bus, flows: FlowCache, *, poll_interval: float = 1.0):
        self._store = store
        self._bus = bus
        self._flows = flows
        self._poll_interval = poll_interval

    async def resolve(self, org: str, project: str, slug: str, version: int | None) -> FlowTarget:
        """Base path: the latest published version, else the draft. 0: the draft. N: version N."""
        flow = await self._store.get_flow(org, project, slug)
        if flow is None:
            raise RequestRejected(ErrorCode.FLOW_NOT_FOUND, f"no flow {org}/{project}/{slug}")
        if version is None:
            published = await self._store.latest_version(flow.id)
            if published is not None:
                return self._target(flow, published.version, 0, published.document)
            return self._target(flow, 0, flow.draft_revision, flow.draft)
        if version == 0:
            return self._target(flow, 0, flow.draft_revision, flow.draft)
        record = await self._store.get_version(flow.id, version)
        if record is None:
            raise RequestRejected(
                ErrorCode.FLOW_NOT_FOUND, f"flow {org}/{project}/{slug} has no version {version}"
            )
        return self._target(flow, version, 0, record.document)

    def _target(self, flow: FlowRecord, version: int, revision: int, document: dict[str, Any]) -> FlowTarget:
        try:
            spec = self._flows.get((flow.id, version, revision), document)
        except FlowValidationError as exc:
            raise RequestRejected(ErrorCode(exc.code), exc.message) from exc
        return FlowTarget(flow, version, revision, document, spec)

    def check_inputs(self, target: FlowTarget, inputs: RunInputs) -> None:
        """Refuse, before any run exists, a request the flow cannot run with."""
        if inputs.messages is not None:
            _check_messages(inputs.messages)
        if inputs.attachments is not None and len(inputs.attachments) > MAX_ATTACHMENTS:
            raise RequestRejected(
                ErrorCode.VALIDATION_ERROR, f"at most {MAX_ATTACHMENTS} attachments are accepted"
            )
        if inputs.message is None and not inputs.messages and target.spec.uses_message():
            raise RequestRejected(
                ErrorCode.MISSING_MESSAGE,
                f"flow '{target.spec.slug}' uses `message` in its templates; send a message",
            )
        if inputs.block_overrides:
            try:
                apply_block_overrides(target.spec, inputs.block_overrides)
            except OverrideError as exc:
                raise RequestRejected(ErrorCode.INVALID_OVERRIDE, str(exc)) from exc

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
    ) -> RunRecord:
        run = await self._store.create_run(
            NewRun(
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
            )
        )
        await self._bus.announce_work()
        return run

    async def execute(
        self,
        target: FlowTarget,
        inputs: RunInputs,
        *,
        trigger: TriggerType = "execute",
        session_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> RunRecord:
        """Create a run and wait for its end. If the caller goes away the run still finishes."""
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
            )
            if run.id != run_id:  # an idempotent repeat: follow the run that already exists
                await subscription.aclose()
                subscription = self._bus.subscribe(run.id)
            return await self.wait_terminal(run.id, subscription)
        finally:
            await subscription.aclose()

    async def wait_terminal(self, run_id: str, subscription: Subscription) -> RunRecord:
        """Wait for the run's terminal event; the store is polled too, so a missed publish (another
        process, a restart) only delays the answer."""
        iterator = aiter(subscription)
        while True:
            run = await self._store.get_run(run_id)
            if run is None:
                raise RequestRejected(ErrorCode.RUN_NOT_FOUND, f"no run {run_id}")
            if run.terminal:
                return run
            deadline = asyncio.get_running_loop().time() + self._poll_interval
            while (remaining := deadline - asyncio.get_running_loop().time()) > 0:
                try:
                    event = await asyncio.wait_for(anext(iterator), remaining)
                except TimeoutError:
                    break
                if event.type in ev.TERMINAL_EVENTS:
                    break


def _check_messages(messages: list[dict[str, Any]]) -> None:
    if len(orjson.dumps(messages)) > MAX_MESSAGES_BYTES:
        raise RequestRejected(ErrorCode.MESSAGES_TOO_LARGE, "messages exceed 1 MiB")
    for index, message in enumerate(messages):
        role = message.get("role")
        if role not in _ALLOWED_ROLES:
            raise RequestRejected(
                ErrorCode.MESSAGES_ROLE_INVALID,
                f"messages[{index}].role is {role!r}; allowed roles: assistant, tool, user",
            )
