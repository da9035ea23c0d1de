"""The step protocol is served by plain Starlette routes tried before FastAPI's (which remain for the
OpenAPI document); both answer the same paths and methods."""

from __future__ import annotations

from pathlib import Path

from starlette.routing import Match

from noukai_server.api.app import create_app
from noukai_server.api.routes.stream import _run_events_plain, _step_plain
from noukai_server.config import ServerConfig


def _first_full_match(path: str, method: str) -> object:
    app = create_app(ServerConfig(data_dir=Path("unused")))
    scope = {"type": "http", "path": path, "method": method, "root_path": ""}
    for route in app.router.routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return getattr(route, "endpoint", None)
    return None


def test_steps_are_served_by_the_plain_routes() -> None:
    assert _first_full_match("/api/v1/seq/acme/web/greet/step", "POST") is _step_plain
    assert _first_full_match("/api/v1/seq/acme/web/greet/v2/step", "POST") is _step_plain
    assert _first_full_match("/api/v1/seq/acme/web/greet/step", "GET") is None  # 405, as before
    assert _first_full_match("/api/v1/runs/abc/events", "GET") is _run_events_plain


def test_the_openapi_document_still_describes_them() -> None:
    schema = create_app(ServerConfig(data_dir=Path("unused"))).openapi()
    assert "post" in schema["paths"]["/api/v1/seq/{org}/{project}/{slug}/step"]
    assert "post" in schema["paths"]["/api/v1/seq/{org}/{project}/{slug}/{version}/step"]
    assert "get" in schema["paths"]["/api/v1/runs/{execution_id}/events"]
