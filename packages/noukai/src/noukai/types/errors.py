"""Stable error codes of the wire contract and the HTTP status each one is answered with.

Every error the server sends is `{"detail": {"code": <ErrorCode>, "message": <text>, ...}}`. The
published SDK maps the *status* to an exception class (401, 402, 403, 404, 429 have their own; every
other non-2xx is `FlowExecutionError`) and exposes the *code* as `err.code`, so both halves matter.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    # Authentication and tenancy
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    # Addressing
    FLOW_NOT_FOUND = "FLOW_NOT_FOUND"
    RUN_NOT_FOUND = "RUN_NOT_FOUND"
    SESSION_NOT_FOUND = "SESSION_NOT_FOUND"
    SESSION_EXPIRED = "SESSION_EXPIRED"
    EVENTS_EXPIRED = "EVENTS_EXPIRED"
    INVALID_VERSION = "INVALID_VERSION"
    NOT_FOUND = "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    # Flow definitions
    INVALID_TREE = "INVALID_TREE"
    NO_STEPS = "NO_STEPS"
    FLOW_NOT_PUBLISHABLE = "FLOW_NOT_PUBLISHABLE"
    # Request bodies
    VALIDATION_ERROR = "VALIDATION_ERROR"
    INVALID_JSON = "INVALID_JSON"
    MISSING_MESSAGE = "MISSING_MESSAGE"
    MESSAGES_ROLE_INVALID = "MESSAGES_ROLE_INVALID"
    MESSAGES_TOO_LARGE = "MESSAGES_TOO_LARGE"
    BODY_TOO_LARGE = "BODY_TOO_LARGE"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    """A request body sent with a Content-Type that is not JSON (a form, say); see `api/body.py`."""
    INVALID_OVERRIDE = "INVALID_OVERRIDE"
    # Step protocol
    INVALID_STEP_INDEX = "INVALID_STEP_INDEX"
    INVALID_FIRST_CALL = "INVALID_FIRST_CALL"
    STALE_TREE = "STALE_TREE"
    RUN_NOT_RESUMABLE = "RUN_NOT_RESUMABLE"
    # Tools
    TOOLS_NOT_ENABLED = "TOOLS_NOT_ENABLED"
    TOOLS_INVALID = "TOOLS_INVALID"
    TOOL_NAME_INVALID = "TOOL_NAME_INVALID"
    PAUSED_STEP_INVALID = "PAUSED_STEP_INVALID"
    EXECUTION_ID_INVALID = "EXECUTION_ID_INVALID"
    TOOL_RESULTS_MISMATCH = "TOOL_RESULTS_MISMATCH"
    TOOL_ITERATION_LIMIT = "TOOL_ITERATION_LIMIT"
    TOOLS_REQUIRE_SYNC_EXECUTE = "TOOLS_REQUIRE_SYNC_EXECUTE"
    TOOLS_IN_NON_SEQUENTIAL_STEP = "TOOLS_IN_NON_SEQUENTIAL_STEP"
    # Step execution
    TEMPLATE_ERROR = "TEMPLATE_ERROR"
    FUNCTION_ERROR = "FUNCTION_ERROR"
    MODEL_NOT_FOUND = "MODEL_NOT_FOUND"
    BYOK_KEY_REJECTED = "BYOK_KEY_REJECTED"
    PROVIDER_ERROR = "PROVIDER_ERROR"
    PROVIDER_RATE_LIMITED = "PROVIDER_RATE_LIMITED"
    PROVIDER_TIMEOUT = "PROVIDER_TIMEOUT"
    PROVIDER_BAD_REQUEST = "PROVIDER_BAD_REQUEST"
    RUN_CANCELLED = "RUN_CANCELLED"
    STEP_INTERRUPTED = "STEP_INTERRUPTED"
    """A step attempt stopped because its worker was lost (crash, kill); the step runs again."""
    STEP_TIMEOUT = "STEP_TIMEOUT"
    """A step attempt ran past the step's `timeout_seconds` and was stopped; retried like a
    provider timeout while the step's retry policy allows."""
    OUTPUT_NOT_SERIALIZABLE = "OUTPUT_NOT_SERIALIZABLE"
    """A step produced a value its run's log cannot store as JSON (an integer outside 64 bits, a
    non-JSON type such as a set or an object): the step fails at once, without retries."""
    GUARD_FAILED = "GUARD_FAILED"
    """A guard (a flow's `input_guards`, a step's `guards`) refused the run's input or a step's
    output with `on_fail: fail` (or `retry`, once the step's attempts ran out); the message names
    the guard and says why."""
    # Flows that run flows (`flow` steps, agents' `flow:` tools)
    FLOW_CYCLE = "FLOW_CYCLE"
    """A pushed flow reaches itself through the flows its `flow` steps or `flow:` tools run."""
    SUBFLOW_FAILED = "SUBFLOW_FAILED"
    """The child run of a `flow` step (or `flow:` tool) failed; the message carries its error."""
    SUBFLOW_CANCELLED = "SUBFLOW_CANCELLED"
    """The child run of a `flow` step was cancelled on its own, so the step cannot complete."""
    SUBFLOW_TOO_DEEP = "SUBFLOW_TOO_DEEP"
    """Flows nested past the server's depth limit (a guard against cycles through draft changes)."""
    SUBFLOW_INVALID = "SUBFLOW_INVALID"
    """A `flow` step names a flow that does not exist, is in another org, or refuses its inputs."""
    # Threads (multi-turn conversations kept by the server)
    THREAD_NOT_FOUND = "THREAD_NOT_FOUND"
    """No such thread for this API key's org and project (another tenant's looks the same)."""
    THREAD_EXPIRED = "THREAD_EXPIRED"
    """The thread outlived its TTL; retention erases it soon."""
    THREAD_BUSY = "THREAD_BUSY"
    """The thread has an active run: wait for it, send `multitask: "enqueue"`, or cancel it."""
    THREAD_POSITION_INVALID = "THREAD_POSITION_INVALID"
    """A fork position past the thread's last message, or a malformed thread stream cursor."""
    # Traces and sessions
    STEP_NOT_FOUND = "STEP_NOT_FOUND"
    ATTEMPT_NOT_FOUND = "ATTEMPT_NOT_FOUND"
    RUN_TIMEOUT = "RUN_TIMEOUT"
    """The run ran past its total deadline (the flow's `run_timeout_seconds`, capped by the
    server's maximum) and was stopped at once, whatever step it was in."""
    # Quotas and credits
    RATE_LIMITED = "RATE_LIMITED"
    """Over a requests-per-minute quota of the key or its org: retry after `Retry-After` seconds;
    the `X-RateLimit-*` headers say the limit, what is left and when the window resets."""
    RATE_LIMIT = "RATE_LIMIT"
    """The wire contract's older spelling of RATE_LIMITED; the server answers RATE_LIMITED."""
    QUEUE_FULL = "QUEUE_FULL"
    """The key or its org already has its maximum of queued runs: retry after `Retry-After`."""
    INSUFFICIENT_CREDITS = "INSUFFICIENT_CREDITS"
    """The org has a credit balance and it is not positive: the run was refused before it started."""
    CREDITS_EXHAUSTED = "CREDITS_EXHAUSTED"
    """The org's balance ran out while the run was going: it failed at the next step boundary,
    charged for what it did."""
    RERUN_NOT_POSSIBLE = "RERUN_NOT_POSSIBLE"
    """A rerun from a step needs every earlier step's output from the original run, and one of
    them did not complete there (or the original paused for client tools, which a rerun cannot
    answer)."""
    # Service
    IDEMPOTENCY_CONFLICT = "IDEMPOTENCY_CONFLICT"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    """The server is out of database connections for the moment; nothing was done. Retry after
    the `Retry-After` seconds."""
    INTERNAL_ERROR = "INTERNAL_ERROR"


