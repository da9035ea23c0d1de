"""The event vocabulary of a run's log.

Wire names the published SDK knows are kept exactly (`run_started`, `step_started`, `step_input`,
`step_output`, `step_completed`, `step_error`, `step_paused`, `step_paused_for_tool_calls`,
`flow_completed`); the others are Noukai additions that older clients drop silently.

Below the names, the payload schema: one TypedDict per event (`<Name>Payload`, listed by wire name in
`EVENT_PAYLOADS`) describing the log entry's JSON exactly, and `<Name>Fields`, the part the server's
emitters write.
"""

# No `from __future__ import annotations` here: TypedDicts need their annotations evaluated on
# Python 3.11, or `NotRequired` keys would be counted as required (`__required_keys__`).
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final, Literal, NotRequired, TypeAlias

# typing_extensions (a dependency of pydantic) rather than typing: pydantic can validate a
# TypedDict only in that form before Python 3.12.
from typing_extensions import TypedDict

RUN_STARTED: Final = "run_started"
STEP_STARTED: Final = "step_started"
STEP_INPUT: Final = "step_input"
STEP_OUTPUT: Final = "step_output"
"""A text delta of a streaming step (`outputData` is the delta)."""
STEP_REASONING: Final = "step_reasoning"
"""A reasoning delta from a provider that exposes reasoning (`delta`)."""
STEP_PROGRESS: Final = "step_progress"
"""One finished iteration of a `foreach` step (`loopIndex`, `output`)."""
STEP_COMPLETED: Final = "step_completed"
STEP_ERROR: Final = "step_error"
STEP_RETRYING: Final = "step_retrying"
"""A step attempt failed (transiently, or its worker was lost) and the step runs again:
`attempt` is the attempt that ended, `nextAttempt` the one that follows after `backoffMs`."""
STEP_PAUSED: Final = "step_paused"
STEP_PAUSED_FOR_TOOL_CALLS: Final = "step_paused_for_tool_calls"
FLOW_COMPLETED: Final = "flow_completed"
TOOL_CALL_STARTED: Final = "tool_call_started"
"""An agent step's model asked for a tool (`toolCallId`, `name`, `arguments`, `side`)."""
TOOL_CALL_COMPLETED: Final = "tool_call_completed"
"""A tool call's `result` or `error`, with `durationMs` for server-side tools."""
RUN_FAILED: Final = "run_failed"
RUN_CANCELLED: Final = "run_cancelled"
GUARD_TRIPPED: Final = "guard_tripped"
"""A guard's check failed (`input_guards` on the run's input, a step's `guards` on its output):
which guard, of which kind, on what, what happens next (`onFail`) and why."""
SUBFLOW_EVENT: Final = "subflow_event"
"""An event of a child run (a `flow` step's, or an agent's `flow:` tool's), copied into the parent's
log: `event` is the entry as the child's own log holds it, with `childRunId` and `depth`."""
FLOW_TRANSFER: Final = "flow_transfer"
"""An agent step handed one of its tool calls to another flow (`flow:org/project/slug`), run as
the child run `childRunId`."""

TERMINAL_EVENTS: Final = frozenset({FLOW_COMPLETED, RUN_FAILED, RUN_CANCELLED})
"""The run's last event: nothing follows one of these."""
PAUSE_EVENTS: Final = frozenset({STEP_PAUSED, STEP_PAUSED_FOR_TOOL_CALLS})
"""The run waits for the caller (the next `/step` call, or tool results)."""
SEGMENT_END_EVENTS: Final = TERMINAL_EVENTS | PAUSE_EVENTS
"""Where one `/step` answer ends."""
STEP_BOUNDARY_EVENTS: Final = frozenset({STEP_STARTED, STEP_COMPLETED, STEP_ERROR, STEP_RETRYING})
"""The events that start or end a step attempt."""


# --- Payload schema ---------------------------------------------------------------------------------
# One TypedDict per event: the JSON object of a log entry (an SSE frame's `data`) exactly as the
# server writes it, keys camelCase as on the wire. Each event has two: `<Name>Fields`, what the
# emitter writes (the engine for step and tool events, the runtime for run events), and
# `<Name>Payload`, those fields plus the envelope the log writer puts in front of them (`eventType`,
# then `seq`). TypedDicts are plain dicts at run time: building one costs nothing, and
# `mypy --strict` checks every write site against its layout. `NotRequired` keys are written only
# in some cases, said in each key's docstring. `tests/eventlog/test_event_schema.py` validates the
# logs of real runs against these, refusing unknown keys at every depth.


