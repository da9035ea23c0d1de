"""A run's parameters bound to the inputs its flow declares: defaults filled in, types checked."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from noukai_server.flows._spec import FlowSpec, input_type_matches, json_type_name


class InputError(Exception):
    """The request's parameters do not fit the flow's declared inputs: the caller's mistake.

    `problems` maps each offending input name to what is wrong with it; `message` names them all.
    """

    def __init__(self, problems: Mapping[str, str]):
        self.problems = dict(problems)
        self.message = "; ".join(self.problems.values())
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


def bind_parameters(spec: FlowSpec, parameters: Mapping[str, Any] | None) -> dict[str, Any]:
    """The parameters a run of `spec` sees; InputError when they do not fit its declared inputs.

    A flow without `inputs` gets its parameters as sent. Otherwise every declared input is present
    in the answer: a missing (or null) optional input takes a copy of its default, or null; a
    missing (or null) required one, or a value of another type, is an error naming the input.
    Undeclared parameters are kept as sent.
    """
    sent = dict(parameters) if parameters is not None else {}
    if not spec.inputs:
        return sent
    problems: dict[str, str] = {}
    for name, declared in spec.inputs.items():
        value = sent.get(name)
        if value is None:
            if declared.is_required:
                problems[name] = (
                    f"missing required input {name!r} ({declared.type}){_described(declared.description)}"
                )
            else:
                sent[name] = copy.deepcopy(declared.default) if declared.has_default else None
        elif not input_type_matches(declared.type, value):
            problems[name] = f"input {name!r} must be of type {declared.type!r}, got {json_type_name(value)}"
    if problems:
        raise InputError(problems)
    return sent


def _described(description: str | None) -> str:
    return f": {description}" if description else ""
