"""The event vocabulary of a run's log.

Wire names the published SDK knows are kept exactly (`run_started`, `step_started`, `step_input`,
`step_output`, `step_completed`, `step_error`, `step_paused`, `step_paused_for_tool_calls`,
`flow_completed`); the others are Noukai additions that older clients drop silently.
"""

from __future__ import annotations

from typing import Final

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

TERMINAL_EVENTS: Final = frozenset({FLOW_COMPLETED, RUN_FAILED, RUN_CANCELLED})
"""The run's last event: nothing follows one of these."""
PAUSE_EVENTS: Final = frozenset({STEP_PAUSED, STEP_PAUSED_FOR_TOOL_CALLS})
"""The run waits for the caller (the next `/step` call, or tool results)."""
SEGMENT_END_EVENTS: Final = TERMINAL_EVENTS | PAUSE_EVENTS
"""Where one `/step` answer ends."""
STEP_BOUNDARY_EVENTS: Final = frozenset({STEP_STARTED, STEP_COMPLETED, STEP_ERROR, STEP_RETRYING})
"""The events that start or end a step attempt."""
