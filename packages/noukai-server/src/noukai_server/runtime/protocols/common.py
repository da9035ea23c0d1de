"""What every protocol endpoint shares: flows addressed as `org/project/slug[/vN]`, runs started or
resumed with client tool results, one segment of a run's log followed as parsed events, client
tool call ids that name their run, and the answer-step rule.

**The answer step.** A protocol that shows one assistant message per run takes it from the flow's
*answer step*: the flow's last step, when it is an `llm` or `agent` step without `foreach`. Its
token deltas (`step_output`) are the streamed answer, as they come. The complete answer is always
the flow's result (the output of the last step that ran) as text: when the answer step streamed
nothing (it was skipped, the last step is a template or python step, or it loops), the result is
sent whole when the run completes. Earlier steps' tokens are never part of the answer; a protocol
may show them elsewhere (AG-UI: in the state snapshot of step outputs).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

import orjson

from noukai.types import events as ev
from noukai.types.errors import ErrorCode
from noukai_server.bus import Bus
from noukai_server.engine import RunInputs
from noukai_server.engine.state import agent_state
from noukai_server.eventlog.follower import RunEnded, RunEventFollower
from noukai_server.flows import FlowSpec
from noukai_server.runtime.errors import RequestRejected
from noukai_server.runtime.runs import FlowTarget, RunService, parse_version_segment
from noukai_server.store import ApiKeyRecord, FlowRecord, Store

SEGMENT_ENDS: Final = ev.TERMINAL_EVENTS | {ev.STEP_PAUSED_FOR_TOOL_CALLS}
"""Where a protocol request's part of a run ends: the run ended, or it waits for client tools."""

CALL_ID_PREFIX: Final = "call_nk_"
SegmentEvents: TypeAlias = AsyncGenerator[dict[str, Any] | None, None]
_ANSWER_STEP_TYPES: Final = frozenset({"llm", "agent"})


@dataclass(frozen=True, slots=True)
class FlowAddress:
    """A flow as the protocols name it: `org/project/slug`, or `org/project/slug/vN` for one
    version (`v0`, the draft)."""

    org: str
    project: str
    slug: str
    version: int | None = None

    @classmethod
    def parse(cls, model: str) -> FlowAddress:
        parts = model.split("/")
        if len(parts) not in (3, 4) or not all(parts):
            raise RequestRejected(
                ErrorCode.FLOW_NOT_FOUND,
                f"model {model!r} names no flow: use org/project/slug or org/project/slug/vN",
            )
        version = parse_version_segment(parts[3]) if len(parts) == 4 else None
        return cls(parts[0], parts[1], parts[2], version)

    @property
    def model_id(self) -> str:
        base = f"{self.org}/{self.project}/{self.slug}"
        return base if self.version is None else f"{base}/v{self.version}"


def model_id_of(flow: FlowRecord) -> str:
    return f"{flow.org_id}/{flow.project_slug}/{flow.slug}"


def may_run(key: ApiKeyRecord, org: str, project: str) -> None:
    """The key's tenant check (as `api.auth.authorize`): another org's or project's flow is
    refused whether or not it exists."""
    if key.org_id != org:
        raise RequestRejected(ErrorCode.FORBIDDEN, f"this API key cannot access org {org!r}")
    if key.project_slug is not None and key.project_slug != project:
        raise RequestRejected(ErrorCode.FORBIDDEN, f"this API key cannot access project {org}/{project}")


def encode_call_id(run_id: str, seq: int, call_id: str) -> str:
    """The id a client sees for a client tool call: it names the run (so the results find the
    paused run again) and the log entry of the call (so ids never repeat within a conversation,
    even when a model reuses its own ids), then the model's id."""
    return f"{CALL_ID_PREFIX}{uuid.UUID(run_id).hex}_{seq}_{call_id}"