class TokenCounts(TypedDict):
    """Token counts of a step, of one `foreach` iteration or of a whole run."""

    prompt: int
    """Tokens the model read."""
    completion: int
    """Tokens the model wrote."""
    total: int
    """`prompt + completion`."""


class StepErrorDetail(TypedDict):
    """Why a step attempt failed."""

    code: str
    """An `ErrorCode` value, e.g. `"PROVIDER_ERROR"`."""
    message: str
    """A sentence for people, naming the step and what went wrong."""


class RunErrorDetail(TypedDict):
    """Why a run failed (`run_failed`, and the run's stored `error`)."""

    code: str
    """An `ErrorCode` value."""
    message: str
    """A sentence for people."""
    stepId: NotRequired[str]
    """The step that failed; absent when no step did (the flow could not be loaded, or the run
    failed inside the server)."""


class FlowCompletedSummary(TypedDict):
    """Totals of a completed run."""

    stepCount: int
    """Steps in the flow (skipped ones included)."""
    skipped: list[str]
    """Ids of the steps whose `when` was false, in the order they were skipped."""
    tokens: TokenCounts
    """Tokens of every step of the run, over all its attempts."""
    costUsd: str
    """Estimated cost of the run in US dollars, a decimal string with six places (`"0.000150"`)."""


class ToolCallFunction(TypedDict):
    """The function part of an OpenAI-shaped tool call."""

    name: str
    """The tool's name."""
    arguments: str
    """The arguments as the model wrote them: JSON text (not parsed, possibly invalid)."""


class ToolCallRequest(TypedDict):
    """A tool call the model asked for, in the OpenAI shape the caller answers."""

    id: str
    """The call's id; the caller's result names it as `tool_call_id`."""
    type: Literal["function"]
    """Always `"function"`."""
    function: ToolCallFunction
    """Which tool, with which arguments."""


class ConversationMessage(TypedDict):
    """One message of an agent step's conversation, in the OpenAI message shape."""

    role: Literal["user", "assistant", "tool"]
    """`user` (the step's prompt), `assistant` (the model, asking for tools) or `tool` (a result)."""
    content: str | None
    """The text; None for an assistant message that only calls tools."""
    tool_calls: NotRequired[list[ToolCallRequest]]
    """An assistant message's tool calls (only on assistant messages)."""
    tool_call_id: NotRequired[str]
    """The call a `tool` message answers (only on tool messages)."""


class _Seq(TypedDict):
    seq: int
    """The event's position in the run's log: 1, 2, 3 ... without gaps; the SSE frame's `id`."""


class RunRef(TypedDict):
    """The run a run-level event belongs to."""

    runId: str
    """The run's id (a UUID)."""
    executionId: str
    """The same id under the name the published SDK reads."""


class StepRef(TypedDict):
    """The step attempt a step boundary event belongs to."""

    stepId: str
    """The step's `id` in the flow."""
    name: str | None
    """The step's `name` in the flow, None when it has none."""
    stepIndex: int
    """The step's position in the flow, from 0."""
    type: str
    """The step's type: `llm`, `agent`, `template` or `python`."""
    attempt: int
    """The attempt of the step this event belongs to, from 1."""


class StepStreamRef(TypedDict):
    """The step attempt (and `foreach` iteration) a streamed step event belongs to."""

    stepId: str
    """The step's `id` in the flow."""
    stepIndex: int
    """The step's position in the flow, from 0."""
    attempt: int
    """The attempt of the step this event belongs to, from 1."""
    loopIndex: NotRequired[int]
    """The `foreach` iteration, from 0; only for a step with `foreach`."""


class ToolCallRef(TypedDict):
    """The tool call a tool event is about."""

    stepId: str
    """The agent step that called the tool."""
    stepIndex: int
    """That step's position in the flow, from 0."""
    toolCallId: str
    """The call's id, as the model gave it (the same in the call's started and completed events)."""
    name: str
    """The tool's name."""
    side: Literal["server", "client"]
    """`server`: a tool the server runs (the step names it); `client`: one of the request's tools,
    run by the caller while the run waits."""


class RunStartedFields(RunRef):
    """`run_started`: the first event of every run."""

    flowId: str
    """The flow's id."""
    stepCount: int
    """Steps in the flow."""
    flowVersion: int
    """The flow version the run executes; 0 for the draft."""
    triggerType: str
    """Which endpoint started the run: `execute`, `step` or `job`."""


