"""Checks a schema cannot express: unique step ids, template syntax, names and step order, registries."""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Collection, Iterator, Mapping
from typing import Any

from jinja2 import TemplateSyntaxError

from noukai_server.flows._analysis import inspect_template
from noukai_server.flows._issues import Problem
from noukai_server.flows._paths import Path, step_reference
from noukai_server.flows._spec import AgentStep, LlmStep, PythonStep, StepSpec
from noukai_server.flows._subflow import FLOW_TOOL_PREFIX, flow_tool_problem

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
    *,
    known_providers: Collection[str] | None = None,
    function_signatures: Mapping[str, inspect.Signature] | None = None,
) -> Iterator[Problem]:
    """Python functions and agent tools the server does not have, model providers it does not have
    and python-step arguments the function does not take, when the caller says what it has."""
    if isinstance(step, PythonStep) and known_functions is not None and step.function not in known_functions:
        text = f"unknown function {step.function!r}{_did_you_mean(step.function, known_functions)}"
        yield Problem(("steps", index, "function"), f"{text}; {_registered(known_functions, 'functions')}")
    elif isinstance(step, PythonStep) and function_signatures is not None:
        signature = function_signatures.get(step.function)
        if signature is not None:
            for text in argument_problems(step.function, signature, step.args):
                yield Problem(("steps", index, "args"), text)
    if isinstance(step, LlmStep | AgentStep) and known_providers is not None:
        provider = step.model.partition(":")[0]
        if provider not in known_providers:
            text = (
                f"unknown provider {provider!r} in {step.model!r}{_did_you_mean(provider, known_providers)}"
            )
            yield Problem(
                ("steps", index, "model"),
                f"{text}; available providers: {', '.join(known_providers)} (write 'provider:model')",
            )
    if isinstance(step, AgentStep) and known_tools is not None:
        plain_tools = [t for t in known_tools if not t.startswith(_MCP)]
        mcp_servers = [t.removeprefix(_MCP) for t in known_tools if t.startswith(_MCP)]
        for position, tool in enumerate(step.tools):
            where = ("steps", index, "tools", position)
            if tool.startswith(_MCP):
                problem = _mcp_problem(tool, mcp_servers)
                if problem is not None:
                    yield Problem(where, problem)
            elif tool.startswith(FLOW_TOOL_PREFIX):  # another flow: resolved when the agent runs
                problem = flow_tool_problem(tool)
                if problem is not None:
                    yield Problem(where, problem)
            elif tool not in known_tools:
                text = f"unknown tool {tool!r}{_did_you_mean(tool, plain_tools)}"
                yield Problem(where, f"{text}; {_registered(plain_tools, 'tools')}")


_MCP = "mcp:"
"""`mcp:SERVER` / `mcp:SERVER/tool` name MCP tools; `known_tools` lists each server as `mcp:SERVER`."""


def _mcp_problem(reference: str, servers: Collection[str]) -> str | None:
    """What is wrong with an `mcp:` reference, short of starting the server: its tools are only
    known at run time, so a tool name is checked then."""
    server, slash, tool = reference.removeprefix(_MCP).partition("/")
    if not server or (slash and not tool):
        return f"{reference!r} is not an MCP tool reference (write 'mcp:SERVER' or 'mcp:SERVER/tool')"
    if server in servers:
        return None
    configured = (
        f"configured MCP servers: {', '.join(sorted(servers))}"
        if servers
        else "no MCP servers are configured"
    )
    return (
        f"unknown MCP server {server!r} in {reference!r}{_did_you_mean(server, servers)}; "
        f"{configured} (add one under [mcp.servers.NAME] in noukai.toml)"
    )


def argument_problems(name: str, signature: inspect.Signature, args: Mapping[str, Any]) -> list[str]:
    """What is wrong with calling function `name` (of `signature`) with keyword arguments `args`,
    each naming the function and its expected signature."""
    expected = describe_call(name, signature)
    return [f"{name} {fault}; expected {expected}" for fault in argument_faults(signature, args)]


def argument_faults(signature: inspect.Signature, args: Collection[str]) -> list[str]:
    """Keyword names a function of `signature` does not take (unless it takes **kwargs) and
    required parameters `args` leaves out, e.g. `takes no argument 'secs' (did you mean 'seconds'?)`."""
    parameters = signature.parameters.values()
    by_name = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    named = [p.name for p in parameters if p.kind in by_name]
    faults: list[str] = []
    if not takes_any:
        for arg in args:
            if arg not in named:
                guess = _did_you_mean(arg, [n for n in named if n not in args])
                faults.append(f"takes no argument {arg!r}{guess}")
    for p in parameters:
        if p.default is not inspect.Parameter.empty:
            continue
        if p.kind is inspect.Parameter.POSITIONAL_ONLY:
            faults.append(f"needs {p.name!r}, which cannot be passed by name")
        elif p.kind in by_name and p.name not in args:
            faults.append(f"needs argument {p.name!r} (missing from 'args')")
    return faults


def describe_call(name: str, signature: inspect.Signature) -> str:
    """`name(parameters)` as a flow author reads it, e.g. `time.sleep(seconds: float, value: Any = None)`:
    string annotations (postponed evaluation) are shown as written, the return type is left out."""
    parts: list[str] = []
    keyword_only_marked = False
    for p in signature.parameters.values():
        text = p.name
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            text, keyword_only_marked = f"*{text}", True
        elif p.kind is inspect.Parameter.VAR_KEYWORD:
            text = f"**{text}"
        elif p.kind is inspect.Parameter.KEYWORD_ONLY and not keyword_only_marked:
            parts.append("*")
            keyword_only_marked = True
        if p.annotation is not inspect.Parameter.empty:
            annotation = (
                p.annotation if isinstance(p.annotation, str) else inspect.formatannotation(p.annotation)
            )
            text += f": {annotation}"
        if p.default is not inspect.Parameter.empty:
            text += f" = {p.default!r}"
        parts.append(text)
    return f"{name}({', '.join(parts)})"


def _registered(names: Collection[str], what: str) -> str:
    if not names:
        return f"no {what} are registered"
    listed = sorted(names)
    shown = ", ".join(listed[:20]) + (f", … ({len(listed)} in all)" if len(listed) > 20 else "")
    return f"registered {what}: {shown}"


def _did_you_mean(name: str, candidates: Collection[str]) -> str:
    guess = difflib.get_close_matches(name, list(candidates), n=1)
    return f" (did you mean {guess[0]!r}?)" if guess else ""
