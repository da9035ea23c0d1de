"""The errors an in-process call raises: the SDK's own classes, chosen by the same stable code and
HTTP status as a call to `noukai serve` would get, so one `except` clause serves both."""

from __future__ import annotations

from noukai._errors import NoukaiError, make_error
from noukai.types.errors import ErrorCode, status_for_code


def sdk_error(
    code: ErrorCode | str,
    message: str,
    *,
    run_id: str | None = None,
    step_id: str | None = None,
) -> NoukaiError:
    """The SDK's error for `code` (the class its HTTP status maps to), as the SDK raises it."""
    text = code.value if isinstance(code, ErrorCode) else code
    return make_error(status_for_code(text), message, code=text, execution_id=run_id, step_id=step_id)
