"""The body policy of `api/body.py` (issue 14), over a real socket on every route that reads a body:
strict JSON (no `NaN`, `Infinity`, numbers that overflow a double), no NUL in any string or key,
and JSON media types only (415 `UNSUPPORTED_MEDIA_TYPE` for a form and the like)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from starlette.requests import Request

from noukai.types.wire import ExecuteRequest
from noukai_server.api.body import read_model
from tests.conftest import ServerProcess
from tests.server.test_execute_api import assert_error, post

ROUTES = ["echo/execute", "echo/jobs", "echo/step"]
OK = {"echo/execute": 200, "echo/jobs": 202, "echo/step": 200}


def _body(parameters: str, message: str = '"x"') -> bytes:
    return f'{{"message": {message}, "stepIndex": 0, "parameters": {parameters}}}'.encode()


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    ("parameters", "where"),
    [
        ('{"n": NaN}', ["parameters", "n"]),
        ('{"n": [1, Infinity]}', ["parameters", "n", "1"]),
        ('{"n": {"m": -Infinity}}', ["parameters", "n", "m"]),
        ('{"n": 1e400}', ["parameters", "n"]),
        ('{"n": -1.5E+400}', ["parameters", "n"]),
        ('{"n": 1' + "0" * 400 + ".5}", ["parameters", "n"]),
    ],
)
def test_non_finite_numbers_are_422_with_their_place(
    server: ServerProcess, route: str, parameters: str, where: list[str]
) -> None:
    response = post(server, f"/seq/dev/main/{route}", content=_body(parameters))
    detail = assert_error(response, 422, "VALIDATION_ERROR")
    assert [e["loc"] for e in detail["errors"]] == [where]
    assert "NaN" in detail["message"] and ".".join(where) in detail["message"]


@pytest.mark.parametrize("route", ROUTES)
def test_finite_extremes_and_lookalike_strings_are_accepted(server: ServerProcess, route: str) -> None:
    parameters = (
        '{"a": 1e308, "b": -1.7976931348623157e308, "c": 1e-400, "d": "NaN Infinity 1e400 \\\\u0000"}'
    )
    response = post(server, f"/seq/dev/main/{route}", content=_body(parameters))
    assert response.status_code == OK[route], response.text


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    ("message", "parameters", "where"),
    [
        ('"a\\u0000b"', "{}", ["message"]),
        ('"x"', '{"list": ["ok", {"deep": "\\u0000"}]}', ["parameters", "list", "1", "deep"]),
        ('"x"', '{"k\\u0000": 1}', ["parameters", "k\\u0000"]),
    ],
)
def test_nul_in_any_string_or_key_is_422_with_its_place(
    server: ServerProcess, route: str, message: str, parameters: str, where: list[str]
) -> None:
    response = post(server, f"/seq/dev/main/{route}", content=_body(parameters, message))
    detail = assert_error(response, 422, "VALIDATION_ERROR")
    assert [e["loc"] for e in detail["errors"]] == [where]
    assert "NUL" in detail["message"]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    "content_type",
    [
        "application/x-www-form-urlencoded",  # curl -d without -H
        "multipart/form-data; boundary=x",
        "application/xml",
        "text/html",
        "application/jsonx",
        "application/json; charset=latin-1",
    ],
)
def test_non_json_media_types_are_415(server: ServerProcess, route: str, content_type: str) -> None:
    response = post(
        server,
        f"/seq/dev/main/{route}",
        content=_body("{}"),
        headers={"Content-Type": content_type},
    )
    detail = assert_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert "application/json" in detail["message"]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "application/json",
        "Application/JSON; charset=UTF-8",
        "application/vnd.example+json",
        "text/plain",
        "text/plain; charset=utf-8",
    ],
)
def test_json_media_types_and_none_are_accepted(
    server: ServerProcess, route: str, content_type: str | None
) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = post(server, f"/seq/dev/main/{route}", content=_body("{}"), headers=headers)
    assert response.status_code == OK[route], response.text


# --- the reader itself -------------------------------------------------------------------------


def _request(body: bytes) -> Request:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    return Request({"type": "http", "method": "POST", "path": "/", "headers": []}, receive)


def test_every_refused_value_is_named_at_once() -> None:
    raw = b'{"message": "\\u0000", "parameters": {"a": NaN, "b": 18446744073709551616, "c": [1e999]}}'
    with pytest.raises(Exception) as caught:
        asyncio.run(read_model(_request(raw), ExecuteRequest))
    details: dict[str, Any] = getattr(caught.value, "details", {})
    assert [e["loc"] for e in details["errors"]] == [
        ["message"],
        ["parameters", "a"],
        ["parameters", "b"],
        ["parameters", "c", "0"],
    ]


def test_an_ordinary_body_costs_a_few_microseconds() -> None:
    """The policy adds one regex scan to a body without suspect bytes (no walk); measured, with a
    generous bound so a slow machine does not fail it."""
    raw = (
        b'{"message": "summarise the report for me please", "parameters": {"lang": "en", "n": 3,'
        b' "ratio": 0.25, "tags": ["a", "b", "c"]}, "trace": false}'
    )
    loops = 2000
    started = time.perf_counter()
    for _ in range(loops):
        asyncio.run(read_model(_request(raw), ExecuteRequest))
    per_call = (time.perf_counter() - started) / loops
    assert per_call < 0.005, per_call
