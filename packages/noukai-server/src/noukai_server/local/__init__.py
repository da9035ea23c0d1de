"""In-process flows: `load_flow(source, ...)` runs a flow with the server's engine inside the
caller's process (no server, database or network), streaming the SDK's typed events
(docs/local.md)."""

from noukai_server.local.flow import LocalFlow, load_flow
from noukai_server.local.granularity import Granularity
from noukai_server.local.result import LocalResult
from noukai_server.local.stream import AsyncLocalStream, LocalStream

__all__ = ["AsyncLocalStream", "Granularity", "LocalFlow", "LocalResult", "LocalStream", "load_flow"]
