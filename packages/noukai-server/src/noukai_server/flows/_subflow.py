"""Flows that call flows: the addresses a flow refers to (its `flow` steps and its agents' `flow:`
tools), how such an address is written, and what is wrong with one.

The references are what the push-time cycle check walks (`runtime/flow_graph.py`) and what the
engine resolves at run time; both read them from here so they cannot disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from noukai_server.flows._spec import FLOW_ADDRESS_PATTERN, AgentStep, FlowSpec, FlowStep

FLOW_TOOL_PREFIX: Final = "flow:"
"""An agent tool named `flow:org/project/slug` runs that flow as a child run."""

_ADDRESS: Final = re.compile(FLOW_ADDRESS_PATTERN)


@dataclass(frozen=True, slots=True)
class FlowAddress:
    """`org/project/slug` of a flow."""

    org: str
    project: str
    slug: str

    @classmethod
    def parse(cls, text: str) -> FlowAddress:
        """ValueError when `text` is not `org/project/slug`."""
        if not _ADDRESS.match(text):
            raise ValueError(f"{text!r} is not a flow address (write 'org/project/slug')")
        org, project, slug = text.split("/")
        return cls(org, project, slug)

    def __str__(self) -> str:
        return f"{self.org}/{self.project}/{self.slug}"


@dataclass(frozen=True, slots=True)
class FlowReference:
    """One place a flow names another: a `flow` step (with its pinned `version`, None for the
    newest) or an agent's `flow:` tool (always the newest)."""

    address: FlowAddress
    version: int | None
    step_id: str


def flow_tool_address(tool: str) -> FlowAddress | None:
    """The flow an agent tool name refers to; None when it is not a `flow:` tool. ValueError for a
    `flow:` tool whose address is malformed."""
    if not tool.startswith(FLOW_TOOL_PREFIX):
        return None
    return FlowAddress.parse(tool.removeprefix(FLOW_TOOL_PREFIX))


def flow_tool_problem(tool: str) -> str | None:
    """What is wrong with a `flow:` agent tool's address, if anything."""
    try:
        flow_tool_address(tool)
    except ValueError as exc:
        return f"{exc}; a flow tool is 'flow:org/project/slug'"
    return None


def flow_references(spec: FlowSpec) -> list[FlowReference]:
    """Every other flow `spec` may run, in step order (malformed `flow:` tools are left out: the
    flow's validation refuses them)."""
    found: list[FlowReference] = []
    for step in spec.steps:
        if isinstance(step, FlowStep):
            found.append(FlowReference(FlowAddress.parse(step.flow), step.version, step.id))
        elif isinstance(step, AgentStep):
            for tool in step.tools:
                try:
                    address = flow_tool_address(tool)
                except ValueError:
                    continue
                if address is not None:
                    found.append(FlowReference(address, None, step.id))
    return found
