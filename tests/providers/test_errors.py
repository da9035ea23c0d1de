"""The classification helpers shared by both SDK adapters."""

from __future__ import annotations

import pytest

from noukai_server.providers import (
    ModelError,
    ProviderAuthError,
    ProviderBadRequest,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)
from noukai_server.providers._errors import (
    body_message,
    error_for_status,
    error_for_stream_type,
    raise_mapped,
    redact,
)


def test_redact_masks_the_secret_everywhere() -> None:
    assert redact("key sk-1 and sk-1 again", "sk-1") == "key *** and *** again"
    assert redact("nothing to hide", None) == "nothing to hide"
    assert redact("nothing to hide", "") == "nothing to hide"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"error": {"message": "nested"}}, "nested"),
        ({"message": "flat"}, "flat"),
        ({"error": "a string"}, None),
        ({"message": ""}, None),
        ("plain text", None),
        (None, None),
    ],
)
def test_body_message(body: object, message: str | None) -> None:
    assert body_message(body) == message


def test_status_errors_redact_the_key_from_provider_text() -> None:
    error = error_for_status("openai", 400, "bad key sk-secret in body", secret="sk-secret")
    assert isinstance(error, ProviderBadRequest)
    assert "sk-secret" not in error.message
    assert error.message == "openai answered HTTP 400: bad key *** in body"


def test_auth_errors_carry_no_provider_text() -> None:
    error = error_for_status("openai", 401, "Incorrect API key provided: sk-sec****", secret="sk-secret")
    assert isinstance(error, ProviderAuthError)
    assert "sk-sec" not in error.message


def test_status_without_detail() -> None:
    assert error_for_status("x", 503, None, secret=None).message == "x answered HTTP 503"


@pytest.mark.parametrize(
    ("error_type", "error_class"),
    [
        ("overloaded_error", ProviderUnavailable),
        ("api_error", ProviderUnavailable),
        ("server_error", ProviderUnavailable),
        ("rate_limit_error", ProviderRateLimited),
        ("rate_limit_exceeded", ProviderRateLimited),
        ("invalid_request_error", ProviderBadRequest),
        ("not_found_error", ProviderBadRequest),
        ("authentication_error", ProviderAuthError),
        ("permission_error", ProviderAuthError),
        ("timeout_error", ProviderTimeout),
        ("something_new", ProviderUnavailable),
        (None, ProviderUnavailable),
    ],
)
def test_in_stream_errors_are_classified_by_type(
    error_type: str | None, error_class: type[ModelError]
) -> None:
    error = error_for_stream_type("p", error_type, "detail sk-1", secret="sk-1")
    assert type(error) is error_class
    assert error.status is None
    assert "sk-1" not in error.message


def test_raise_mapped_chains_the_cause_except_for_auth_errors() -> None:
    cause = RuntimeError("sdk text")
    with pytest.raises(ProviderUnavailable) as caught:
        raise_mapped(ProviderUnavailable("down"), cause)
    assert caught.value.__cause__ is cause
    with pytest.raises(ProviderAuthError) as auth:
        raise_mapped(ProviderAuthError("no"), cause)
    assert auth.value.__cause__ is None
    assert auth.value.__suppress_context__
