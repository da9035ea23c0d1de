"""Checks a schema cannot express: unique step ids, template syntax, names and step order, registries."""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterator, Mapping

from jinja2 import TemplateSyntaxError

from noukai_server.flows._analysis import inspect_template
from noukai_server.flows._issues import Problem
from noukai_server.flows._paths import Path, step_reference
from noukai_server.flows._spec import AgentStep, PythonStep, StepSpec

CONTEXT_NAMES: tuple[str, ...] = ("message", "messages", "parameters", "attachments", "steps", "run")
LOOP_NAMES: tuple[str, ...] = ("item", "loop")
_PLAIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def duplicate_ids(ids: Mapping[int, str]) -> Iterator[Problem]:
    """Every repeat of a step id, naming where it was first used; `ids` maps step index to raw id."""
    first: dict[str, int] = {}
    for index, step_id in ids.items():
        if step_id in first:
            text = f"duplicate step id {step_id!r}; steps[{first[step_id]}] already uses it"
            yield Problem(("steps", index, "id"), text)
        else:
            first.setdefault(step_id, index)


def template_problems(
    index: int, step: StepSpec, order: Mapping[str, int], inputs: Collection[str] | None = None
) -> Iterator[Problem]:
    """Syntax, unknown names and references to this or later steps, for every template of the step.

    `order` maps each step id to the index of its first step. `inputs` names the flow's declared
    inputs when it declares any: then `parameters.<name>` must read one of them.
    """
    for field, source in step.templates():
        path: Path = ("steps", index, *field)
        try:
            info = inspect_template(source)
        except TemplateSyntaxError as exc:
            yield Problem(path, f"template syntax error at line {exc.lineno}: {exc.message}")
            continue
        # `foreach` and `when` are decided once for the whole step, before any item exists.
        outside = field in (("foreach",), ("when",))
        in_loop = step.foreach is not None and not outside
        for name in sorted(info.names):
            text = _name_problem(name, in_loop=in_loop, before_loop=outside and step.foreach is not None)
            if text:
                yield Problem(path, text)
        for ref in info.step_refs:
            text = _reference_problem(ref, index, order)
            if text:
                yield Problem(path, text)
        if inputs:
            for name in info.parameter_refs:
                if name not in inputs:
                    yield Problem(path, _undeclared_input(name, inputs))


def _name_problem(name: str, *, in_loop: bool, before_loop: bool) -> str | None:
    if name in CONTEXT_NAMES or (in_loop and name in LOOP_NAMES):
        return None
    if name in LOOP_NAMES:
        if before_loop:
            return (
                f"{name!r} cannot be used in 'foreach' or 'when', which are decided once before the loop; "
                "it is defined in the step's other fields"
            )
        return f"{name!r} is only defined in a step with 'foreach'"
    known = CONTEXT_NAMES + (LOOP_NAMES if in_loop else ())
    return f"unknown name {name!r}{_did_you_mean(name, known)}; available: {', '.join(known)}"


def _reference_problem(ref: str, index: int, order: Mapping[str, int]) -> str | None:
    target = order.get(ref)
    where = step_reference(ref)
    if target is None:
        return f"{where} names no step{_did_you_mean(ref, list(order))}"
    if target == index:
        return f"{where} is this step; a step can only read the outputs of earlier steps"
    if target > index:
        return f"{where} is a later step (steps[{target}]); a step can only read the outputs of earlier steps"
    return None


def _undeclared_input(name: str, inputs: Collection[str]) -> str:
    where = f"parameters.{name}" if _PLAIN_NAME.match(name) else f"parameters[{name!r}]"
    return (
        f"{where} is not a declared input{_did_you_mean(name, inputs)}; "
        f"declared inputs: {', '.join(inputs)} (declare it under 'inputs')"
    )


def registry_problems(
    index: int,
    step: StepSpec,
    known_functions: Collection[str] | None,
    known_tools: Collection[str] | None,
) -> Iterator[Problem]:
    """Python functions and agent tools the server does not have, when the caller says what it has."""
    if isinstance(step, PythonStep) and known_functions is not None and step.function not in known_functions:
        text = f"unknown function {step.function!r}{_did_you_mean(step.function, known_functions)}"
        yield Problem(("steps", index, "function"), f"{text}; {_registered(known_functions, 'functions')}")
    if isinstance(step, AgentStep) and known_tools is not None:
        for position, tool in enumerate(step.tools):
            if tool not in known_tools:
                text = f"unknown tool {tool!r}{_did_you_mean(tool, known_tools)}"
                yield Problem(
                    ("steps", index, "tools", position), f"{text}; {_registered(known_tools, 'tools')}"
                )


def _registered(names: Collection[str], what: str) -> str:
    if not names:
        return f"no {what} are registered"
    listed = sorted(names)
    shown = ", ".join(listed[:20]) + (f", … ({len(listed)} in all)" if len(listed) > 20 else "")
    return f"registered {what}: {shown}"


def _did_you_mean(name: str, candidates: Collection[str]) -> str:
    guess = difflib.get_close_matches(name, list(candidates), n=1)
    return f" (did you mean {guess[0]!r}?)" if guess else ""
