"""Problems found at a document path, turned into FlowIssues that name step, field and line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from noukai_server.flows._errors import FlowErrorCode, FlowIssue, FlowValidationError
from noukai_server.flows._paths import Path, format_path


@dataclass(frozen=True)
class Problem:
    path: Path
    text: str
    # Set for a missing or empty `steps`: the error then carries NO_STEPS rather than INVALID_TREE.
    no_steps: bool = False


class IssueBuilder:
    """Locates problems in one raw document: which step (by index and id), which field, which line."""

    def __init__(self, data: Any, lines: dict[Path, int] | None = None) -> None:
        self._data = data
        self._lines = lines or {}

    def issue(self, problem: Problem) -> FlowIssue:
        path = problem.path
        line = self._line(path)
        if len(path) >= 2 and path[0] == "steps" and isinstance(path[1], int):
            index = path[1]
            step_id = self._step_id(index)
            field = format_path(path[2:]) or None
            where = f"step {step_id!r} (steps[{index}])" if step_id else f"steps[{index}]"
            if field:
                where += f", field {field!r}"
            return FlowIssue(f"{where}: {problem.text}", step_id, index, field, line)
        field = format_path(path) or None
        text = f"field {field!r}: {problem.text}" if field else problem.text
        return FlowIssue(text, None, None, field, line)

    def error(self, problems: list[Problem], *, filename: str | None = None) -> FlowValidationError:
        code: FlowErrorCode = "NO_STEPS" if any(p.no_steps for p in problems) else "INVALID_TREE"
        # Document order: flow-level fields first, then step by step; stable within a step.
        ordered = sorted(problems, key=lambda p: _step_position(p.path))
        return FlowValidationError(code, [self.issue(p) for p in ordered], filename=filename)

    def _step_id(self, index: int) -> str | None:
        steps = self._data.get("steps") if isinstance(self._data, dict) else None
        if isinstance(steps, list) and 0 <= index < len(steps) and isinstance(steps[index], dict):
            step_id = steps[index].get("id")
            if isinstance(step_id, str):
                return step_id
        return None

    def _line(self, path: Path) -> int | None:
        # The deepest part of the path the document has: a missing field points at its step.
        for end in range(len(path), 0, -1):
            line = self._lines.get(path[:end])
            if line is not None:
                return line
        return None


def _step_position(path: Path) -> int:
    if len(path) >= 2 and path[0] == "steps" and isinstance(path[1], int):
        return path[1]
    return -1
