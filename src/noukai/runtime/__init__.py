"""Glue between the engine, the store and the bus: workers that execute runs, and the run service
that the API uses to create runs and wait for them."""

from noukai.runtime.errors import RequestRejected
from noukai.runtime.flow_cache import FlowCache
from noukai.runtime.log_writer import RunLogWriter
from noukai.runtime.runs import FlowTarget, RunService, parse_version_segment
from noukai.runtime.worker import Worker

__all__ = [
    "FlowCache",
    "FlowTarget",
    "RequestRejected",
    "RunLogWriter",
    "RunService",
    "Worker",
    "parse_version_segment",
]
