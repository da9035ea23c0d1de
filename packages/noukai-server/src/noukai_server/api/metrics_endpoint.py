"""`GET /metrics`: the Prometheus text exposition, outside `/api/v1` and outside API keys.

Access: with `[metrics] token` set, the request must carry `Authorization: Bearer <token>`
(compared in constant time): none or another one is 401 UNAUTHENTICATED. Without a token only
loopback clients are answered (the embedded default: a Prometheus on the same machine); any other
client gets 403 FORBIDDEN. Behind a reverse proxy on the same host every request looks local, so
such deployments set a token. `[metrics] enabled = false` mounts no route at all (404).

Each scrape reads the queue depth from the store (`Store.unfinished_run_counts`: the unfinished
rows only), then writes every process's metrics (multiprocess mode) or this process's.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
from typing import Final

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from noukai.types.errors import ErrorCode
from noukai_server.api.errors import error_response
from noukai_server.config import ServerConfig
from noukai_server.telemetry import metrics_multiproc

METRICS_PATH: Final = "/metrics"


def refusal(client_host: str | None, authorization: str | None, token: str | None) -> Response | None:
    """The answer refusing this scrape, or None when it may read the metrics."""
    if token is not None:
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            return error_response(
                ErrorCode.UNAUTHENTICATED,
                "/metrics needs Authorization: Bearer <the [metrics] token>",
                headers={"WWW-Authenticate": 'Bearer realm="noukai-metrics"'},
            )
        return None
    if not _loopback(client_host):
        return error_response(
            ErrorCode.FORBIDDEN,
            "/metrics answers only loopback clients unless [metrics] token is set",
        )
    return None


def _loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _QueueDepth(Collector):
    """`noukai_queue_runs{status}`, from counts read just before the scrape."""

    def __init__(self, counts: dict[str, int]) -> None:
        self._counts = counts

    def collect(self) -> list[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "noukai_queue_runs",
            "Runs queued, running (leased to a worker) and waiting (paused), in the whole store.",
            labels=["status"],
        )
        for status, count in self._counts.items():
            family.add_metric([status], count)
        return [family]


class MetricsEndpoint:
    """The handler of `GET /metrics` for one app."""

    def __init__(self, config: ServerConfig) -> None:
        self._token = config.metrics_token or None
        self._registry: CollectorRegistry | None = None
        """Multiprocess mode: one that reads all processes' files; else the default registry. Made
        at the first scrape, once the app's start-up has prepared the directory."""

    async def handle(self, request: Request) -> Response:
        client = request.client
        refused = refusal(client.host if client else None, request.headers.get("authorization"), self._token)
        if refused is not None:
            return refused
        counts = await request.app.state.services.store.unfinished_run_counts()
        # Off the event loop: in multiprocess mode this reads every process's files.
        body = await asyncio.to_thread(self._exposition, counts)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    def _exposition(self, counts: dict[str, int]) -> bytes:
        metrics_multiproc.retire_dead()  # multiprocess mode: a killed process's gauges leave the sums
        queue = CollectorRegistry()
        queue.register(_QueueDepth(counts))
        if self._registry is None:
            self._registry = metrics_multiproc.scrape_registry() or REGISTRY
        return generate_latest(self._registry) + generate_latest(queue)


def metrics_route(config: ServerConfig) -> Route:
    return Route(
        METRICS_PATH, endpoint=MetricsEndpoint(config).handle, methods=["GET"], include_in_schema=False
    )
