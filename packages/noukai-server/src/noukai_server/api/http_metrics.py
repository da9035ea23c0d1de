"""Counts HTTP requests by method, route template and status (`noukai_http_requests_total`).

A plain ASGI layer that only reads the status from `http.response.start` and counts once when the
response has ended; every other message passes through untouched. An earlier layer on every
response (the rate-limit headers) cost measurable CPU per streamed run because it rebuilt each
message (docs/benchmarks.md); this one builds nothing per message.

The route is the template the router matched, never the raw path, so a million run ids stay one
series. Routers leave what they matched in the scope: FastAPI the `APIRoute` (`scope["route"]`,
whose path lacks the prefix its router was included with), Starlette's plain routes only their
`scope["endpoint"]`. The template is worked out once per route and cached by that object (a bounded
set: the app's routes); a request no route matched is counted as `unmatched`.
"""

from __future__ import annotations

from typing import Final

from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from noukai_server.telemetry import metrics

UNMATCHED: Final = "unmatched"


class HttpMetrics:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._templates: dict[int, tuple[object, str]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        except Exception:
            status = status or 500  # the request-id layer outside answers it with a 500
            raise
        finally:
            metrics.http_request(scope.get("method", ""), self._template(scope), status)

    def _template(self, scope: Scope) -> str:
        matched = scope.get("route") or scope.get("endpoint")
        if matched is None:
            return UNMATCHED
        # By identity: FastAPI's routes are not hashable, and the app keeps them all alive.
        cached = self._templates.get(id(matched))
        if cached is None or cached[0] is not matched:
            cached = self._templates[id(matched)] = (matched, _resolve(scope))
        return cached[1]


def _resolve(scope: Scope) -> str:
    """The matched route's full template (first request through a route only)."""
    path: str = scope.get("path", "")
    route = scope.get("route")
    if isinstance(route, BaseRoute) and isinstance(getattr(route, "path", None), str):
        regex = getattr(route, "path_regex", None)
        relative: str = route.path  # type: ignore[attr-defined]
        if regex is None or regex.match(path):
            return relative
        # Included with a prefix: the shortest head of the path whose tail the route matches.
        for cut in range(1, len(path)):
            if path[cut] == "/" and regex.match(path[cut:]):
                return path[:cut] + relative
        return relative
    endpoint = scope.get("endpoint")
    app = scope.get("app")
    for candidate in getattr(getattr(app, "router", None), "routes", ()):
        if isinstance(candidate, Route) and candidate.endpoint is endpoint:
            return candidate.path
    return UNMATCHED
