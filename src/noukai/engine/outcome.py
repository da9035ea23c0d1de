"""How a call into the engine ended."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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


Outcome = Completed | PausedBetweenSteps | Failed


class StepFailure(Exception):
    """Raised inside a step executor; the runner turns it into a `step_error` event."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
