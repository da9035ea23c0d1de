"""Where an agent step's server-side tools come from.

A step's `tools:` entries are *references*; a `ToolSource` turns the references it owns into the
tools the model sees (`BoundTool`: a name, a spec and how to call it). The operator's
`ToolRegistry` owns plain tool names; the MCP client owns `mcp:SERVER` and `mcp:SERVER/tool`.
The agent loop resolves a step's references through `ToolSources` at the start of each run (and
resume), so it never needs to know which kind of tool it is calling.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from noukai_server.providers import ToolSpec


class ToolUnavailable(Exception):
    """A reference cannot be resolved now (e.g. its MCP server does not start); the step fails,
    and may be retried."""


class UnknownTool(ToolUnavailable):
    """A reference names a tool that does not exist; the flow is wrong, a retry will not help."""


@dataclass(frozen=True, slots=True)
class BoundTool:
    name: str
    """The name the model sees and calls (matches `TOOL_NAME`)."""
    spec: ToolSpec
    call: Callable[[str], Awaitable[str]]
    """Run the tool with the model's JSON arguments; the result is text for the model. Raises
    `ToolError` (its message goes back to the model)."""


class ToolSource(Protocol):
    def names(self) -> Iterable[str]:
        """The references a flow may use, as checked at push (e.g. `add`, `mcp:files`)."""
        ...

    def __contains__(self, reference: object) -> bool:
        """Whether this source owns `reference` (an entry of an agent step's `tools:`)."""
        ...

    async def resolve(self, reference: str) -> Sequence[BoundTool]:
        """The tools `reference` stands for; raises `ToolUnavailable` or `UnknownTool`."""
        ...


class ToolSources:
    """Several sources as one: a reference belongs to the first source that owns it."""

    def __init__(self, *sources: ToolSource) -> None:
        self._sources = sources

    def names(self) -> Iterable[str]:
        return [name for source in self._sources for name in source.names()]

    def __contains__(self, reference: object) -> bool:
        return any(reference in source for source in self._sources)

    async def resolve(self, reference: str) -> Sequence[BoundTool]:
        for source in self._sources:
            if reference in source:
                return await source.resolve(reference)
        raise UnknownTool(f"there is no server-side tool {reference!r}")


async def resolve_all(source: ToolSource, references: Sequence[str]) -> dict[str, BoundTool]:
    """The tools of every reference, by the name the model calls; a name two references share
    (`mcp:files` and `mcp:files/read`) is offered once."""
    tools: dict[str, BoundTool] = {}
    for reference in references:
        for tool in await source.resolve(reference):
            tools.setdefault(tool.name, tool)
    return tools
