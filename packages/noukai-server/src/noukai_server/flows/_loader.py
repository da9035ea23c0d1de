"""load_flow: source text or data to a validated FlowSpec, with every problem reported at once."""

from __future__ import annotations

import inspect
import os
from collections.abc import Collection, Mapping
from pathlib import Path as FilePath
from typing import Any

from pydantic import TypeAdapter, ValidationError

from noukai_server.flows._checks import duplicate_ids, registry_problems, template_problems
from noukai_server.flows._errors import FlowIssue, FlowValidationError
from noukai_server.flows._guards import (
    GuardRegistries,
    guard_problems,
    input_guard_problems,
    valid_input_guards,
)
from noukai_server.flows._issues import IssueBuilder, Problem
from noukai_server.flows._paths import Path
from noukai_server.flows._source import parse_source
from noukai_server.flows._spec import FlowSpec, StepSpec
from noukai_server.flows._translate import problems_from

_STEP = TypeAdapter[StepSpec](StepSpec)


def load_flow(
    source: str | bytes | Mapping[str, Any],
    *,
    filename: str | None = None,
    known_functions: Collection[str] | None = None,
    known_tools: Collection[str] | None = None,
    known_providers: Collection[str] | None = None,
    function_signatures: Mapping[str, inspect.Signature] | None = None,
) -> FlowSpec:
    """Parse and validate a flow (YAML, JSON, or already-parsed data); FlowValidationError if invalid.

    YAML is the default (JSON is valid YAML); a `.json` filename selects the JSON parser. When
    known_functions / known_tools are given, python steps and agent tools must name one of them;
    when known_providers is, models must name one of them; when function_signatures is, a python
    step's `args` must fit its function's signature.
    """
    parsed = parse_source(source, filename=filename)
    return validate_document(
        parsed.data,
        lines=parsed.lines,
        filename=filename,
        known_functions=known_functions,
        known_tools=known_tools,
        known_providers=known_providers,
        function_signatures=function_signatures,
    )


def load_flow_file(
    path: str | os.PathLike[str],
    *,
    filename: str | None = None,
    known_functions: Collection[str] | None = None,
    known_tools: Collection[str] | None = None,
) -> FlowSpec:
    """load_flow on a file's bytes; errors name the file (or `filename`, when given)."""
    file = FilePath(path)
    name = filename or str(file)
    try:
        content = file.read_bytes()
    except OSError as exc:
        issue = FlowIssue(f"cannot read flow file: {exc.strerror or exc}")
        raise FlowValidationError("INVALID_TREE", [issue], filename=name) from exc
    return load_flow(content, filename=name, known_functions=known_functions, known_tools=known_tools)


def validate_document(
    data: Any,
    *,
    lines: dict[Path, int] | None = None,
    filename: str | None = None,
    known_functions: Collection[str] | None = None,
    known_tools: Collection[str] | None = None,
    known_providers: Collection[str] | None = None,
    function_signatures: Mapping[str, inspect.Signature] | None = None,
) -> FlowSpec:
    """Validate parsed data: schema first, then the static checks on every step that has a valid shape."""
    builder = IssueBuilder(data, lines)
    if data is None:
        problem = Problem((), "flow document is empty; it needs at least 'slug' and 'steps'", no_steps=True)
        raise builder.error([problem], filename=filename)
    if not isinstance(data, dict):
        problem = Problem((), f"a flow document must be a mapping, got {type(data).__name__}")
        raise builder.error([problem], filename=filename)

    problems: list[Problem] = []
    spec: FlowSpec | None = None
    try:
        spec = FlowSpec.model_validate(data)
    except ValidationError as exc:
        problems.extend(problems_from(exc, data))

    raw_steps = data.get("steps")
    raw_steps = raw_steps if isinstance(raw_steps, list) else []
    ids = {
        index: raw["id"]
        for index, raw in enumerate(raw_steps)
        if isinstance(raw, dict) and isinstance(raw.get("id"), str)
    }
    problems.extend(duplicate_ids(ids))
    order: dict[str, int] = {}
    for index, step_id in ids.items():
        order.setdefault(step_id, index)
    inputs = _declared_inputs(spec, data)
    registries = GuardRegistries(
        known_functions=known_functions,
        known_providers=known_providers,
        function_signatures=function_signatures,
    )
    # Steps whose shape is wrong were reported above; the others are still checked, so one run shows all.
    for index, step in _valid_steps(spec, raw_steps):
        problems.extend(template_problems(index, step, order, inputs))
        problems.extend(
            registry_problems(
                index,
                step,
                known_functions,
                known_tools,
                known_providers=known_providers,
                function_signatures=function_signatures,
            )
        )
        if step.guards:  # guards: flows/_guards.py
            problems.extend(guard_problems(index, step.guards, order, inputs, **registries))
    input_guards = spec.input_guards if spec is not None else valid_input_guards(data.get("input_guards"))
    if input_guards:
        problems.extend(input_guard_problems(input_guards, inputs, **registries))

    if problems or spec is None:
        raise builder.error(problems, filename=filename)
    return spec


def _valid_steps(spec: FlowSpec | None, raw_steps: list[Any]) -> list[tuple[int, StepSpec]]:
    if spec is not None:
        return list(enumerate(spec.steps))
    valid: list[tuple[int, StepSpec]] = []
    for index, raw in enumerate(raw_steps):
        try:
            valid.append((index, _STEP.validate_python(raw)))
        except ValidationError:
            continue
    return valid


def _declared_inputs(spec: FlowSpec | None, data: dict[str, Any]) -> list[str]:
    """Names of the declared inputs; from the raw document when the flow is invalid elsewhere."""
    if spec is not None:
        return list(spec.inputs)
    raw = data.get("inputs")
    return [name for name in raw if isinstance(name, str)] if isinstance(raw, dict) else []
