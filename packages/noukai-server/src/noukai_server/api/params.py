"""Parameters several routes share, each described once: as a FastAPI annotation for the FastAPI
routes and as a `Param` for the plain ones (`noukai_server.api.endpoints`)."""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import Header, Path

from noukai.types.errors import ErrorCode
from noukai_server.api.endpoints import Param
from noukai_server.api.errors import ApiError

VERSION_PATTERN: Final = r"^[vV][0-9]{1,9}$"
"""A version segment that can address a flow (`parse_version_segment`); any other is answered 404
FLOW_NOT_FOUND."""

_ORG = "The org's slug (the API key's org)."
_PROJECT = "The project's slug."
_SLUG = "The flow's slug."
_VERSION = "`v0` for the draft, `vN` for published version N."
_SESSION = "Records the run in this replay session (at most 255 characters; blank records nothing)."
MAX_IDEMPOTENCY_KEY_LENGTH: Final = 255
"""What the store keeps of a key (its token column)."""

_IDEMPOTENCY = (
    "Requests with the same key start one run; a repeat follows the run already started. A key is"
    " remembered for `[limits] idempotency_ttl_seconds` (24 h by default), then may start a new run;"
    " reused with a different request (flow, version, inputs) it is answered 409 IDEMPOTENCY_CONFLICT"
    f" (at most {MAX_IDEMPOTENCY_KEY_LENGTH} characters; blank means none)."
)
_EXECUTION_ID = "The run's execution id."

ORG = Param("org", "path", _ORG)
PROJECT = Param("project", "path", _PROJECT)
SLUG = Param("slug", "path", _SLUG)
VERSION = Param("version", "path", _VERSION, {"type": "string", "pattern": VERSION_PATTERN})
SESSION = Param("X-Session-Id", "header", _SESSION)
EXECUTION_ID = Param("execution_id", "path", _EXECUTION_ID)

Org = Annotated[str, Path(description=_ORG)]
Project = Annotated[str, Path(description=_PROJECT)]
Slug = Annotated[str, Path(description=_SLUG)]
# Documented only: the segment is parsed by `parse_version_segment`, which answers 404 for any other.
Version = Annotated[str, Path(description=_VERSION, json_schema_extra={"pattern": VERSION_PATTERN})]
ExecutionId = Annotated[str, Path(description=_EXECUTION_ID)]
SessionHeader = Annotated[str | None, Header(alias="X-Session-Id", description=_SESSION)]
IdempotencyHeader = Annotated[str | None, Header(alias="Idempotency-Key", description=_IDEMPOTENCY)]


def idempotency_key_of(header: str | None) -> str | None:
    """The run's idempotency key, from `Idempotency-Key`: a blank one means none (as a blank
    `X-Session-Id` records nothing), a longer one than the store keeps is refused (422)."""
    if header is None or not header.strip():
        return None
    if len(header) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise ApiError(
            ErrorCode.VALIDATION_ERROR,
            f"Idempotency-Key is longer than {MAX_IDEMPOTENCY_KEY_LENGTH} characters",
        )
    return header