class StepStartedFields(StepRef):
    """`step_started`: a step attempt begins (each attempt of a retried step has its own; a resumed
    agent step does not repeat it)."""


class StepInputFields(StepStreamRef):
    """`step_input`: what a model or function step was given."""

    inputData: dict[str, Any]
    """The step's input as far as the flow's `trace_capture_mode` lets the log keep it: always
    `model` (with `serverTools` and `clientTools` for an agent) or `function`; `prompt` and
    `system`, or `args`, only for the `full` and `redacted` modes (redacted: secrets masked)."""
    inputSizeBytes: int
    """Size in bytes of the whole input as compact JSON, whatever was kept of it."""


class StepOutputFields(StepStreamRef):
    """`step_output`: a text delta of a streaming model step."""

    outputData: str
    """The delta (never empty)."""


class StepReasoningFields(StepStreamRef):
    """`step_reasoning`: a reasoning delta, from providers that expose their reasoning."""

    delta: str
    """The reasoning text of this delta."""


class StepProgressFields(TypedDict):
    """`step_progress`: one iteration of a `foreach` step finished."""

    stepId: str
    """The step's `id` in the flow."""
    stepIndex: int
    """The step's position in the flow, from 0."""
    attempt: int
    """The step's attempt, from 1."""
    loopIndex: int
    """The iteration that finished, from 0."""
    output: Any
    """The iteration's output (any JSON value)."""
    durationMs: int
    """How long the iteration took, in milliseconds."""
    tokens: TokenCounts
    """The iteration's tokens."""
    costUsd: str
    """The iteration's estimated cost in US dollars, six decimal places."""
    model: NotRequired[str]
    """`provider:model` that answered; only for model steps."""


class StepCompletedFields(StepRef):
    """`step_completed`: a step attempt succeeded, or the step was skipped."""

    output: Any
    """The step's output (any JSON value); None for a skipped step."""
    skipped: NotRequired[bool]
    """Present, and true, only when the step's `when` was false and it did not run."""
    durationMs: int
    """How long the attempt took, in milliseconds (0 when skipped)."""
    tokens: TokenCounts
    """The attempt's tokens (every iteration of a `foreach` step)."""
    costUsd: str
    """The attempt's estimated cost in US dollars, six decimal places (`"0.000150"`)."""
    model: NotRequired[str]
    """`provider:model` that answered; only for model steps that ran."""


class StepErrorFields(StepRef):
    """`step_error`: a step failed for good (`run_failed` follows)."""

    error: StepErrorDetail
    """Why it failed."""
    durationMs: NotRequired[int]
    """How long the failed attempt ran, in milliseconds; absent when the attempt was lost with its
    worker."""
    loopIndex: NotRequired[int]
    """The `foreach` iteration that failed; only for a step with `foreach`."""


class StepRetryingFields(StepErrorFields):
    """`step_retrying`: a step attempt failed transiently (or was lost with its worker) and the step
    runs again; `attempt` is the attempt that ended."""

    nextAttempt: int
    """The attempt that follows."""
    backoffMs: int
    """The wait before it, in milliseconds (0 after a lost worker)."""


class StepPausedFields(RunRef):
    """`step_paused`: the paced `/step` protocol stopped after a step; the next `/step` call goes on."""

    stepId: str
    """The step that just completed."""
    stepIndex: int
    """Its position in the flow, from 0."""
    nextStepIndex: int
    """The `stepIndex` the next `/step` call must send."""


class StepPausedForToolCallsFields(RunRef):
    """`step_paused_for_tool_calls`: an agent step called client-side tools; the run waits for the
    caller's results (send `toolCallMessages` plus one `tool` message per call)."""

    stepId: str
    """The paused agent step."""
    stepIndex: int
    """Its position in the flow, from 0."""
    attempt: int
    """The step's attempt (the resumed step continues it)."""
    iterationsUsed: int
    """Model calls the step has made so far (its `max_iterations` bounds them)."""
    toolCallMessages: list[ConversationMessage]
    """The step's conversation so far, ending with the assistant message that calls the tools."""
    toolCalls: list[ToolCallRequest]
    """The client-side calls waiting for a result."""
    accumulatedOutputs: dict[str, Any]
    """Outputs of the steps completed so far, by step id."""


class ToolCallStartedFields(ToolCallRef):
    """`tool_call_started`: an agent step's model asked for a tool."""

    arguments: str
    """The arguments as the model wrote them: JSON text."""


