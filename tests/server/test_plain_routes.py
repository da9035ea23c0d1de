"""The hot streams are served by plain Starlette routes tried before FastAPI's, and documented from the
same declaration (`noukai_server.api.endpoints.Endpoint`): the document's operation for each says
exactly what its plain route reads."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route
from starlette.testclient import TestClient

from noukai_server.api.app import create_app
from noukai_server.api.endpoints import Endpoint
from noukai_server.api.routes.stream import ENDPOINTS
from noukai_server.config import ServerConfig

PREFIX = "/api/v1"
BY_NAME = {endpoint.name: endpoint for endpoint in ENDPOINTS}


def _app() -> Any:
    return create_app(ServerConfig(data_dir=Path("unused")))


def _first_full_match(path: str, method: str) -> Any:
    scope = {"type": "http", "path": path, "method": method, "root_path": ""}
    for route in _app().router.routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return route
    return None


def test_the_streams_are_served_by_the_plain_routes() -> None:
    for path, method, name in [
        ("/api/v1/seq/acme/web/greet/step", "POST", "step"),
        ("/api/v1/seq/acme/web/greet/v2/step", "POST", "step_version"),
        ("/api/v1/runs/abc/events", "GET", "run_events"),
    ]:
        route = _first_full_match(path, method)
        assert type(route) is Route and route.name == name, (path, route)
    assert _first_full_match("/api/v1/seq/acme/web/greet/step", "GET") is None  # 405, as before


def test_each_endpoint_is_declared_once() -> None:
    """One serving route and one document route per declaration, with the same endpoint function;
    nothing else in the app answers these paths."""
    routes = _app().router.routes
    for endpoint in ENDPOINTS:
        path = f"{PREFIX}{endpoint.path}"
        same_path = [r for r in routes if getattr(r, "path", None) == path]
        serving = [r for r in same_path if type(r) is Route]
        documenting = [r for r in same_path if isinstance(r, APIRoute)]
        assert len(serving) == 1 and len(documenting) == 1, same_path
        assert documenting[0].endpoint is serving[0].endpoint
        assert serving[0].methods is not None and endpoint.method in serving[0].methods
        position = {id(r): i for i, r in enumerate(routes)}  # Route's == compares path and endpoint
        assert position[id(serving[0])] < position[id(documenting[0])]
        assert documenting[0].include_in_schema and not serving[0].include_in_schema


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_the_document_says_what_the_plain_route_reads(endpoint: Endpoint) -> None:
    operation = _app().openapi()["paths"][f"{PREFIX}{endpoint.path}"][endpoint.method.lower()]
    documented = {(p["name"], p["in"]) for p in operation["parameters"]}
    assert documented == {(p.name, p.location) for p in endpoint.params}
    route = endpoint.route(PREFIX)
    assert {name for name, where in documented if where == "path"} == set(route.param_convertors)
    assert all(p["required"] for p in operation["parameters"] if p["in"] == "path")
    assert ("requestBody" in operation) == (endpoint.body is not None)
    if endpoint.body is not None:
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        assert set(schema["properties"]) == {f.alias or n for n, f in endpoint.body.model_fields.items()}
    assert operation["security"] == [{"ApiKey": []}]
    assert list(operation["responses"]["200"]["content"]) == ["text/event-stream"]
    errors = {s: r for s, r in operation["responses"].items() if int(s) >= 400}
    assert errors and all(
        r["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorEnvelope") for r in errors.values()
    )
    # The handler takes every declared parameter, and needs no other.
    signature = inspect.signature(endpoint.handler).parameters
    declared = {p.arg for p in endpoint.params}
    assert declared <= set(signature) - {"request"}
    assert {
        n for n, p in signature.items() if p.default is inspect.Parameter.empty and n != "request"
    } <= declared


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_the_plain_route_hands_the_handler_each_documented_parameter(endpoint: Endpoint) -> None:
    """A request that sets every documented parameter reaches the handler with each of them (raw),
    and one that sets none gives None for every optional one."""
    received: list[dict[str, Any]] = []

    async def spy(request: Request, **params: Any) -> Response:
        received.append(params)
        return JSONResponse({})

    app = Starlette(routes=[dataclasses.replace(endpoint, handler=spy).route(PREFIX)])
    values = {p.name: f"value-{i}" for i, p in enumerate(endpoint.params)}
    path = PREFIX + endpoint.path.format(**{p.name: values[p.name] for p in endpoint.params if p.required})
    query = {p.name: values[p.name] for p in endpoint.params if p.location == "query"}
    headers = {p.name: values[p.name] for p in endpoint.params if p.location == "header"}
    with TestClient(app) as client:
        assert client.request(endpoint.method, path, params=query, headers=headers).status_code == 200
        assert client.request(endpoint.method, path).status_code == 200
    assert received[0] == {p.arg: values[p.name] for p in endpoint.params}
    assert received[1] == {p.arg: values[p.name] if p.required else None for p in endpoint.params}
