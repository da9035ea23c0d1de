"""Puts `X-Request-ID` on every response, errors included, and turns an unexpected exception into
the 500 error envelope (logged with the request id, never with the request's body or headers).

It also writes the access log, one line per request once its response has ended (a stream's
when the stream closes): method, path (query values elided), status, duration, request id. The
request id is in a context variable for the request's whole handling, so every log line written
meanwhile carries it.

Written as plain ASGI rather than `BaseHTTPMiddleware`, which would buffer streaming responses.
"""

from __future__ import annotations

import logging
import time
import uuid

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from noukai_server.logs import redacted_query, request_id_var

logger = logging.getLogger("noukai_server.api")
access_logger = logging.getLogger("noukai_server.access")

_ERROR_BODY = orjson.dumps({"detail": {"code": "INTERNAL_ERROR", "message": "internal server error"}})


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        header = (b"x-request-id", request_id.encode())
        started = False
        status = 0
        begun = time.perf_counter()
        token = request_id_var.set(request_id)

        async def send_with_id(message: Message) -> None:
            nonlocal started, status
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            logger.exception("request %s %s failed", scope.get("method"), scope.get("path"))
            if started:
                raise
            status = 500
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [(b"content-type", b"application/json"), header],
                }
            )
            await send({"type": "http.response.body", "body": _ERROR_BODY})
        finally:
            _log_access(scope, status, begun)
            request_id_var.reset(token)


def _log_access(scope: Scope, status: int, begun: float) -> None:
    """`GET /api/v1/... 200 3.1ms`; status 0 when the client left before any response."""
    duration_ms = round((time.perf_counter() - begun) * 1000, 1)
    method = scope.get("method", "")
    path = scope.get("path", "") + redacted_query(scope.get("query_string", b""))
    access_logger.info(
        "%s %s %s %sms",
        method,
        path,
        status,
        duration_ms,
        extra={"method": method, "path": path, "status": status, "duration_ms": duration_ms},
    )
