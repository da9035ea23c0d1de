"""Turning a provider's failure into one of the `ModelError` classes of `base.py`.

Both SDKs raise by HTTP status before a stream starts, but a provider can also report an error
*inside* a 200 stream, where only the error's `type` says what went wrong. The helpers here cover
both cases, so the OpenAI and Anthropic adapters classify errors identically.

The operator's API key must never reach a message: auth errors carry no provider text at all
(OpenAI echoes part of a rejected key), and every other text is passed through `redact`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NoReturn

from noukai_server.providers.base import (
    ModelError,
    ProviderAuthError,
    ProviderBadRequest,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)

# Error `type`/`code` strings both providers put in their error bodies, mapped to the HTTP status
# they stand for, so that an in-stream error is classified like the same error sent up front.
_TYPE_STATUS: Mapping[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "invalid_api_key": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "timeout_error": 408,
    "rate_limit_error": 429,
    "rate_limit_exceeded": 429,
    "insufficient_quota": 429,
    "api_error": 500,
    "server_error": 500,
    "overloaded_error": 529,
}


def redact(text: str, secret: str | None) -> str:
    """`text` with every occurrence of `secret` masked (a no-op without a secret)."""
    if not secret:
        return text
    return text.replace(secret, "***")


def body_message(body: object) -> str | None:
    """The human-readable message of a provider error body, `{"message"}` or `{"error": {"message"}}`."""
    if not isinstance(body, Mapping):
        return None
    inner = body.get("error")
    if isinstance(inner, Mapping):
        body = inner
    message = body.get("message")
    return message if isinstance(message, str) and message else None


def _class_for_status(status: int) -> type[ModelError]:
    if status in (401, 403):
        return ProviderAuthError
    if status == 408:
        return ProviderTimeout
    if status == 429:
        return ProviderRateLimited
    if status >= 500:
        return ProviderUnavailable
    return ProviderBadRequest


def error_for_status(provider: str, status: int, detail: str | None, *, secret: str | None) -> ModelError:
    """The error for a non-2xx answer; `detail` is the provider's own message, when it gave one."""
    cls = _class_for_status(status)
    if cls is ProviderAuthError:
        return cls(f"{provider} rejected the configured API key (HTTP {status})", status=status)
    text = f"{provider} answered HTTP {status}"
    if detail:
        text += f": {redact(detail, secret)}"
    return cls(text, status=status)


def error_for_stream_type(
    provider: str, error_type: str | None, detail: str | None, *, secret: str | None
) -> ModelError:
    """The error for one reported inside an already started stream, classified by its `type`.

    An unknown type counts as a server fault: the request was accepted, so the failure is theirs.
    """
    status = _TYPE_STATUS.get(error_type or "", 500)
    cls = _class_for_status(status)
    if cls is ProviderAuthError:
        return cls(f"{provider} rejected the configured API key mid-stream ({error_type})")
    text = f"{provider} reported an error mid-stream ({error_type or 'unknown'})"
    if detail:
        text += f": {redact(detail, secret)}"
    return cls(text)


def connection_error(provider: str, base_url: str) -> ModelError:
    return ProviderUnavailable(f"could not reach {provider} at {base_url}")


def timeout_error(provider: str, timeout: float) -> ModelError:
    return ProviderTimeout(f"{provider} did not answer within {timeout:g}s")


def malformed_stream(provider: str) -> ModelError:
    return ProviderUnavailable(f"{provider} sent a stream that is not valid JSON server-sent events")


def raise_mapped(error: ModelError, cause: BaseException) -> NoReturn:
    """Raise `error` chained to the SDK's `cause`, except for auth errors.

    The SDK's own exception keeps the provider's text, which for a rejected key can echo (part of)
    the key, and a chained cause ends up in every logged traceback.
    """
    if isinstance(error, ProviderAuthError):
        raise error from None
    raise error from cause
