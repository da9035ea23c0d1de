"""The FastAPI application: routes under `/api/v1`, OpenAPI at `/docs` and `/redoc` (offline)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.responses import Response
from starlette.routing import Route

from noukai.types import API_PREFIX
from noukai.types.wire import Health
from noukai_server import __version__, console
from noukai_server.api import endpoints
from noukai_server.api.docs import install_docs, install_openapi
from noukai_server.api.errors import install_error_handlers
from noukai_server.api.http_metrics import HttpMetrics
from noukai_server.api.mcp_endpoint import MCP_PATH, McpEndpoint
from noukai_server.api.metrics_endpoint import metrics_route
from noukai_server.api.rate_limits import RateLimitHeaders, RateLimits, RatePolicy
from noukai_server.api.request_id import RequestIdMiddleware
from noukai_server.api.responses import answers, json_response
from noukai_server.api.routes import (
    agui,
    credits,
    execute,
    flows,
    jobs,
    keys,
    openai_compat,
    runs,
    sessions,
    stream,
    threads,
    traces,
    whoami,
)
from noukai_server.api.services import Services
from noukai_server.config import ServerConfig
from noukai_server.engine import FunctionRegistry, ToolRegistry
from noukai_server.telemetry import metrics_multiproc


def create_app(
    config: ServerConfig,
    *,
    functions: FunctionRegistry | None = None,
    tools: ToolRegistry | None = None,
) -> FastAPI:
    """The app; `functions` and `tools` are the operator's registries for python and agent steps
    (the defaults when not given)."""
    mcp = McpEndpoint()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if config.metrics_enabled:
            metrics_multiproc.start()  # before anything records (the workers start below)
        services = await Services.start(config, functions=functions, tools=tools)
        app.state.services = services
        app.state.rate_limits = limits = RateLimits.of(config, services.store)  # None: unlimited
        try:
            async with mcp.running():  # /mcp: the MCP SDK's session manager
                yield
        finally:
            if limits is not None:
                await limits.aclose()
            await services.close()
            metrics_multiproc.process_exit()  # multiprocess mode: this process's gauges leave the sums

    app = FastAPI(
        title="Noukai",
        version=__version__,
        summary="Run LLM flows and stream every step as typed events.",
        lifespan=lifespan,
        docs_url=None,  # served offline by install_docs, with redoc_url
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    install_docs(app)
    install_openapi(app)
    install_error_handlers(app)
    app.include_router(execute.router, prefix=API_PREFIX)
    app.include_router(flows.router, prefix=API_PREFIX)
    app.include_router(stream.router, prefix=API_PREFIX)
    endpoints.mount(app.router.routes, stream.ENDPOINTS, API_PREFIX)  # served first: see there
    app.include_router(jobs.router, prefix=API_PREFIX)
    app.include_router(runs.router, prefix=API_PREFIX)  # the runs list and reruns
    app.include_router(traces.router, prefix=API_PREFIX)
    app.include_router(sessions.router, prefix=API_PREFIX)
    app.include_router(threads.router, prefix=API_PREFIX)
    app.include_router(agui.router, prefix=API_PREFIX)
    app.include_router(keys.router, prefix=API_PREFIX)
    app.include_router(credits.router, prefix=API_PREFIX)
    app.include_router(openai_compat.router)  # /openai/v1: docs/protocols.md
    app.router.routes.append(Route(MCP_PATH, endpoint=mcp))  # flows as MCP tools
    app.include_router(whoami.router, prefix=API_PREFIX)  # GET /keys/me: the console's sign-in
    app.router.routes.extend(console.routes())  # the web console at / (files only, no key)
    if config.metrics_enabled:
        app.router.routes.append(metrics_route(config))  # Prometheus; no API key: see there

    @app.get(f"{API_PREFIX}/health", tags=["service"], responses=answers(Health, "The server is up"))
    async def health() -> Response:
        """Liveness: answers without a key once the store is open."""
        return json_response({"status": "ok", "version": __version__})

    if RatePolicy.of(config).active:  # a layer on every message of every response: only when used
        app.add_middleware(RateLimitHeaders)
    if config.metrics_enabled:
        app.add_middleware(HttpMetrics)  # inside the request-id layer, which turns errors into 500s
    app.add_middleware(RequestIdMiddleware)
    return app
