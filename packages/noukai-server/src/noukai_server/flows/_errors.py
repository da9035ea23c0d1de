"""Exceptions of the flow language, each saying whose mistake it was.

FlowValidationError   the flow document is wrong (the flow author's mistake); code INVALID_TREE | NO_STEPS
TemplateError         a template failed to compile or render (the author's template, or the run's input)
OverrideError         a request's blockOverrides do not fit the flow (the caller's mistake)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, Literal

FlowErrorCode = Literal["INVALID_TREE", "NO_STEPS"]


@dataclass(frozen=True)
class FlowIssue:
    """One problem in a flow document, located as precisely as the document allows."""

    message: str
    step_id: str | None = None
    step_index: int | None = None
    field: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        # Document-level problems (bad YAML) already say where they are; only located ones get a prefix.
        located = self.step_index is not None or self.field is not None
        if self.line is not None and located:
            return f"line {self.line}: {self.message}"
        return self.message


class FlowValidationError(Exception):
    """The flow document is invalid: the flow author's mistake.

    `issues` holds every problem found, not only the first; `message` (also `str(err)`) sums them up.
    """

    def __init__(self, code: FlowErrorCode, issues: Iterable[FlowIssue], *, filename: str | None = None):
        self.code: FlowErrorCode = code
        self.issues: list[FlowIssue] = list(issues)
        self.filename = filename
        self.message = _summarise(self.issues, filename)
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


def _summarise(issues: list[FlowIssue], filename: str | None) -> str:
    prefix = f"{filename}: " if filename else ""
    if len(issues) == 1:
        return f"{prefix}{issues[0]}"
    lines = "\n".join(f"- {issue}" for issue in issues)
    return f"{prefix}flow has {len(issues)} problems:\n{lines}"


class TemplateError(Exception):
    """A template could not be compiled or rendered: the template's or the run input's mistake.

    `field` names where the template lives when known (a step field, or a path inside a structure).
    """

    def __init__(self, message: str, *, field: str | None = None):
        self.message = message
        self.field = field
        super().__init__(message)

    def __str__(self) -> str:
        return f"field '{self.field}': {self.message}" if self.field else self.message


class OverrideError(Exception):
    """A request's blockOverrides name an unknown step, a field that cannot be overridden, or a bad value.

    The caller's mistake; answered with INVALID_OVERRIDE.
    """

    code: ClassVar[Literal["INVALID_OVERRIDE"]] = "INVALID_OVERRIDE"

    def __init__(self, message: str, *, step_id: str | None = None, field: str | None = None):
        self.message = message
        self.step_id = step_id
        self.field = field
        super().__init__(message)

    def __str__(self) -> str:
        return self.message
