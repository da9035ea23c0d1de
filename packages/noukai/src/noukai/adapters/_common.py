"""What both adapters share: the session header names and replay errors as HTTP answers."""

from __future__ import annotations

from typing import Any

from noukai._constants import REPLAY_HEADER, RESPONSE_SESSION_HEADER
from noukai._errors import (
    ReplayDisabledError,
    ReplayError,
    ReplayForbiddenError,
    ReplayInvalidSessionError,
    ReplayLeftoverError,
    ReplayMissError,
    ReplayNoSnapshotsError,
    ReplaySessionExpiredError,
    ReplaySessionNotFoundError,
)

__all__ = ["REPLAY_HEADER", "RESPONSE_SESSION_HEADER", "replay_error_answer"]

_ANSWERS: dict[type[ReplayError], tuple[int, str]] = {
    ReplayForbiddenError: (403, "replay_forbidden"),
    ReplaySessionNotFoundError: (404, "replay_session_not_found"),
    ReplaySessionExpiredError: (410, "replay_session_expired"),
    ReplayInvalidSessionError: (400, "replay_invalid_session"),
    ReplayNoSnapshotsError: (409, "replay_no_snapshots"),
    ReplayMissError: (500, "replay_miss"),
    ReplayLeftoverError: (500, "replay_leftover"),
    ReplayDisabledError: (500, "replay_disabled"),
}


def replay_error_answer(error: ReplayError) -> tuple[int, dict[str, Any]]:
    """The status and JSON body an adapter answers a replay error with."""
    status, kind = _ANSWERS.get(type(error), (500, "replay_error"))
    return status, {"error": kind, "message": error.message}
