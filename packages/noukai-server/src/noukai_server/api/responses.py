"""JSON responses serialised with orjson (several times faster than the stdlib encoder), and the
`responses=` declarations that document them.

Routes build their answers as dicts of exactly the shapes of the `noukai.types.wire` models and send
them with `json_response`: the models describe the bytes in the OpenAPI document (and the contract
test checks every answer against them) but never validate or serialise an answer per request.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import orjson
from starlette.responses import Response

from noukai.types.errors import ErrorCode, status_for_code
from noukai.types.wire import ErrorEnvelope
from noukai_server.api.event_schemas import event_data_schema

Responses = dict[int | str, dict[str, Any]]
"""FastAPI's `responses=` argument: status -> `{"model": ..., "description": ...}` or `content`."""


def json_response(content: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status_code, media_type="application/json")


def answers(model: Any, description: str, status: int = 200) -> Responses:
    """The success answer: a JSON body shaped as `model` (a wire model or a union of them)."""
    return {status: {"model": model, "description": description}}


SSE_MEDIA_TYPE: Final = "text/event-stream"


SSE_EVENT_SCHEMA: Final = {
    "type": "object",
    "description": (
        "One frame of the stream (the schema describes each event, as Open API 3.1 reads an event"
        " stream): `id:` is the event's seq in the run's log, `event:` its type, `data:` its JSON"
        " object, which carries the same type as `eventType`. Frames end with a blank line (LF"
        " only); `: ping` comment frames are heartbeats, and a `retry:` hint may come first."
    ),
    "required": ["event", "data"],
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9]+$", "description": "The event's seq."},
        "event": {"type": "string", "description": "The event type, e.g. `step_completed`."},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": event_data_schema(),
        },
        "retry": {"type": "integer", "minimum": 0},
    },
}


def streams(description: str) -> Responses:
    """A 200 `text/event-stream` of the run's events."""
    return {200: {"description": description, "content": {SSE_MEDIA_TYPE: {"schema": SSE_EVENT_SCHEMA}}}}


_TITLES: Final = {
    400: "The request cannot be served as sent",
    401: "No API key, or an invalid or revoked one",
    403: "The key belongs to another org or project",
    404: "Nothing at this address",
    405: "Method not allowed",
    409: "Conflicts with the run's or flow's state",
    410: "Gone after the retention period",
    413: "Too large",
    415: "The body is not sent as JSON (send Content-Type: application/json)",
    422: "Invalid request, or a run that failed on its input",
    429: "Rate limited",
    500: "The server (or the flow's own function) failed",
    502: "The model provider failed or refused",
    503: "Temporarily unavailable",
    504: "The model provider timed out",
}

KEYED: Final = (ErrorCode.UNAUTHENTICATED, ErrorCode.INTERNAL_ERROR)
"""What every keyed route can answer: a missing or bad key, and an unexpected failure."""
TENANT: Final = (ErrorCode.FORBIDDEN,)
"""Routes addressed by org and project: a key of another tenant."""
JSON_BODY: Final = (
    ErrorCode.INVALID_JSON,
    ErrorCode.BODY_TOO_LARGE,
    ErrorCode.VALIDATION_ERROR,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE,
)
"""Routes that read a JSON body with `read_model`."""
RUN_FAILURES: Final = (
    ErrorCode.TEMPLATE_ERROR,
    ErrorCode.OUTPUT_NOT_SERIALIZABLE,
    ErrorCode.GUARD_FAILED,
    ErrorCode.FUNCTION_ERROR,
    ErrorCode.MODEL_NOT_FOUND,
    ErrorCode.BYOK_KEY_REJECTED,
    ErrorCode.PROVIDER_ERROR,
    ErrorCode.PROVIDER_BAD_REQUEST,
    ErrorCode.PROVIDER_RATE_LIMITED,
    ErrorCode.PROVIDER_TIMEOUT,
    ErrorCode.TOOL_ITERATION_LIMIT,
    ErrorCode.TOOLS_IN_NON_SEQUENTIAL_STEP,
    ErrorCode.STEP_INTERRUPTED,
    ErrorCode.STEP_TIMEOUT,
    ErrorCode.RUN_CANCELLED,
    ErrorCode.INTERNAL_ERROR,
)
"""The codes a run can end with; `/execute` answers a run that failed quickly with its code."""


def fails(*groups: Iterable[ErrorCode]) -> Responses:
    """The error answers of a route, one per status, each naming the codes it is sent with; every
    one has the `ErrorEnvelope` body."""
    by_status: dict[int, list[str]] = {}
    for group in groups:
        for code in group:
            codes = by_status.setdefault(status_for_code(code), [])
            if code.value not in codes:
                codes.append(code.value)
    return {
        status: {
            "model": ErrorEnvelope,
            "description": f"{_TITLES.get(status, 'Error')}: " + ", ".join(f"`{c}`" for c in codes),
        }
        for status, codes in sorted(by_status.items())
    }


FLOW_ADDRESS: Final = (ErrorCode.FLOW_NOT_FOUND, ErrorCode.INVALID_TREE, ErrorCode.NO_STEPS)
"""Resolving `{org}/{project}/{slug}[/vN]` to a runnable flow."""
STEP_INPUTS: Final = (
    ErrorCode.VALIDATION_ERROR,
    ErrorCode.MISSING_MESSAGE,
    ErrorCode.INVALID_OVERRIDE,
    ErrorCode.TOOLS_INVALID,
    ErrorCode.TOOL_NAME_INVALID,
    ErrorCode.TOOLS_NOT_ENABLED,
    ErrorCode.MESSAGES_TOO_LARGE,
)
"""A new `/step` run's inputs that the flow cannot run with (checked before the run exists)."""
RUN_INPUTS: Final = (*STEP_INPUTS, ErrorCode.MESSAGES_ROLE_INVALID)
"""The same for `/execute` and `/jobs`, which also take `messages` (whose roles are checked)."""
TOOL_RESUME: Final = (
    ErrorCode.EXECUTION_ID_INVALID,
    ErrorCode.PAUSED_STEP_INVALID,
    ErrorCode.INVALID_STEP_INDEX,
    ErrorCode.MESSAGES_TOO_LARGE,
    ErrorCode.TOOL_RESULTS_MISMATCH,
)
"""Tool results sent to a paused run."""
THREAD_TURN: Final = (ErrorCode.THREAD_NOT_FOUND, ErrorCode.THREAD_EXPIRED, ErrorCode.THREAD_BUSY)
"""A run started as a thread's turn (`threadId`)."""
