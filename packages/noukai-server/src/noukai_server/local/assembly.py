"""What runs an in-process flow: the server's engine, built from the same parts as `noukai serve`
builds it (`runtime/assembly.py`), and the flow checked as a push to that server would check it.

The parts come from an optional `noukai.toml` (its providers, `[functions]`, `[tools]`,
`[mcp.servers]` and step limits) and from the caller's own functions, tools, providers and MCP
servers, registered beside them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from noukai_server.config import ServerConfig
from noukai_server.engine import FlowEngine, FunctionRegistry, StepTimeouts, ToolRegistry
from noukai_server.engine.tool_source import ToolSources
from noukai_server.flows import FlowSpec, TemplateEngine
from noukai_server.mcp.config import McpServerConfig
from noukai_server.mcp.tools import McpTools
from noukai_server.providers import ModelRegistry
from noukai_server.providers.registry import NamedProvider
from noukai_server.settings import load_server_config
from noukai_server.settings.extensions import build_registries

ToolsOption = Mapping[str, Callable[..., Any]] | Iterable[Callable[..., Any]]
"""Server-side tools for agent steps: by name, or functions registered under their own names."""


@dataclass(slots=True)
class EngineParts:
    """The engine and what it was built from (closed together by `aclose`, on the engine's loop)."""

    engine: FlowEngine
    models: ModelRegistry
    functions: FunctionRegistry
    mcp: McpTools
    known_tools: frozenset[str]
    max_run_seconds: float

    def check_options(self) -> dict[str, Any]:
        """The `flows.load_flow` checks a push to a server with these parts applies."""
        return {
            "known_functions": frozenset(self.functions.names()),
            "known_tools": self.known_tools,
            "known_providers": tuple(self.models.providers()),
            "function_signatures": self.functions.signatures(),
        }

    def run_seconds(self, spec: FlowSpec) -> float:
        """The flow's `run_timeout_seconds`, clamped to the configured maximum (its default)."""
        wanted = spec.run_timeout_seconds
        return self.max_run_seconds if wanted is None else min(wanted, self.max_run_seconds)

    async def aclose(self) -> None:
        await self.mcp.aclose()
        await self.models.aclose()


def read_config(config: str | os.PathLike[str] | None) -> ServerConfig:
    """The settings of `config` (a noukai.toml; `ConfigError` when it is wrong), else the defaults.
    Without a file nothing is read from the working directory: an in-process flow uses only what
    its caller names (and the provider keys of the environment, as the server does)."""
    if config is None:
        return ServerConfig()
    return load_server_config(Path(config))


def build_parts(
    config: ServerConfig,
    *,
    functions: Mapping[str, Callable[..., Any]] | None = None,
    tools: ToolsOption | None = None,
    providers: Mapping[str, NamedProvider] | None = None,
    mcp_servers: Mapping[str, McpServerConfig] | None = None,
) -> EngineParts:
    """The engine over the config's parts plus the caller's; ValueError on a name registered twice."""
    function_registry, tool_registry = build_registries(config)
    for name, function in (functions or {}).items():
        function_registry.register(name, function)
    _register_tools(tool_registry, tools)
    settings = config.providers
    if providers:
        settings = replace(settings, named={**settings.named, **providers})
    models = ModelRegistry(settings)
    servers = dict(config.mcp_servers)
    servers.update(mcp_servers or {})
    mcp = McpTools(servers)
    agent_tools = ToolSources(tool_registry, mcp)
    timeouts = StepTimeouts(config.step_timeout_seconds, config.max_step_timeout_seconds)
    templates = TemplateEngine(template_seconds=config.template_seconds)
    engine = FlowEngine(models, function_registry, templates, tools=agent_tools, step_timeouts=timeouts)
    return EngineParts(
        engine,
        models,
        function_registry,
        mcp,
        frozenset(agent_tools.names()),
        config.max_run_seconds,
    )


def _register_tools(registry: ToolRegistry, tools: ToolsOption | None) -> None:
    if tools is None:
        return
    if isinstance(tools, Mapping):
        for name, function in tools.items():
            registry.register(function, name=name)
        return
    for function in tools:
        registry.register(function)
