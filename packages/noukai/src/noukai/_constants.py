"""Defaults and fixed wire values of the SDK."""

from __future__ import annotations

from typing import Final

from noukai.types import API_PREFIX
from noukai.types import events as ev

PRODUCTION_BASE_URL: Final = f"https://api.noukai.xyz{API_PREFIX}"
DEV_BASE_URL: Final = f"http://localhost:8080{API_PREFIX}"
API_VERSION: Final = "2026-05-31"
"""Sent as `X-Noukai-API-Version` on every request, as the published SDK does."""

DEFAULT_TIMEOUT: Final = 300.0
DEFAULT_MAX_RETRIES: Final = 1
DEFAULT_MAX_TOOL_ROUNDS: Final = 10

RETRY_INITIAL_DELAY: Final = 0.5
RETRY_MAX_DELAY: Final = 8.0
RETRY_AFTER_CAP: Final = 60.0
"""A `Retry-After` longer than this is not waited for: the error is raised instead."""
DEFAULT_RATE_LIMIT_RETRIES: Final = 0
"""Refusals (429/503 with `Retry-After`) waited out per call unless the caller asks for more."""

HEARTBEAT_SECONDS: Final = 15.0
"""The server's default heartbeat interval; a stream silent for three of them is dead."""
MISSED_HEARTBEATS: Final = 3
MAX_RECONNECTS: Final = 10
RECONNECT_INITIAL_DELAY: Final = 0.25
RECONNECT_MAX_DELAY: Final = 8.0

JOB_POLL_INTERVAL: Final = 2.0
JOB_WAIT_TIMEOUT: Final = 300.0
JOB_NOT_FOUND_GRACE: Final = 5.0
"""A job may briefly be unknown right after it was accepted: a 404 this soon means pending."""

REPLAY_ENV: Final = "NOUKAI_REPLAY_ENABLED"
SESSION_HEADER: Final = "X-Session-Id"
REPLAY_HEADER: Final = "X-Noukai-Replay"
RESPONSE_SESSION_HEADER: Final = "X-Noukai-Session"

TOOL_CALLS_REQUIRED: Final = "tool_calls_required"
"""The SDK's name for the wire's `step_paused_for_tool_calls` (every other name is the wire's)."""
TERMINAL_EVENT_TYPES: Final = ev.TERMINAL_EVENTS
"""The run's last event (SDK names: the same as the wire's)."""
SEGMENT_END_TYPES: Final = frozenset(
    TOOL_CALLS_REQUIRED if name == ev.STEP_PAUSED_FOR_TOOL_CALLS else name for name in ev.SEGMENT_END_EVENTS
)
"""Where one `/step` answer ends (SDK event type names)."""
