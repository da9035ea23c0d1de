"""What executes runs, built from the server's settings: the store, the bus, the model registry,
the operator's functions and tools, the engine and the flow cache, and the `Worker` over them.

`noukai serve` (its embedded workers, and its API) and `noukai worker` (workers only) both build
through here, so the two kinds of process cannot assemble the engine or the worker differently.
"""

from __future__ import annotations

from dataclasses import dataclass

from noukai_server.bus import Bus
from noukai_server.bus.factory import open_bus
from noukai_server.config import ServerConfig
from noukai_server.engine import (
    FlowEngine,
    FunctionRegistry,
    StepTimeouts,
    ToolRegistry,
    default_functions,
    default_tools,
)
from noukai_server.engine.tool_source import ToolSource, ToolSources
from noukai_server.flows import TemplateEngine
from noukai_server.mcp.tools import McpTools
from noukai_server.providers import ModelRegistry
from noukai_server.runtime.flow_cache import FlowCache
from noukai_server.runtime.gil import favour_the_event_loop
from noukai_server.runtime.worker import Worker
from noukai_server.store import OrgCaps, PoolSize, Store
from noukai_server.store.db import normalise_url

CANCEL_POLL_SECONDS = 0.5
"""Without Redis, how often a worker asks the store for cancels of the runs it holds: the API that
took the cancel may be another process, which only the store connects it to. One small read per
worker per interval while it runs anything, and the bound on a cancel's latency."""


class StartupFailed(Exception):
    """The store or the bus could not be opened; the message says which, where and why (without
    the password of the URL)."""


def org_caps(config: ServerConfig) -> OrgCaps:
    """The fair-claiming caps of a worker: `org_max_running` across the deployment, else half of
    this worker's slots (at least 1) on this worker; the per-org overrides across the deployment;
    `key_max_running` (and its overrides) per API key, across the deployment."""
    overrides = dict(config.org_max_running_overrides)
    per_worker = config.org_max_running is None
    return OrgCaps(
        max(1, config.worker_concurrency // 2) if config.org_max_running is None else config.org_max_running,
        overrides,
        default_per_worker=per_worker,
        key_default=config.key_max_running,
        key_overrides=dict(config.key_max_running_overrides),
    )


@dataclass(slots=True)
class Execution:
    store: Store
    bus: Bus
    models: ModelRegistry
    functions: FunctionRegistry
    tools: ToolRegistry
    flows: FlowCache
    engine: FlowEngine
    mcp: McpTools
    """The configured MCP servers (started on first use); closed by `aclose`."""
    agent_tools: ToolSource
    """What agent steps may name: the operator's `tools` and the `mcp:` servers."""

    @classmethod
    async def open(
        cls,
        config: ServerConfig,
        *,
        functions: FunctionRegistry | None = None,
        tools: ToolRegistry | None = None,
    ) -> Execution:
        """Open the store (migrating it) and the bus, and build the engine; `functions` and
        `tools` are the operator's registries (the defaults when not given)."""
        url = config.resolved_database_url
        try:
            config.data_dir.mkdir(parents=True, exist_ok=True)
            pool = PoolSize(config.db_pool_size, config.db_pool_overflow, config.db_pool_timeout_seconds)
            store = await Store.connect(url, pool=pool)
        except Exception as exc:
            raise StartupFailed(f"cannot open the store at {_shown(url)}: {_reason(exc)}") from exc
        try:
            bus = await open_bus(config.redis_url)
        except BaseException as exc:
            await store.close()
            if isinstance(exc, Exception):
                raise StartupFailed(f"cannot open the bus at {config.redis_url}: {_reason(exc)}") from exc
            raise
        models = ModelRegistry(config.providers)
        functions = functions or default_functions()
        tools = tools or default_tools()
        mcp = McpTools(config.mcp_servers)
        agent_tools = ToolSources(tools, mcp)
        flows = FlowCache(known_functions=set(functions.names()), known_tools=set(agent_tools.names()))
        timeouts = StepTimeouts(config.step_timeout_seconds, config.max_step_timeout_seconds)
        favour_the_event_loop()  # templates, regexes and parsing compute on threads beside the loop
        templates = TemplateEngine(template_seconds=config.template_seconds)
        engine = FlowEngine(models, functions, templates, tools=agent_tools, step_timeouts=timeouts)
        return cls(store, bus, models, functions, tools, flows, engine, mcp, agent_tools)

    def worker(self, config: ServerConfig) -> Worker:
        """A worker with the configured concurrency, lease, fair-claiming caps, and (without
        Redis) the store poll that brings it cancels from other processes. Not started."""
        return Worker(
            self.store,
            self.bus,
            self.engine,
            self.flows,
            concurrency=config.worker_concurrency,
            lease_seconds=config.lease_seconds,
            org_caps=org_caps(config),
            cancel_poll_seconds=CANCEL_POLL_SECONDS if config.redis_url is None else None,
        )

    async def aclose(self) -> None:
        await self.mcp.aclose()
        await self.bus.aclose()
        await self.models.aclose()
        await self.store.close()


def _shown(url: str) -> str:
    try:
        return normalise_url(url)[1].render_as_string(hide_password=True)
    except Exception:
        return "the configured database URL"


def _reason(exc: Exception) -> str:
    # Driver errors carry the statement and a help link after the first line; the cause is enough.
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