class ToolCallCompletedFields(ToolCallRef):
    """`tool_call_completed`: a tool call has its result (the model reads it next)."""

    result: NotRequired[str]
    """The tool's result as text; absent when the call failed."""
    error: NotRequired[str]
    """Why a server-side call failed (the model reads it as the result); absent on success."""
    durationMs: NotRequired[int]
    """How long the call took, in milliseconds: the tool's run time (server side) or how long the
    caller took to answer (client side; absent when that time is unknown)."""


class SubflowEventFields(TypedDict):
    """`subflow_event`: one entry of a child run's log, as the parent's log carries it."""

    parentStepId: str
    """The step of the run whose log this is that started the child (for a grandchild's events:
    the step of the child that started it)."""
    childRunId: str
    """The run whose event this is: its own log holds the same entry at `event.seq`."""
    flow: str
    """That run's flow, `org/project/slug`."""
    depth: int
    """That run's nesting depth, counted from the run started by a request: 1 for its child, 2 for
    a grandchild (a grandchild's events reach the top run's log unchanged, depth 2)."""
    event: dict[str, Any]
    """The child's entry itself (`eventType`, its own `seq`, and its payload)."""


class FlowTransferFields(TypedDict):
    """`flow_transfer`: an agent step's tool call runs another flow."""

    stepId: str
    """The agent step."""
    stepIndex: int
    attempt: int
    toolCallId: str
    """The tool call the flow answers (its `tool_call_started` has the same id)."""
    childRunId: str
    """The child run that runs the flow; its events follow as `subflow_event`."""
    flow: str
    """The flow's address, `org/project/slug`."""


class GuardTrippedFields(TypedDict):
    """`guard_tripped`: a guard's check failed; `onFail` says what follows (`fail`: `step_error`
    or `run_failed` with `GUARD_FAILED`; `retry`: `step_retrying`; `replace`: the run goes on with
    the guard's `replacement`)."""

    guard: str
    """The guard's `name`."""
    kind: Literal["condition", "schema", "regex", "function", "judge"]
    """Its kind of check."""
    target: Literal["input", "step"]
    """`input`: one of the run's inputs (an `input_guards` entry); `step`: a step's output."""
    onFail: Literal["fail", "retry", "replace"]
    """The guard's `on_fail`."""
    reason: str
    """Why the check failed, for people (a judge's reason when it gave one)."""
    input: NotRequired[str]
    """The input checked, `message` or `parameters.<name>`; only when `target` is `input`."""
    stepId: NotRequired[str]
    """The step whose output was checked; only when `target` is `step`."""
    stepIndex: NotRequired[int]
    """That step's position in the flow, from 0; only when `target` is `step`."""
    attempt: NotRequired[int]
    """That step's attempt, from 1; only when `target` is `step`."""


class FlowCompletedFields(RunRef):
    """`flow_completed`: the run finished; nothing follows."""

    result: Any
    """The run's result: the output of the last step that ran."""
    summary: FlowCompletedSummary
    """Totals of the run."""


class RunFailedFields(RunRef):
    """`run_failed`: the run failed; nothing follows."""

    error: RunErrorDetail
    """Why."""


class RunCancelledFields(RunRef):
    """`run_cancelled`: the run was cancelled; nothing follows."""


class RunStartedPayload(_Seq, RunStartedFields):
    """A `run_started` entry of the log, as on the wire."""

    eventType: Literal["run_started"]


class StepStartedPayload(_Seq, StepStartedFields):
    """A `step_started` entry of the log, as on the wire."""

    eventType: Literal["step_started"]


class StepInputPayload(_Seq, StepInputFields):
    """A `step_input` entry of the log, as on the wire."""

    eventType: Literal["step_input"]


class StepOutputPayload(_Seq, StepOutputFields):
    """A `step_output` entry of the log, as on the wire."""

    eventType: Literal["step_output"]


class StepReasoningPayload(_Seq, StepReasoningFields):
    """A `step_reasoning` entry of the log, as on the wire."""

    eventType: Literal["step_reasoning"]


class StepProgressPayload(_Seq, StepProgressFields):
    """A `step_progress` entry of the log, as on the wire."""

    eventType: Literal["step_progress"]


class StepCompletedPayload(_Seq, StepCompletedFields):
    """A `step_completed` entry of the log, as on the wire."""

    eventType: Literal["step_completed"]


class StepErrorPayload(_Seq, StepErrorFields):
    """A `step_error` entry of the log, as on the wire."""

    eventType: Literal["step_error"]


class StepRetryingPayload(_Seq, StepRetryingFields):
    """A `step_retrying` entry of the log, as on the wire."""

    eventType: Literal["step_retrying"]


