"""How a call into the engine ended."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from noukai_server.engine.state import AgentPause


@dataclass(frozen=True, slots=True)
class Completed:
    result: Any


@dataclass(frozen=True, slots=True)
class PausedBetweenSteps:
    """Paced execution stopped after a step; `next_index` is where the next call resumes."""

    completed_step_id: str
    completed_index: int
    next_index: int


@dataclass(frozen=True, slots=True)
class Failed:
    step_id: str
    step_index: int
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class PausedForTools:
    """An agent step called client-side tools; the run waits for the caller's results."""

    step_id: str
    step_index: int
    attempt: int
    pause: AgentPause
    """The conversation so far and the pending tool calls."""


@dataclass(frozen=True, slots=True)
class Yielded:
    """The caller asked the run to stop at the next step boundary (its worker is draining): the
    step before `next_index` is done and checkpointed, and any worker can continue from there."""

    next_index: int


Outcome = Completed | PausedBetweenSteps | Failed | PausedForTools | Yielded


class AwaitingTools(Exception):
    """Raised by the agent executor when the step must wait for client tool results."""

    def __init__(self, pause: AgentPause) -> None:
        super().__init__("waiting for client tool results")
        self.pause = pause


class StepFailure(Exception):
    """Raised inside a step executor; the runner retries the step when `retryable` (a transient
    provider fault) and attempts remain, else turns it into a `step_error` event."""

    def __init__(self, code: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.loop_index: int | None = None
        """The `foreach` iteration that failed, when the step has one."""
