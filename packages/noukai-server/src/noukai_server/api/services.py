"""Everything a running server holds, built once at start-up and closed at shutdown."""

from __future__ import annotations

from dataclasses import dataclass, field

from noukai_server.api.sse import StreamDrain
from noukai_server.bus import Bus
from noukai_server.config import ServerConfig
from noukai_server.engine import FunctionRegistry, ToolRegistry
from noukai_server.eventlog.retention import RetentionTask
from noukai_server.mcp.tools import McpTools
from noukai_server.providers import ModelRegistry
from noukai_server.runtime import FlowCache, RunService, Worker
from noukai_server.runtime.assembly import Execution
from noukai_server.runtime.flow_admin import FlowAdmin, FlowChecks
from noukai_server.runtime.quotas import RunLimits
from noukai_server.runtime.sessions import SessionService
from noukai_server.runtime.traces import TraceService
from noukai_server.store import Store
from noukai_server.telemetry import tracing
from noukai_server.telemetry.trace_context import tracing_configured


@dataclass(slots=True)
class Services:
    config: ServerConfig
    store: Store
    bus: Bus
    models: ModelRegistry
    functions: FunctionRegistry
    tools: ToolRegistry
    flows: FlowCache
    runs: RunService
    worker: Worker | None
    retention: RetentionTask
    traces: TraceService
    sessions: SessionService
    flow_admin: FlowAdmin
    mcp: McpTools
    """The configured MCP servers' sessions, shared by the worker's runs; closed with the rest."""
    streams: StreamDrain = field(default_factory=StreamDrain)
    """Ends the open SSE streams when the process shuts down (`shutdown_streams`)."""

    @classmethod
    async def start(
        cls,
        config: ServerConfig,
        *,
        functions: FunctionRegistry | None = None,
        tools: ToolRegistry | None = None,
    ) -> Services:
        tracing.start()  # OTEL_* variables: on in every process that runs or ends runs
        execution = await Execution.open(config, functions=functions, tools=tools)
        store, bus = execution.store, execution.bus
        worker = None
        if config.embedded_workers:
            worker = execution.worker(config)
            await worker.start()
        retention = RetentionTask(
            store,
            retention_seconds=config.event_retention_seconds,
            interval_seconds=config.retention_interval_seconds,
            session_retention_seconds=config.session_retention_seconds,
        )
        retention.start()
        runs = RunService(
            store,
            bus,
            execution.flows,
            local=worker,
            limits=RunLimits.of(config),
            idempotency_ttl_seconds=config.idempotency_ttl_seconds,
            tracing_on=tracing_configured(),  # read once: the OTEL_* environment is fixed at start
        )
        traces = TraceService(store, max_context_bytes=config.trace_context_max_bytes)
        sessions = SessionService(store, traces, retention_seconds=config.session_retention_seconds)
        return cls(
            config,
            store,
            bus,
            execution.models,
            execution.functions,
            execution.tools,
            execution.flows,
            runs,
            worker,
            retention,
            traces,
            sessions,
            FlowAdmin(store, FlowChecks.of(execution.functions, execution.agent_tools, execution.models)),
            mcp=execution.mcp,
        )

    def shutdown_streams(self) -> None:
        """The process is stopping: end every open SSE stream cleanly at its next frame boundary,
        so clients resume (`Last-Event-ID`) on another API process."""
        self.streams.close_all()

    async def close(self) -> None:
        self.shutdown_streams()
        await self.retention.stop()
        if self.worker is not None:
            # Hand the runs back now rather than when their leases expire: a process that stops
            # has no time for a grace period (uvicorn's shutdown is already bounded).
            await self.worker.drain(0)
        await self.mcp.aclose()  # after the worker: no run is left to call a tool
        await self.bus.aclose()
        await self.models.aclose()
        await self.store.close()
        tracing.shutdown()  # exports the spans still buffered
