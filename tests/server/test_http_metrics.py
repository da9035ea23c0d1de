"""`HttpMetrics`: one count per request, by route template (never the raw path) and status, on a
small FastAPI app in process: a router included with a prefix, a plain Starlette route, a route
that raises, no route at all, and a streamed response."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fastapi import APIRouter, FastAPI
from prometheus_client import REGISTRY
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from noukai_server.api.http_metrics import HttpMetrics
from noukai_server.api.request_id import RequestIdMiddleware
from noukai_server.telemetry import metrics

PREFIX = "/h3test/v1"


def _app() -> FastAPI:
    router = APIRouter()

    @router.get("/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    @router.get("/broken")
    async def broken() -> dict[str, str]:
        raise RuntimeError("on purpose")

    async def plain(request: Request) -> Response:
        return PlainTextResponse(request.path_params["name"])

    async def chunks() -> AsyncIterator[bytes]:
        for n in range(5):
            yield f"data: {n}\n\n".encode()

    async def stream(request: Request) -> Response:
        return StreamingResponse(chunks(), media_type="text/event-stream")

    app = FastAPI()
    app.include_router(router, prefix=PREFIX)
    app.router.routes.insert(0, Route(f"{PREFIX}/plain/{{name}}", plain))
    app.router.routes.insert(0, Route(f"{PREFIX}/stream", stream))
    app.add_middleware(HttpMetrics)
    app.add_middleware(RequestIdMiddleware)
    return app


def count(method: str, route: str, status: int) -> float:
    found = REGISTRY.get_sample_value(
        "noukai_http_requests_total", {"method": method, "route": route, "status": str(status)}
    )
    return found or 0.0


@pytest.fixture(scope="module")
def client() -> TestClient:
    metrics.install()
    return TestClient(_app(), raise_server_exceptions=False)


def test_routes_are_counted_by_template(client: TestClient) -> None:
    template = f"{PREFIX}/things/{{thing_id}}"
    before = count("GET", template, 200)
    for n in range(3):
        assert client.get(f"{PREFIX}/things/{n}").status_code == 200
    assert count("GET", template, 200) == before + 3
    assert count("GET", f"{PREFIX}/things/0", 200) == 0  # never the raw path


def test_plain_routes_and_streams(client: TestClient) -> None:
    before = count("GET", f"{PREFIX}/plain/{{name}}", 200), count("GET", f"{PREFIX}/stream", 200)
    assert client.get(f"{PREFIX}/plain/abc").text == "abc"
    assert client.get(f"{PREFIX}/stream").text.count("data:") == 5  # one count, not one per chunk
    after = count("GET", f"{PREFIX}/plain/{{name}}", 200), count("GET", f"{PREFIX}/stream", 200)
    assert after == (before[0] + 1, before[1] + 1)


def test_errors_and_unmatched_paths(client: TestClient) -> None:
    before = count("GET", f"{PREFIX}/broken", 500), count("GET", "unmatched", 404)
    assert client.get(f"{PREFIX}/broken").status_code == 500
    assert client.get(f"{PREFIX}/nowhere/{'x' * 10}").status_code == 404
    after = count("GET", f"{PREFIX}/broken", 500), count("GET", "unmatched", 404)
    assert after == (before[0] + 1, before[1] + 1)


def test_a_method_outside_the_known_ones_is_other(client: TestClient) -> None:
    before = count("other", f"{PREFIX}/things/{{thing_id}}", 405)
    assert client.request("BREW", f"{PREFIX}/things/1").status_code == 405
    assert count("other", f"{PREFIX}/things/{{thing_id}}", 405) == before + 1
