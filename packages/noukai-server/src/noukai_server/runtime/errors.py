"""A request the runtime refuses, with a stable wire code. The server maps the code to a status."""

from __future__ import annotations

from typing import Any

from noukai.types.errors import ErrorCode


class RequestRejected(Exception):
    """The caller asked for something that cannot be done; `code` is an `ErrorCode`."""

    def __init__(
        self, code: ErrorCode, message: str, *, headers: dict[str, str] | None = None, **details: Any
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = headers or {}
        """Sent with the answer, e.g. `Retry-After` with a 429 QUEUE_FULL."""
        self.details = details
