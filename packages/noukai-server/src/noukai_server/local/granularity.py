"""How much of a run a stream yields: one switch, checked once, applied to typed events."""

from __future__ import annotations

from typing import Final, Literal, get_args

from noukai._events import StreamEvent
from noukai.types.events import TERMINAL_EVENTS

Granularity = Literal["tokens", "steps", "all"]
"""`"tokens"`: the model's text and reasoning deltas, `foreach` progress, tool pauses and the
run's end. `"steps"`: everything but those deltas (starts, inputs, completions, errors, retries,
tool calls, the run's start and end). `"all"`: every event, as `noukai serve` streams them."""

GRANULARITIES: Final = frozenset(get_args(Granularity))

_DELTAS: Final = frozenset({"step_output", "step_reasoning"})
_TOKEN_VIEW: Final = _DELTAS | {"step_progress", "tool_calls_required"}


def checked_granularity(value: object) -> Granularity:
    """`value` if it names a granularity; ValueError listing the allowed ones otherwise."""
    if value == "tokens" or value == "steps" or value == "all":
        return value
    allowed = ", ".join(sorted(GRANULARITIES))
    raise ValueError(f"granularity must be one of {allowed}; got {value!r}")


def shows(granularity: Granularity, event: StreamEvent) -> bool:
    """Whether a stream of this granularity yields `event` (`event.type` is the SDK's name)."""
    # The terminal events' SDK names are their wire names (only the tool pause is renamed).
    if granularity == "all" or event.type in TERMINAL_EVENTS:
        return True
    if granularity == "tokens":
        return event.type in _TOKEN_VIEW
    return event.type not in _DELTAS
