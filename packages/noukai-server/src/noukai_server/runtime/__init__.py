"""Glue between the engine, the store and the bus: workers that execute runs, and the run service
that the API uses to create runs and wait for them."""

from noukai_server.runtime.errors import RequestRejected
from noukai_server.runtime.flow_cache import FlowCache
from noukai_server.runtime.runs import FlowTarget, RunService, parse_version_segment
from noukai_server.runtime.worker import Worker

__all__ = [
    "FlowCache",
    "FlowTarget",
    "RequestRejected",
    "RunService",
    "Worker",
    "parse_version_segment",
]
