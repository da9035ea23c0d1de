"""uvicorn's server, told to end the app's SSE streams as soon as a shutdown begins.

On SIGTERM uvicorn stops accepting connections, then waits (`timeout_graceful_shutdown`) for the
open responses to finish and finally cancels them. An SSE stream never finishes by itself, so
without this every shutdown would wait out the timeout and then cut each stream wherever it was.
Ending the streams first lets them close after a whole frame, like a planned close, and the
clients resume on another API process with `Last-Event-ID`.
"""

from __future__ import annotations

import socket

import uvicorn


class StreamClosingServer(uvicorn.Server):
    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        services = getattr(getattr(self.config.app, "state", None), "services", None)
        if services is not None:  # None when the app's startup failed
            services.shutdown_streams()
        await super().shutdown(sockets)
