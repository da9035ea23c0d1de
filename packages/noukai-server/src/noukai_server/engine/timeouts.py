"""Which timeout a step attempt runs under: every step has one.

The step's own `timeout_seconds`, else its flow's `step_timeout_seconds`, else the server's
default; never more than the server's maximum. A value above the maximum is clamped rather than
refused at push: the maximum is the operator's to change at any time, and a flow pushed under a
larger one must still run (bounded) after it is lowered.
"""

from __future__ import annotations

from dataclasses import dataclass

from noukai_server.flows import FlowSpec, StepSpec

DEFAULT_STEP_TIMEOUT_SECONDS = 300.0
"""`[limits] step_timeout_seconds` unless configured: a model call or tool that has not answered
in five minutes is hung, not slow."""
DEFAULT_MAX_STEP_TIMEOUT_SECONDS = 3600.0
"""`[limits] max_step_timeout_seconds` unless configured."""


@dataclass(frozen=True, slots=True)
class StepTimeouts:
    default_seconds: float = DEFAULT_STEP_TIMEOUT_SECONDS
    max_seconds: float = DEFAULT_MAX_STEP_TIMEOUT_SECONDS

    def __post_init__(self) -> None:
        if not 0 < self.default_seconds <= self.max_seconds:
            raise ValueError(
                f"the step timeout ({self.default_seconds:g} s) must be positive and at most "
                f"the maximum ({self.max_seconds:g} s)"
            )

    def for_step(self, flow: FlowSpec, step: StepSpec) -> StepTimeout:
        if step.timeout_seconds is not None:
            seconds, source = step.timeout_seconds, "its timeout_seconds"
        elif flow.step_timeout_seconds is not None:
            seconds, source = flow.step_timeout_seconds, "the flow's step_timeout_seconds"
        else:
            seconds, source = self.default_seconds, "the server's step timeout"
        if seconds > self.max_seconds:
            seconds, source = self.max_seconds, "the server's maximum step timeout"
        return StepTimeout(seconds, source)


@dataclass(frozen=True, slots=True)
class StepTimeout:
    seconds: float
    source: str
    """Where it came from, for the STEP_TIMEOUT message: `its timeout_seconds`, ..."""