_STATUS: dict[ErrorCode, int] = {
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.FLOW_NOT_FOUND: 404,
    ErrorCode.RUN_NOT_FOUND: 404,
    ErrorCode.SESSION_NOT_FOUND: 404,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.SESSION_EXPIRED: 410,
    ErrorCode.EVENTS_EXPIRED: 410,
    ErrorCode.INVALID_VERSION: 400,
    ErrorCode.INVALID_TREE: 400,
    ErrorCode.NO_STEPS: 400,
    ErrorCode.FLOW_NOT_PUBLISHABLE: 409,
    ErrorCode.VALIDATION_ERROR: 422,
    ErrorCode.INVALID_JSON: 400,
    ErrorCode.MISSING_MESSAGE: 400,
    ErrorCode.MESSAGES_ROLE_INVALID: 400,
    ErrorCode.MESSAGES_TOO_LARGE: 413,
    ErrorCode.BODY_TOO_LARGE: 413,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorCode.INVALID_OVERRIDE: 400,
    ErrorCode.INVALID_STEP_INDEX: 400,
    ErrorCode.INVALID_FIRST_CALL: 400,
    ErrorCode.STALE_TREE: 409,
    ErrorCode.RUN_NOT_RESUMABLE: 409,
    ErrorCode.TOOLS_NOT_ENABLED: 400,
    ErrorCode.TOOLS_INVALID: 400,
    ErrorCode.TOOL_NAME_INVALID: 400,
    ErrorCode.PAUSED_STEP_INVALID: 400,
    ErrorCode.EXECUTION_ID_INVALID: 400,
    ErrorCode.TOOL_RESULTS_MISMATCH: 400,
    ErrorCode.TOOL_ITERATION_LIMIT: 422,
    ErrorCode.TOOLS_REQUIRE_SYNC_EXECUTE: 400,
    ErrorCode.TOOLS_IN_NON_SEQUENTIAL_STEP: 422,
    ErrorCode.TEMPLATE_ERROR: 422,
    ErrorCode.FUNCTION_ERROR: 500,
    ErrorCode.MODEL_NOT_FOUND: 422,
    ErrorCode.BYOK_KEY_REJECTED: 502,
    ErrorCode.PROVIDER_ERROR: 502,
    ErrorCode.PROVIDER_RATE_LIMITED: 503,
    ErrorCode.PROVIDER_TIMEOUT: 504,
    ErrorCode.STEP_TIMEOUT: 504,
    ErrorCode.PROVIDER_BAD_REQUEST: 502,
    ErrorCode.RUN_CANCELLED: 409,
    ErrorCode.STEP_INTERRUPTED: 503,
    ErrorCode.OUTPUT_NOT_SERIALIZABLE: 422,
    ErrorCode.GUARD_FAILED: 422,
    ErrorCode.FLOW_CYCLE: 422,
    ErrorCode.SUBFLOW_FAILED: 422,
    ErrorCode.SUBFLOW_CANCELLED: 409,
    ErrorCode.SUBFLOW_TOO_DEEP: 422,
    ErrorCode.SUBFLOW_INVALID: 422,
    ErrorCode.THREAD_NOT_FOUND: 404,
    ErrorCode.THREAD_EXPIRED: 410,
    ErrorCode.THREAD_BUSY: 409,
    ErrorCode.THREAD_POSITION_INVALID: 400,
    ErrorCode.STEP_NOT_FOUND: 404,
    ErrorCode.ATTEMPT_NOT_FOUND: 404,
    ErrorCode.RUN_TIMEOUT: 504,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.RATE_LIMIT: 429,
    ErrorCode.QUEUE_FULL: 429,
    ErrorCode.INSUFFICIENT_CREDITS: 402,
    ErrorCode.CREDITS_EXHAUSTED: 402,
    ErrorCode.RERUN_NOT_POSSIBLE: 409,
    ErrorCode.IDEMPOTENCY_CONFLICT: 409,
    ErrorCode.SERVICE_UNAVAILABLE: 503,
    ErrorCode.INTERNAL_ERROR: 500,
}


def status_for_code(code: str) -> int:
    """HTTP status the server answers an error code with (500 for codes it does not know)."""
    try:
        return _STATUS[ErrorCode(code)]
    except ValueError:
        return 500