class StepPausedPayload(_Seq, StepPausedFields):
    """A `step_paused` entry of the log, as on the wire."""

    eventType: Literal["step_paused"]


class StepPausedForToolCallsPayload(_Seq, StepPausedForToolCallsFields):
    """A `step_paused_for_tool_calls` entry of the log, as on the wire."""

    eventType: Literal["step_paused_for_tool_calls"]


class ToolCallStartedPayload(_Seq, ToolCallStartedFields):
    """A `tool_call_started` entry of the log, as on the wire."""

    eventType: Literal["tool_call_started"]


class ToolCallCompletedPayload(_Seq, ToolCallCompletedFields):
    """A `tool_call_completed` entry of the log, as on the wire."""

    eventType: Literal["tool_call_completed"]


class SubflowEventPayload(_Seq, SubflowEventFields):
    """A `subflow_event` entry of the log, as on the wire."""

    eventType: Literal["subflow_event"]


class FlowTransferPayload(_Seq, FlowTransferFields):
    """A `flow_transfer` entry of the log, as on the wire."""

    eventType: Literal["flow_transfer"]


class GuardTrippedPayload(_Seq, GuardTrippedFields):
    """A `guard_tripped` entry of the log, as on the wire."""

    eventType: Literal["guard_tripped"]


class FlowCompletedPayload(_Seq, FlowCompletedFields):
    """A `flow_completed` entry of the log, as on the wire."""

    eventType: Literal["flow_completed"]


class RunFailedPayload(_Seq, RunFailedFields):
    """A `run_failed` entry of the log, as on the wire."""

    eventType: Literal["run_failed"]


class RunCancelledPayload(_Seq, RunCancelledFields):
    """A `run_cancelled` entry of the log, as on the wire."""

    eventType: Literal["run_cancelled"]


EventFields: TypeAlias = (
    RunStartedFields
    | StepStartedFields
    | StepInputFields
    | StepOutputFields
    | StepReasoningFields
    | StepProgressFields
    | StepCompletedFields
    | StepErrorFields
    | StepRetryingFields
    | StepPausedFields
    | StepPausedForToolCallsFields
    | ToolCallStartedFields
    | ToolCallCompletedFields
    | SubflowEventFields
    | FlowTransferFields
    | GuardTrippedFields
    | FlowCompletedFields
    | RunFailedFields
    | RunCancelledFields
)
"""What an emitter hands the log writer for any event (the writer adds `eventType` and `seq`)."""

EventPayload: TypeAlias = (
    RunStartedPayload
    | StepStartedPayload
    | StepInputPayload
    | StepOutputPayload
    | StepReasoningPayload
    | StepProgressPayload
    | StepCompletedPayload
    | StepErrorPayload
    | StepRetryingPayload
    | StepPausedPayload
    | StepPausedForToolCallsPayload
    | ToolCallStartedPayload
    | ToolCallCompletedPayload
    | SubflowEventPayload
    | FlowTransferPayload
    | GuardTrippedPayload
    | FlowCompletedPayload
    | RunFailedPayload
    | RunCancelledPayload
)
"""Any entry of a run's log; `eventType` tells them apart."""

EVENT_PAYLOADS: Final[Mapping[str, type]] = MappingProxyType(
    {
        RUN_STARTED: RunStartedPayload,
        STEP_STARTED: StepStartedPayload,
        STEP_INPUT: StepInputPayload,
        STEP_OUTPUT: StepOutputPayload,
        STEP_REASONING: StepReasoningPayload,
        STEP_PROGRESS: StepProgressPayload,
        STEP_COMPLETED: StepCompletedPayload,
        STEP_ERROR: StepErrorPayload,
        STEP_RETRYING: StepRetryingPayload,
        STEP_PAUSED: StepPausedPayload,
        STEP_PAUSED_FOR_TOOL_CALLS: StepPausedForToolCallsPayload,
        TOOL_CALL_STARTED: ToolCallStartedPayload,
        TOOL_CALL_COMPLETED: ToolCallCompletedPayload,
        SUBFLOW_EVENT: SubflowEventPayload,
        FLOW_TRANSFER: FlowTransferPayload,
        GUARD_TRIPPED: GuardTrippedPayload,
        FLOW_COMPLETED: FlowCompletedPayload,
        RUN_FAILED: RunFailedPayload,
        RUN_CANCELLED: RunCancelledPayload,
    }
)
"""Every wire event name of the vocabulary, with the TypedDict of its payload."""