@dataclass(frozen=True, slots=True)
class DecodedCall:
    run_id: str
    seq: int
    call_id: str
    """The model's own id, as the paused run knows the call."""


def decode_call_id(value: str) -> DecodedCall | None:
    """The run and call an `encode_call_id` id names; None for an id this server did not issue."""
    if not value.startswith(CALL_ID_PREFIX):
        return None
    run_hex, _, rest = value[len(CALL_ID_PREFIX) :].partition("_")
    seq, _, call_id = rest.partition("_")
    if len(run_hex) != 32 or not (seq.isascii() and seq.isdigit()) or not call_id:
        return None
    try:
        run_id = str(uuid.UUID(hex=run_hex))
    except ValueError:
        return None
    return DecodedCall(run_id, int(seq), call_id)


def result_text(value: Any) -> str:
    """A flow result as the text of an assistant message: a string as it is, anything else as
    compact JSON, nothing for null."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


class AnswerText:
    """The answer-step rule (module docstring) applied to one segment's events."""

    def __init__(self, spec: FlowSpec) -> None:
        last = spec.steps[-1] if spec.steps else None
        answers = last is not None and last.type in _ANSWER_STEP_TYPES and last.foreach is None
        self.step_index: int | None = len(spec.steps) - 1 if answers else None
        self.streamed = False
        """Whether any answer delta was returned."""

    def delta(self, event: Mapping[str, Any]) -> str | None:
        """The answer's next delta, if this event is one."""
        if (
            event["eventType"] == ev.STEP_OUTPUT
            and event["stepIndex"] == self.step_index
            and "loopIndex" not in event
        ):
            self.streamed = True
            text: str = event["outputData"]
            return text
        return None

    def remainder(self, result: Any) -> str:
        """What the answer still needs once the run has completed: nothing when the answer step
        streamed, else the whole result."""
        return "" if self.streamed else result_text(result)


@dataclass(slots=True)
class Tokens:
    """Tokens of the steps that completed within one segment."""

    prompt: int = 0
    completion: int = 0

    def add(self, event: Mapping[str, Any]) -> None:
        if event["eventType"] == ev.STEP_COMPLETED:
            tokens = event.get("tokens") or {}
            self.prompt += int(tokens.get("prompt", 0))
            self.completion += int(tokens.get("completion", 0))

    @property
    def total(self) -> int:
        return self.prompt + self.completion


