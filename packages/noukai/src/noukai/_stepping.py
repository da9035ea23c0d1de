"""The paced step protocol (`POST .../step`) as a sans-I/O cursor.

A run is read in segments: each `/step` answer streams one step (or, with `run_remaining`, every
remaining step) and ends at `step_paused`, a tool pause or the run's end. `StepDriver` builds each
segment's request from what earlier segments reported and says when the run is over; the flows'
sync and async loops send the requests and read each segment through a `StreamMachine`, so a
segment whose connection breaks is finished from the run's log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from noukai._constants import SEGMENT_END_TYPES, SESSION_HEADER
from noukai._events import (
    FlowCompleted,
    RunCancelled,
    RunFailed,
    RunStarted,
    StepCompleted,
    StepPaused,
    StreamEvent,
    ToolCallsRequired,
)
from noukai._reconnect import ReconnectPolicy, StreamMachine
from noukai._tools import check_rounds
from noukai._transport import Call
from noukai.types.wire import StepRequest


@dataclass
class StepDriver:
    path: str
    """The flow's `/step` path (with its version segment)."""
    request: StepRequest
    """The first call's body; later calls are derived from it."""
    metadata: dict[str, str] | None = None
    """The run's metadata, sent with the first call only (the run keeps it; follow-ups do not
    repeat it)."""
    session_id: str | None = None
    max_tool_rounds: int = 10
    policy: ReconnectPolicy = field(default_factory=ReconnectPolicy)

    execution_id: str | None = field(default=None, init=False)
    last_event_id: int | None = field(default=None, init=False)
    finished: bool = field(default=False, init=False)
    tool_rounds: int = field(default=0, init=False)
    _step_index: int = field(default=0, init=False)
    _outputs: dict[str, Any] = field(default_factory=dict, init=False)
    _next: StepRequest | None = field(default=None, init=False)
    _first: bool = field(default=True, init=False)
    _paused_for_tools: ToolCallsRequired | None = field(default=None, init=False)

    def next_segment(self) -> StreamMachine | None:
        """The next segment to read, or None when the run is over (or abandoned at a tool pause)."""
        if self.finished:
            return None
        if self._first:
            self._first = False
            body = self.request
        elif self._next is not None:
            body, self._next = self._next, None
        else:
            self.finished = True
            return None
        headers = {"Accept": "text/event-stream"}
        if self.session_id is not None:
            headers[SESSION_HEADER] = self.session_id
        json = body.model_dump(by_alias=True, exclude_none=True)
        if body is self.request and self.metadata is not None:
            json["metadata"] = self.metadata
        call = Call("POST", self.path, json=json, headers=headers)
        return StreamMachine(
            first=call,
            execution_id=self.execution_id,
            last_event_id=self.last_event_id,
            stop_after=SEGMENT_END_TYPES,
            policy=self.policy,
        )

    def observe(self, event: StreamEvent, machine: StreamMachine) -> None:
        """Advance the cursor with one event of the current segment."""
        self.last_event_id = machine.last_event_id
        if isinstance(event, RunStarted) and event.execution_id:
            self.execution_id = event.execution_id
        elif isinstance(event, StepCompleted):
            self._outputs[event.step_id] = event.output
            self._step_index += 1
        elif isinstance(event, StepPaused):
            if event.next_step_index is not None:
                self._step_index = event.next_step_index  # the server's cursor is the authority
            self._next = self._follow_up()
        elif isinstance(event, ToolCallsRequired):
            self.execution_id = event.execution_id or self.execution_id
            if event.step_index is not None:
                self._step_index = event.step_index
            self._outputs.update(event.accumulated_outputs)
            self._paused_for_tools = event
        elif isinstance(event, FlowCompleted | RunFailed | RunCancelled):
            self.finished = True
        if self.execution_id is None and machine.execution_id is not None:
            self.execution_id = machine.execution_id

    def check_tool_round(self) -> None:
        """Before running a tool handler: refuse once `max_tool_rounds` rounds were not enough."""
        check_rounds(self.tool_rounds, self.max_tool_rounds, self.execution_id)

    def supply_tool_results(self, results: list[dict[str, Any]]) -> None:
        """Results for the pending tool pause; the next segment sends them."""
        paused = self._paused_for_tools
        if paused is None:
            raise RuntimeError("the run is not paused for tool calls")
        self.check_tool_round()
        self.tool_rounds += 1
        self._paused_for_tools = None
        self._next = self._follow_up(
            tool_call_messages=[*paused.tool_call_messages, *results],
            iterations_used=paused.iterations_used,
        )

    @property
    def paused_for_tools(self) -> ToolCallsRequired | None:
        return self._paused_for_tools

    def _follow_up(
        self, *, tool_call_messages: list[dict[str, Any]] | None = None, iterations_used: int = 0
    ) -> StepRequest:
        first = self.request
        return StepRequest(
            execution_id=self.execution_id,
            step_index=self._step_index,
            accumulated_outputs=dict(self._outputs),
            parameters={},
            input_overrides=first.input_overrides,
            block_overrides=first.block_overrides,
            run_remaining=first.run_remaining,
            tools=first.tools,
            tool_choice=first.tool_choice,
            tool_call_messages=tool_call_messages,
            iterations_used=iterations_used,
            trace=first.trace,
        )
