"""The API docs, served offline: Swagger UI at `/docs` and ReDoc at `/redoc`, and the OpenAPI
document they show, as true as the routes' declarations.

FastAPI's own pages load their scripts and styles from a CDN (and ReDoc its fonts from Google), so
they are blank on a machine without internet. These pages load them from the server itself: the
assets ship in the `fastapi-offline` package (Swagger UI 5 and ReDoc 2 bundles, a favicon) and are
mounted under `/docs-assets/`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

from noukai_server.api.event_schemas import event_components

ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"
ASSETS_URL = "/docs-assets"

_FASTAPI_VALIDATION_SCHEMAS: Final = ("HTTPValidationError", "ValidationError")


def install_openapi(app: FastAPI) -> None:
    """Post-process the generated document once, where FastAPI's generator says what this server
    does not do:

    * FastAPI adds a 422 with its own `{"detail": [...]}` body to every operation that has
      parameters, but this server never sends that body (`api/errors.py` reshapes validation errors
      into the envelope). Routes declare the 422 they really send (`ErrorEnvelope`); FastAPI's own
      is removed, with its schemas.
    * FastAPI files every declared answer under the route's media type, so a stream's errors would
      read as `text/event-stream`; errors are always sent as `application/json`."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = errors_as_json(without_fastapi_validation_errors(generate()))
            app.openapi_schema = with_event_payloads(document)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def without_fastapi_validation_errors(document: dict[str, Any]) -> dict[str, Any]:
    for item in document.get("paths", {}).values():
        for operation in item.values():
            answer = operation.get("responses", {}).get("422", {})
            schema = answer.get("content", {}).get("application/json", {}).get("schema", {})
            if schema.get("$ref", "").endswith("/HTTPValidationError"):
                del operation["responses"]["422"]
    schemas = document.get("components", {}).get("schemas", {})
    for name in _FASTAPI_VALIDATION_SCHEMAS:
        schemas.pop(name, None)
    return document


def with_event_payloads(document: dict[str, Any]) -> dict[str, Any]:
    """Add the stream events' payload schemas, which the streams' `data` refers to."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in event_components().items():
        if name in schemas and schemas[name] != schema:
            raise RuntimeError(f"two different schemas are named {name} in the OpenAPI document")
        schemas[name] = schema
    return document


def errors_as_json(document: dict[str, Any]) -> dict[str, Any]:
    for item in document.get("paths", {}).values():
        for operation in item.values():
            for status, answer in operation.get("responses", {}).items():
                content = answer.get("content")
                is_error = str(status).isdigit() and int(status) >= 400
                if is_error and content and "application/json" not in content:
                    answer["content"] = {"application/json": next(iter(content.values()))}
    return document


# No online validator badge: Swagger UI would send the spec's URL to validator.swagger.io.
_SWAGGER_UI_PARAMETERS = {"validatorUrl": None}


def install_docs(app: FastAPI, *, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Serve both pages and their assets; the app is made with `docs_url=None, redoc_url=None`."""
    openapi_url = app.openapi_url
    if openapi_url is None:
        raise ValueError("the docs need the app's OpenAPI document (openapi_url)")
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            swagger_ui_parameters={**_SWAGGER_UI_PARAMETERS, **(app.swagger_ui_parameters or {})},
        )

    @app.get(redoc_url, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