class ClientCalls:
    """The client-side tool calls of one segment, under the ids the client sees."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._seqs: dict[str, int] = {}

    def started(self, event: Mapping[str, Any]) -> str:
        """The client's id of a `tool_call_started` event's call (server-side ones keep the
        model's id, prefixed by nothing: they are never answered by the client)."""
        call_id: str = event["toolCallId"]
        if event.get("side") != "client":
            return call_id
        self._seqs[call_id] = int(event["seq"])
        return encode_call_id(self.run_id, int(event["seq"]), call_id)

    def encoded(self, call_id: str, fallback_seq: int) -> str:
        return encode_call_id(self.run_id, self._seqs.get(call_id, fallback_seq), call_id)


@dataclass(slots=True)
class Segment:
    """This request's part of a run: the events after `after`."""

    target: FlowTarget
    run_id: str
    after: int
    outputs: dict[str, Any] = field(default_factory=dict)
    """Outputs of the steps completed before the segment (a resumed run's)."""
    resumed_step: str | None = None
    """The agent step a resume continues (its `step_started` is not repeated)."""


@dataclass(frozen=True, slots=True)
class ToolResult:
    """A client's answer to one tool call, under the id the client was given."""

    tool_call_id: str
    content: str


class ProtocolRuns:
    """Runs as the protocol endpoints use them (one per request; cheap to build)."""

    def __init__(self, store: Store, bus: Bus, runs: RunService, *, heartbeat_seconds: float) -> None:
        self._store = store
        self._bus = bus
        self._runs = runs
        self._heartbeat = heartbeat_seconds

    async def runnable_flows(self, key: ApiKeyRecord) -> list[FlowRecord]:
        """The flows the key may run: its project's, or every project's of its org."""
        return await self._store.list_flows(key.org_id, key.project_slug)

    async def target(self, key: ApiKeyRecord, address: FlowAddress) -> FlowTarget:
        may_run(key, address.org, address.project)
        return await self._runs.resolve(address.org, address.project, address.slug, address.version)

    async def flow_record(self, key: ApiKeyRecord, address: FlowAddress) -> FlowRecord:
        """The flow (and, for `/vN`, the version) the address names, if the key may run it."""
        await self.target(key, address)
        flow = await self._store.get_flow(address.org, address.project, address.slug)
        if flow is None:  # deleted since
            raise RequestRejected(ErrorCode.FLOW_NOT_FOUND, f"no flow {address.model_id}")
        return flow

    async def start(
        self,
        target: FlowTarget,
        inputs: RunInputs,
        *,
        session_id: str | None = None,
        thread_id: str | None = None,
        key: ApiKeyRecord,
        traceparent: str | None = None,
    ) -> Segment:
        """A new run started with `key`; on a server-side thread (`thread_id`), its turn is added
        to the thread's history, which the flow reads. A caller's W3C `traceparent` makes the run's
        trace a child of the caller's span, as on `/execute`."""
        self._runs.check_inputs(target, inputs)
        run = await self._runs.start(
            target,
            inputs,
            trigger="execute",
            session_id=session_id,
            thread_id=thread_id,
            api_key_id=key.id,
            traceparent=traceparent,
        )
        return Segment(target, run.id, 0)

    async def resume(self, target: FlowTarget, key: ApiKeyRecord, results: Sequence[ToolResult]) -> Segment:
        """Hand the paused run its client tool results; the run is found from the ids."""
        decoded = []
        for result in results:
            call = decode_call_id(result.tool_call_id)
            if call is None:
                raise RequestRejected(
                    ErrorCode.EXECUTION_ID_INVALID,
                    f"tool_call_id {result.tool_call_id!r} was not issued by this server",
                )
            decoded.append((call, result.content))
        run_ids = {call.run_id for call, _ in decoded}
        if len(run_ids) != 1:
            raise RequestRejected(
                ErrorCode.TOOL_RESULTS_MISMATCH, "the tool results answer calls of different runs"
            )
        run_id = run_ids.pop()
        run = await self._runs.get_run(run_id, org=key.org_id, project=key.project_id)
        if any(call.seq > run.last_seq for call, _ in decoded):
            raise RequestRejected(ErrorCode.EXECUTION_ID_INVALID, f"no such tool call in run {run_id}")
        messages = [
            {"role": "tool", "tool_call_id": call.call_id, "content": content} for call, content in decoded
        ]
        paused = await self._runs.resume_tools(
            target, org=key.org_id, execution_id=run_id, paused_step=None, messages=messages
        )
        agent = agent_state(paused.state)
        outputs = dict(paused.state.get("outputs") or {})
        return Segment(
            target, paused.id, paused.last_seq, outputs, agent["stepId"] if agent is not None else None
        )

    async def events(self, segment: Segment) -> SegmentEvents:
        """The segment's events, parsed, to its end (`SEGMENT_ENDS`); None after a quiet
        heartbeat interval (time for a keep-alive). Consumers close it (`contextlib.aclosing`),
        so the bus subscription ends with the request, not when the generator is collected."""
        follower = RunEventFollower(self._store, self._bus, segment.run_id, segment.after)
        async with follower:
            while True:
                try:
                    batch = await follower.next_batch(self._heartbeat)
                except RunEnded:
                    return
                if not batch:
                    yield None
                    continue
                for event in batch:
                    payload: dict[str, Any] = orjson.loads(event.data)
                    yield payload
                    if event.type in SEGMENT_ENDS:
                        return
