"""pydantic validation errors rewritten as located Problems in the flow author's terms."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from noukai_server.flows._issues import Problem
from noukai_server.flows._paths import Path
from noukai_server.flows._spec import INPUT_TYPES, STEP_MODELS, STEP_TYPES, FlowInput, FlowSpec, RetryPolicy

_PATTERN_HELP = {
    "slug": "a slug is 1-64 lowercase letters, digits, '_' or '-', starting with a letter or digit",
    "id": "a step id is 1-64 letters, digits, '_' or '-', starting with a letter",
    "model": "a model is 'provider:model', e.g. 'builtin:echo' or 'openai:gpt-4o-mini'",
    "function": "a function name is a dotted Python name, e.g. 'grading.score'",
    "redact_fields": "a field name is 1-128 letters, digits, '_', '.' or '-'",
    "flow": "a flow address is 'org/project/slug', e.g. 'acme/main/summarise'",
}
_EXPECTED_TYPES = ", ".join(STEP_TYPES)
_INPUT_NAME_HELP = (
    "an input name is 1-64 letters, digits or '_', not starting with a digit, so that templates "
    "can read it as parameters.<name>"
)


def problems_from(error: ValidationError, data: dict[str, Any]) -> list[Problem]:
    """One Problem per pydantic error, at the document path the author wrote."""
    return [_problem(details, data) for details in error.errors(include_url=False)]


def _document_path(loc: tuple[int | str, ...]) -> Path:
    # pydantic puts the union tag into the location (`steps.0.llm.prompt`); the document has no such level.
    if len(loc) >= 3 and loc[0] == "steps" and isinstance(loc[1], int) and loc[2] in STEP_TYPES:
        return (*loc[:2], *loc[3:])
    # ... and `[key]` after a mapping key that failed its own validation (an input's name).
    if loc and loc[-1] == "[key]":
        return tuple(loc[:-1])
    return tuple(loc)


def _problem(details: ErrorDetails, data: dict[str, Any]) -> Problem:
    path = _document_path(details["loc"])
    kind = details["type"]
    value = details.get("input")
    ctx = details.get("ctx") or {}
    if path == ("steps",) and (kind in ("missing", "too_short") or (kind == "list_type" and value is None)):
        return Problem(path, "the flow has no steps; add at least one under 'steps'", no_steps=True)
    if kind == "union_tag_invalid":
        text = f"unknown step type {ctx.get('tag')!r}; expected one of: {_EXPECTED_TYPES}"
        return Problem((*path, "type"), text)
    if kind == "union_tag_not_found":
        return Problem((*path, "type"), f"missing step type; expected one of: {_EXPECTED_TYPES}")
    if kind == "model_attributes_type":
        return Problem(path, f"a step must be a mapping, got {_type_name(value)}")
    if kind == "missing":
        return Problem(path, "required field is missing")
    if kind == "extra_forbidden":
        return Problem(path, _unknown_field(path, data))
    if len(path) == 2 and path[0] == "inputs" and kind in ("model_type", "model_attributes_type"):
        return Problem(path, f"an input must be a mapping such as {{type: string}}, got {_type_name(value)}")
    if path == ("inputs",) and kind == "dict_type":
        return Problem(path, f"inputs must map each input name to its declaration, got {_type_name(value)}")
    if kind == "string_pattern_mismatch" and len(path) == 2 and path[0] == "inputs":
        return Problem(path, f"invalid input name {_short(value)}: {_INPUT_NAME_HELP}")
    if kind == "literal_error" and len(path) == 3 and path[0] == "inputs" and path[2] == "type":
        return Problem(path, f"unknown input type {_short(value)}; expected one of: {', '.join(INPUT_TYPES)}")
    if kind == "string_pattern_mismatch" and path:
        field = path[-2] if isinstance(path[-1], int) and len(path) > 1 else path[-1]
        if field in _PATTERN_HELP:
            return Problem(path, f"invalid value {_short(value)}: {_PATTERN_HELP[str(field)]}")
    if kind == "value_error":
        return Problem(path, str(ctx.get("error", details["msg"])))
    return Problem(path, _reworded(details["msg"], kind, value))


def _unknown_field(path: Path, data: dict[str, Any]) -> str:
    model = _model_at(path, data)
    if model is None:
        return "unknown field"
    allowed = list(model.model_fields)
    guess = difflib.get_close_matches(str(path[-1]), allowed, n=1)
    hint = f"did you mean {guess[0]!r}? " if guess else ""
    return f"unknown field; {hint}allowed: {', '.join(allowed)}"


def _model_at(path: Path, data: dict[str, Any]) -> type[BaseModel] | None:
    if len(path) >= 2 and path[-2] == "retry":
        return RetryPolicy
    if len(path) == 1:
        return FlowSpec
    if len(path) == 3 and path[0] == "inputs":
        return FlowInput
    if len(path) == 3 and path[0] == "steps" and isinstance(path[1], int):
        steps = data.get("steps")
        if isinstance(steps, list) and path[1] < len(steps) and isinstance(steps[path[1]], dict):
            return STEP_MODELS.get(str(steps[path[1]].get("type")))
    return None


def _reworded(msg: str, kind: str, value: Any) -> str:
    text = "must be " + msg.removeprefix("Input should be ") if msg.startswith("Input should be ") else msg
    if kind.endswith("_type"):
        return f"{text}, got {_type_name(value)}"
    if isinstance(value, str | int | float | bool) or value is None:
        return f"{text} (got {_short(value)})"
    return text


def _type_name(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
