"""Every error the SDK raises.

```
NoukaiError
├── APIConnectionError          no usable answer: DNS, refused, reset, a stream that could not resume
│   └── APITimeoutError         the call's time budget ran out
├── AuthenticationError         401, or no/malformed API key before anything is sent
├── InsufficientCreditsError    402
├── PermissionDeniedError       403
├── FlowNotFoundError           404: unknown org/project/slug, version or execution id
├── RateLimitError              429 (`.retry_after`)
├── FlowExecutionError          any other non-2xx, and runs that failed or were cancelled
├── ToolCallLimitError          client side: `max_tool_rounds` handler rounds were not enough
└── ReplayError                 client side: session replay
    ├── ReplayMissError, ReplayLeftoverError, ReplayForbiddenError, ReplaySessionNotFoundError,
    └── ReplaySessionExpiredError, ReplayInvalidSessionError, ReplayNoSnapshotsError, ReplayDisabledError
```

Every error carries `status_code`, `code`, `execution_id`, `request_id` and `response_body`
(None where they do not apply).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

__all__ = [
    "APIConnectionError",
    "APITimeoutError",
    "AuthenticationError",
    "FlowExecutionError",
    "FlowNotFoundError",
    "InsufficientCreditsError",
    "NoukaiError",
    "PermissionDeniedError",
    "RateLimitError",
    "ReplayDisabledError",
    "ReplayError",
    "ReplayForbiddenError",
    "ReplayInvalidSessionError",
    "ReplayLeftoverError",
    "ReplayMissError",
    "ReplayNoSnapshotsError",
    "ReplaySessionExpiredError",
    "ReplaySessionNotFoundError",
    "ToolCallLimitError",
]


class NoukaiError(Exception):
    """Base of every SDK error."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        execution_id: str | None = None,
        request_id: str | None = None,
        response_body: Any = None,
        step_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code
        self.execution_id = execution_id
        self.request_id = request_id
        self.response_body = response_body
        self.step_id = step_id

    def __str__(self) -> str:
        parts = [p for p in (self.code, str(self.status_code) if self.status_code else None) if p]
        prefix = f"[{' '.join(parts)}] " if parts else ""
        return f"{prefix}{self.message}"


class APIConnectionError(NoukaiError):
    """The network failed before a usable answer arrived (DNS, refused, reset, TLS), or a stream
    could not be resumed. Usually nobody's mistake; retrying later is reasonable."""


class APITimeoutError(APIConnectionError):
    """The call, or a job wait, ran out of the time it was given (`timeout=`)."""


class AuthenticationError(NoukaiError):
    """The caller's mistake: no API key, a key without the `nk_` prefix, or a key the server
    rejected (401). `.www_authenticate` holds the server's challenge when it sent one."""

    def __init__(self, message: str, *, www_authenticate: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.www_authenticate = www_authenticate


class InsufficientCreditsError(NoukaiError):
    """402: the organisation's balance does not cover the run."""


class PermissionDeniedError(NoukaiError):
    """403: the key is valid but may not use this org, project or session."""


class FlowNotFoundError(NoukaiError):
    """404: the caller named a flow, version, run or job that does not exist (or is not theirs)."""


class RateLimitError(NoukaiError):
    """429: too many requests. `.retry_after` is the wait in seconds the server asked for."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class FlowExecutionError(NoukaiError):
    """Any other error status, or a run that failed or was cancelled. Branch on `.code`
    (`TEMPLATE_ERROR`, `BYOK_KEY_REJECTED`, `RUN_CANCELLED` ...); `.step_id` names the failing step."""


class ToolCallLimitError(NoukaiError):
    """The flow still wanted tool results after `max_tool_rounds` handler rounds. Nothing more was
    sent; raise the limit or find out why the model keeps asking."""

    def __init__(self, message: str, **kwargs: Any) -> None:
        kwargs.setdefault("code", "TOOL_CALL_LIMIT_CLIENT")
        super().__init__(message, **kwargs)


class ReplayError(NoukaiError):
    """Base of the session-replay errors."""


class ReplayMissError(ReplayError):
    """The code made a call that the recorded session has no entry for (slug, kind, position)."""


class ReplayLeftoverError(ReplayError):
    """The replay scope ended with recorded calls the code never made."""


class ReplayForbiddenError(ReplayError):
    """The session belongs to an org or project this key may not read (403)."""


class ReplaySessionNotFoundError(ReplayError):
    """No session has this id (404)."""


class ReplaySessionExpiredError(ReplayError):
    """The session's snapshots were pruned (410)."""


class ReplayInvalidSessionError(ReplayError):
    """The session id is not a UUID, or the server's session payload is malformed."""


class ReplayNoSnapshotsError(ReplayError):
    """A recorded run kept no snapshots (its flow's `trace_capture_mode` was off or metadata only)."""


class ReplayDisabledError(ReplayError):
    """Replay was requested in code while `NOUKAI_REPLAY_ENABLED` is not set."""


_BY_STATUS: dict[int, type[NoukaiError]] = {
    401: AuthenticationError,
    402: InsufficientCreditsError,
    403: PermissionDeniedError,
    404: FlowNotFoundError,
    429: RateLimitError,
}


def parse_body(raw: bytes) -> Any:
    """The body as JSON when it is JSON, else as text (None when empty)."""
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", errors="replace")


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """`Retry-After` in seconds, from a number of seconds or an HTTP date (None when unreadable)."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(seconds, 0.0)


def error_class_for_status(status: int) -> type[NoukaiError]:
    return _BY_STATUS.get(status, FlowExecutionError)


def error_from_response(status: int, headers: Mapping[str, str], raw: bytes) -> NoukaiError:
    """Map an error answer (`{"detail": {"code", "message", ...}}` or anything else) to its class."""
    body = parse_body(raw)
    code = execution_id = step_id = None
    message = f"HTTP {status}"
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, dict):
        code = _str_or_none(detail.get("code"))
        message = _str_or_none(detail.get("message")) or message
        execution_id = _str_or_none(detail.get("executionId"))
        step_id = _str_or_none(detail.get("stepId"))
    elif isinstance(detail, str):
        message = detail
    elif body is not None:
        message = body if isinstance(body, str) else json.dumps(body)
    return make_error(
        status,
        message,
        code=code,
        execution_id=execution_id,
        step_id=step_id,
        request_id=headers.get("x-request-id"),
        response_body=body,
        headers=headers,
    )


def make_error(
    status: int,
    message: str,
    *,
    code: str | None = None,
    execution_id: str | None = None,
    step_id: str | None = None,
    request_id: str | None = None,
    response_body: Any = None,
    headers: Mapping[str, str] | None = None,
) -> NoukaiError:
    cls = error_class_for_status(status)
    common: dict[str, Any] = {
        "status_code": status,
        "code": code,
        "execution_id": execution_id,
        "request_id": request_id,
        "response_body": response_body,
        "step_id": step_id,
    }
    headers = headers or {}
    if cls is AuthenticationError:
        return AuthenticationError(message, www_authenticate=headers.get("www-authenticate"), **common)
    if cls is RateLimitError:
        return RateLimitError(message, retry_after=parse_retry_after(headers.get("retry-after")), **common)
    return cls(message, **common)


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None
