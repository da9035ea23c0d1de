"""Every error leaves the server as `{"detail": {"code": ..., "message": ...}}` with the status the
code stands for; FastAPI's own 404/405/422 answers are reshaped to the same envelope."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from noukai.types.errors import ErrorCode, status_for_code
from noukai_server.runtime import RequestRejected
from noukai_server.store import StoreBusy

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        **details: Any,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.details = details


def error_response(
    code: str,
    message: str,
    *,
    http_status: int | None = None,
    headers: dict[str, str] | None = None,
    **details: Any,
) -> Response:
    body = {"detail": {"code": code, "message": message, **details}}
    return Response(
        orjson.dumps(body),
        status_code=http_status or status_for_code(code),
        media_type="application/json",
        headers=headers,
    )


async def _api_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    headers = dict(exc.headers)
    if exc.code == ErrorCode.UNAUTHENTICATED:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="noukai"')
    return error_response(exc.code, exc.message, headers=headers, **exc.details)


async def _rejected(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestRejected)
    return error_response(exc.code, exc.message, headers=exc.headers or None, **exc.details)


async def _validation(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = [
        {"loc": [str(part) for part in err.get("loc", ())], "message": err.get("msg", "")}
        for err in exc.errors()
    ]
    if any(err.get("type") == "json_invalid" for err in exc.errors()):
        return error_response(ErrorCode.INVALID_JSON, "the request body is not valid JSON")
    summary = "; ".join(f"{'.'.join(p['loc'][1:]) or 'body'}: {p['message']}" for p in problems)
    return error_response(ErrorCode.VALIDATION_ERROR, f"invalid request: {summary}", errors=problems)


async def _http(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        return error_response(ErrorCode.NOT_FOUND, "no such endpoint")
    if exc.status_code == 405:
        return error_response(ErrorCode.METHOD_NOT_ALLOWED, "method not allowed on this endpoint")
    return error_response(
        ErrorCode.INTERNAL_ERROR if exc.status_code >= 500 else ErrorCode.VALIDATION_ERROR,
        str(exc.detail),
        http_status=exc.status_code,
    )


STORE_BUSY_RETRY_AFTER = "1"
"""Seconds a client is told to wait after a 503 SERVICE_UNAVAILABLE: connections come free fast."""


async def _store_busy(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StoreBusy)
    log.warning("answered 503: %s", exc)
    return error_response(
        ErrorCode.SERVICE_UNAVAILABLE,
        "the server is out of database connections for the moment; nothing was done, retry shortly",
        headers={"Retry-After": STORE_BUSY_RETRY_AFTER},
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StoreBusy, _store_busy)
    app.add_exception_handler(RequestRejected, _rejected)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
