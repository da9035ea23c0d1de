"""Endpoints declared once, served by plain Starlette routes and documented by FastAPI.

The hottest paths (every streamed run goes through them) skip FastAPI's per-request machinery
(dependency solving, parameter models), which was a measured part of a run's cost. An `Endpoint`
says everything about one of them in one place: its method and path, its parameters (name,
location, schema, description), its body model and its answers. From that one declaration come

* `route(prefix)`: the plain Starlette route that serves it. It reads each declared parameter from
  the request (as the raw string: the handler parses it, so one parser serves every caller) and
  calls the handler with them as keywords; and
* `document_route(prefix)`: a FastAPI route, with the same handler, that carries the operation in
  the OpenAPI document. It is mounted after the plain route, which always matches first, so it
  never serves.

Nothing about these endpoints is written twice, so the document cannot drift from what is served.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import Depends
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from noukai_server.api.auth import bearer_scheme
from noukai_server.api.body import openapi_body
from noukai_server.api.responses import Responses
from noukai_server.api.sse import SseResponse

Location = Literal["path", "query", "header"]
Handler = Callable[..., Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter: where it is read from, and how the document describes it."""

    name: str
    """As on the wire: `org`, `since_id`, `Last-Event-ID`."""
    location: Location
    description: str
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})

    @property
    def arg(self) -> str:
        """The handler's keyword for it: the name in snake case (`Last-Event-ID`: `last_event_id`)."""
        return self.name.lower().replace("-", "_")

    @property
    def required(self) -> bool:
        return self.location == "path"

    def read(self, request: Request) -> str | None:
        if self.location == "path":
            value: str = request.path_params[self.name]
            return value
        if self.location == "query":
            return request.query_params.get(self.name)
        return request.headers.get(self.name)

    def openapi(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "in": self.location,
            "required": self.required,
            "description": self.description,
            "schema": dict(self.schema),
        }


@dataclass(frozen=True, slots=True)
class Endpoint:
    method: Literal["GET", "POST"]
    path: str
    """Under the API prefix, with `{name}` for each path parameter."""
    handler: Handler
    """`handler(request, **{param.arg: raw value or None})`; its docstring documents the operation."""
    params: tuple[Param, ...]
    responses: Responses
    name: str
    body: type[BaseModel] | None = None
    tags: tuple[str, ...] = ()
    summary: str | None = None
    description: str | None = None
    """The operation's description; the handler's docstring by default."""
    sse: bool = False
    """The success answer is a `text/event-stream`."""

    def route(self, prefix: str) -> Route:
        """The plain Starlette route that serves the endpoint."""
        handler = self.handler
        params = self.params

        async def serve(request: Request) -> Response:
            return await handler(request, **{p.arg: p.read(request) for p in params})

        serve.__name__ = serve.__qualname__ = self.name
        serve.__doc__ = handler.__doc__
        # Documented by `document_route` alone.
        return Route(
            f"{prefix}{self.path}", serve, methods=[self.method], name=self.name, include_in_schema=False
        )

    def openapi_extra(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"parameters": [p.openapi() for p in self.params]}
        if self.body is not None:
            extra.update(openapi_body(self.body))
        return extra

    def document_route(self, prefix: str, serving: Route) -> APIRoute:
        """The FastAPI route that documents the endpoint (served by `serving`, which matches first).

        Its endpoint is the plain route's, and the bearer scheme is its only dependency, so even if
        it were reached it would do exactly what the plain route does."""
        endpoint: Callable[[Request], Awaitable[Response]] = serving.endpoint
        return APIRoute(
            f"{prefix}{self.path}",
            endpoint,
            methods=[self.method],
            name=self.name,
            summary=self.summary,
            description=self.description or inspect.cleandoc(self.handler.__doc__ or ""),
            tags=list(self.tags),
            responses=self.responses,
            response_class=SseResponse if self.sse else Response,
            status_code=200,
            dependencies=[Depends(bearer_scheme)],
            openapi_extra=self.openapi_extra(),
            include_in_schema=True,
        )


def mount(app_routes: list[Any], endpoints: tuple[Endpoint, ...], prefix: str) -> None:
    """Put each endpoint's serving route in front of every other route (tried first) and its
    document route at the end."""
    serving = [e.route(prefix) for e in endpoints]
    app_routes[0:0] = serving
    app_routes.extend(e.document_route(prefix, r) for e, r in zip(endpoints, serving, strict=True))
