"""Everything a running server holds, built once at start-up and closed at shutdown."""

from __future__ import annotations

from dataclasses import dataclass

from noukai_server.bus import Bus
from noukai_server.bus.factory import open_bus
from noukai_server.config import ServerConfig
from noukai_server.engine import (
    FlowEngine,
    FunctionRegistry,
    ToolRegistry,
    default_functions,
    default_tools,
)
from noukai_server.eventlog.retention import RetentionTask
from noukai_server.flows import TemplateEngine
from noukai_server.providers import ModelRegistry
from noukai_server.runtime import FlowCache, RunService, Worker
from noukai_server.runtime.flow_admin import FlowAdmin, FlowChecks
from noukai_server.runtime.sessions import SessionService
from noukai_server.runtime.traces import TraceService
from noukai_server.store import Store


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

    @classmethod
    async def start(
        cls,
        config: ServerConfig,
        *,
        functions: FunctionRegistry | None = None,
        tools: ToolRegistry | None = None,
    ) -> Services:
        config.data_dir.mkdir(parents=True, exist_ok=True)
        store = await Store.connect(config.resolved_database_url)
        bus = await open_bus(config.redis_url)
        models = ModelRegistry(config.providers)
        functions = functions or default_functions()
        tools = tools or default_tools()
        flows = FlowCache(known_functions=set(functions.names()), known_tools=set(tools.names()))
        engine = FlowEngine(models, functions, TemplateEngine(), tools=tools)
        worker = None
        if config.embedded_workers:
            worker = Worker(
                store,
                bus,
                engine,
                flows,
                concurrency=config.worker_concurrency,
                lease_seconds=config.lease_seconds,
            )
            await worker.start()
        retention = RetentionTask(
            store,
            retention_seconds=config.event_retention_seconds,
            interval_seconds=config.retention_interval_seconds,
            session_retention_seconds=config.session_retention_seconds,
        )
        retention.start()
        runs = RunService(store, bus, flows, local=worker)
        traces = TraceService(store, max_context_bytes=config.trace_context_max_bytes)
        sessions = SessionService(store, traces, retention_seconds=config.session_retention_seconds)
        return cls(
            config,
            store,
            bus,
            models,
            functions,
            tools,
            flows,
            runs,
            worker,
            retention,
            traces,
            sessions,
            FlowAdmin(store, FlowChecks.of(functions, tools, models)),
        )

    async def close(self) -> None:
        await self.retention.stop()
        if self.worker is not None:
            await self.worker.stop()
        await self.bus.aclose()
        await self.models.aclose()
        await self.store.close()
