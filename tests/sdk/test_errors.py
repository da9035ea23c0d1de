"""The error tree and how answers map onto it."""

from __future__ import annotations

import json

import pytest

import noukai
from noukai._errors import error_from_response


def answer(status: int, body: object, **headers: str) -> noukai.NoukaiError:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return error_from_response(status, {"x-request-id": "req-9", **headers}, raw)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (401, noukai.AuthenticationError),
        (402, noukai.InsufficientCreditsError),
        (403, noukai.PermissionDeniedError),
        (404, noukai.FlowNotFoundError),
        (429, noukai.RateLimitError),
        (400, noukai.FlowExecutionError),
        (409, noukai.FlowExecutionError),
        (410, noukai.FlowExecutionError),
        (422, noukai.FlowExecutionError),
        (500, noukai.FlowExecutionError),
        (502, noukai.FlowExecutionError),
        (302, noukai.FlowExecutionError),
    ],
)
def test_status_to_class(status: int, cls: type[noukai.NoukaiError]) -> None:
    error = answer(status, {"detail": {"code": "SOME_CODE", "message": "text"}})
    assert type(error) is cls
    assert (error.status_code, error.code, error.message, error.request_id) == (
        status,
        "SOME_CODE",
        "text",
        "req-9",
    )
    assert error.response_body == {"detail": {"code": "SOME_CODE", "message": "text"}}


def test_envelope_details_fill_execution_and_step() -> None:
    error = answer(
        422, {"detail": {"code": "TEMPLATE_ERROR", "message": "m", "executionId": "e", "stepId": "s"}}
    )
    assert (error.execution_id, error.step_id) == ("e", "s")
    assert str(error) == "[TEMPLATE_ERROR 422] m"


def test_other_bodies() -> None:
    assert answer(400, {"detail": "plain"}).message == "plain"
    assert answer(400, {"detail": "plain"}).code is None
    listing = answer(422, {"detail": [{"loc": ["body"]}]})
    assert listing.code is None and "loc" in listing.message
    text = answer(500, b"<html>oops</html>")
    assert text.message == "<html>oops</html>" and text.response_body == "<html>oops</html>"
    empty = answer(503, b"")
    assert empty.message == "HTTP 503" and empty.response_body is None


def test_authentication_and_rate_limit_extras() -> None:
    auth = answer(
        401, {"detail": {"code": "UNAUTHENTICATED", "message": "no"}}, **{"www-authenticate": "Bearer"}
    )
    assert isinstance(auth, noukai.AuthenticationError) and auth.www_authenticate == "Bearer"
    limited = answer(429, {"detail": {"code": "RATE_LIMIT", "message": "slow"}}, **{"retry-after": "7"})
    assert isinstance(limited, noukai.RateLimitError) and limited.retry_after == 7.0
    assert answer(429, {}).retry_after is None  # type: ignore[attr-defined]


def test_the_tree() -> None:
    for cls in (
        noukai.AuthenticationError,
        noukai.PermissionDeniedError,
        noukai.FlowNotFoundError,
        noukai.InsufficientCreditsError,
        noukai.RateLimitError,
        noukai.FlowExecutionError,
        noukai.APIConnectionError,
        noukai.ToolCallLimitError,
        noukai.ReplayError,
    ):
        assert issubclass(cls, noukai.NoukaiError)
    assert issubclass(noukai.APITimeoutError, noukai.APIConnectionError)
    for cls in (
        noukai.ReplayMissError,
        noukai.ReplayLeftoverError,
        noukai.ReplayForbiddenError,
        noukai.ReplaySessionNotFoundError,
        noukai.ReplaySessionExpiredError,
        noukai.ReplayInvalidSessionError,
        noukai.ReplayNoSnapshotsError,
        noukai.ReplayDisabledError,
    ):
        assert issubclass(cls, noukai.ReplayError)
    limit = noukai.ToolCallLimitError("too many")
    assert limit.code == "TOOL_CALL_LIMIT_CLIENT" and limit.status_code is None
    assert str(noukai.NoukaiError("bare")) == "bare"
