"""A worker's own `/metrics` port (`noukai worker --metrics-port`), for workers on other hosts.

A worker serves no HTTP otherwise, and multiprocess files are shared only between processes of
one host, so a worker on a host without an API process has no `/metrics` to be scraped through.
This is prometheus-client's own exporter thread: the host's multiprocess sums when
`PROMETHEUS_MULTIPROC_DIR` is set, else this process's metrics. It has no access control: bind it
to an interface only the scraper reaches (default loopback).
"""

from __future__ import annotations

from prometheus_client import REGISTRY, start_http_server

from noukai_server.telemetry.metrics_multiproc import scrape_registry


def serve(port: int, host: str = "127.0.0.1") -> int:
    """Start serving on `host:port` in a daemon thread; the port bound (`port` 0 picks one)."""
    server, _thread = start_http_server(port, addr=host, registry=scrape_registry() or REGISTRY)
    return int(server.server_address[1])
