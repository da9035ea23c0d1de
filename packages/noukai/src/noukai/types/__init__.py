"""Wire-level types shared by the server and the SDK: error codes, events, request/response models."""

from noukai.types.errors import ErrorCode, status_for_code
from noukai.types.events import PAUSE_EVENTS, SEGMENT_END_EVENTS, TERMINAL_EVENTS
from noukai.types.wire import API_PREFIX

__all__ = [
    "API_PREFIX",
    "PAUSE_EVENTS",
    "SEGMENT_END_EVENTS",
    "TERMINAL_EVENTS",
    "ErrorCode",
    "status_for_code",
]
