"""Server-side tools: Python functions the operator registers for `agent` steps.

A tool's JSON schema comes from its signature's type hints (through pydantic), its arguments are
validated against that schema before the call, it runs under a timeout, and anything it raises
becomes an error *message for the model* rather than a failed step: the model can read the error
and try again, which is how tool loops recover from bad arguments.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, get_type_hints

import anyio.to_thread
import orjson
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from noukai_server.engine.tool_source import BoundTool, UnknownTool
from noukai_server.providers import ToolSpec

TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""What OpenAI-compatible APIs accept as a function name."""
ToolFunction = Callable[..., Any] | Callable[..., Awaitable[Any]]


class ToolError(Exception):
    """A tool call failed; the message goes back to the model as the tool's result."""


@dataclass(frozen=True, slots=True)
class ServerTool:
    name: str
    description: str
    function: ToolFunction
    arguments: type[BaseModel]
    timeout_seconds: float

    @property
    def spec(self) -> ToolSpec:
        schema = self.arguments.model_json_schema()
        schema.pop("title", None)
        return ToolSpec(name=self.name, description=self.description, parameters=schema)


def _arguments_model(name: str, function: ToolFunction) -> type[BaseModel]:
    hints = get_type_hints(function)
    fields: dict[str, Any] = {}
    for parameter in inspect.signature(function).parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise TypeError(f"tool {name!r}: *args and **kwargs cannot be described to a model")
        annotation = hints.get(parameter.name, Any)
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[parameter.name] = (annotation, default)
    config = ConfigDict(extra="forbid")
    model: type[BaseModel] = create_model(f"{name}_arguments", __config__=config, **fields)
    return model


class ToolRegistry:
    def __init__(self) -> None:
        self._tools: dict[str, ServerTool] = {}

    def register(
        self,
        function: ToolFunction,
        *,
        name: str | None = None,
        description: str | None = None,
        timeout_seconds: float = 30.0,
    ) -> ServerTool:
        tool_name = name or function.__name__
        if not TOOL_NAME.match(tool_name):
            raise ValueError(f"tool name {tool_name!r} must match {TOOL_NAME.pattern}")
        if tool_name in self._tools:
            raise ValueError(f"a tool named {tool_name!r} is already registered")
        text = description if description is not None else inspect.getdoc(function) or ""
        tool = ServerTool(tool_name, text, function, _arguments_model(tool_name, function), timeout_seconds)
        self._tools[tool_name] = tool
        return tool

    def names(self) -> Iterable[str]:
        return self._tools.keys()

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def get(self, name: str) -> ServerTool:
        return self._tools[name]

    async def resolve(self, reference: str) -> Sequence[BoundTool]:
        """A `ToolSource`: a registered tool's name stands for that one tool."""
        tool = self._tools.get(reference)
        if tool is None:
            raise UnknownTool(f"there is no server-side tool {reference!r}")
        return [BoundTool(tool.name, tool.spec, functools.partial(self.call, tool.name))]

    async def call(self, name: str, arguments_json: str) -> str:
        """Run a tool and return its result as text for the model; raises `ToolError`."""
        tool = self._tools.get(name)
        if tool is None:
            raise ToolError(f"there is no tool named {name!r}")
        try:
            arguments = tool.arguments.model_validate_json(arguments_json or "{}")
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
                for e in exc.errors(include_url=False)
            )
            raise ToolError(f"invalid arguments for {name}: {problems}") from exc
        values = {key: getattr(arguments, key) for key in type(arguments).model_fields}
        try:
            async with asyncio.timeout(tool.timeout_seconds):
                if inspect.iscoroutinefunction(tool.function):
                    result = await tool.function(**values)
                else:
                    # abandon_on_cancel: a timed-out sync tool cannot be interrupted; its thread
                    # is left to finish while the run moves on.
                    result = await anyio.to_thread.run_sync(
                        lambda: tool.function(**values), abandon_on_cancel=True
                    )
        except TimeoutError as exc:
            raise ToolError(f"{name} timed out after {tool.timeout_seconds:g} s") from exc
        except ToolError:
            raise
        except Exception as exc:  # the operator's tool may raise anything
            raise ToolError(f"{name} raised {type(exc).__name__}: {exc}") from exc
        return result if isinstance(result, str) else orjson.dumps(result, default=str).decode()


def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


def word_count(text: str) -> int:
    """Count the words in a text."""
    return len(text.split())


def current_time() -> str:
    """The current UTC time, ISO 8601."""
    return datetime.now(UTC).isoformat()


def default_tools() -> ToolRegistry:
    """The tools every server offers; operators register their own beside these."""
    registry = ToolRegistry()
    for function in (add, word_count, current_time):
        registry.register(function)
    return registry
