"""The fingerprint of a run-creating request, kept with its `Idempotency-Key` (`runs.request_hash`).

A repeat of the key must be a repeat of the request: the same kind of call (`execute`, `job`,
`step`), the same flow at the same version, the same inputs (message, messages, parameters,
attachments, block overrides, trace, client tools), the same thread and multitask mode and pacing.
Anything else answers 409 IDEMPOTENCY_CONFLICT instead of the other request's run. What does not
define the run (the session id, headers, the API key within the org) is left out, as payment APIs
leave out their metadata.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from noukai.types.errors import ErrorCode
from noukai_server.runtime.errors import RequestRejected
from noukai_server.store import IdempotencyConflict


def request_fingerprint(
    *,
    trigger: str,
    flow_id: str,
    version: int,
    inputs: dict[str, Any],
    thread_id: str | None,
    multitask: str | None,
    pause_after: int | None,
) -> str:
    """SHA-256 (hex) of the canonical JSON (sorted keys, no spaces) of what defines the run."""
    request = {
        "trigger": trigger,
        "flow": flow_id,
        "version": version,
        "inputs": inputs,
        "thread": thread_id,
        "multitask": multitask,
        "pauseAfter": pause_after,
    }
    canonical = orjson.dumps(request, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str)
    return hashlib.sha256(canonical).hexdigest()


def conflict_rejected(conflict: IdempotencyConflict) -> RequestRejected:
    """The 409 a reused key with a different request answers."""
    return RequestRejected(ErrorCode.IDEMPOTENCY_CONFLICT, str(conflict))
