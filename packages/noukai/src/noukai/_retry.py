"""When to retry a request and how long to wait: pure functions, shared by both clients.

A request is *replayable* when sending it twice cannot do anything twice: a GET, an idempotent POST
(cancel), or a run-creating POST carrying an `Idempotency-Key` (the server answers a repeat with the
same run). Only replayable requests are retried: on connection errors and on 408, 429, 500, 502,
503 and 504, honouring `Retry-After`. An error answer that names an `executionId` is a run's outcome
(the run happened and failed) and is never retried. Timeouts are never retried either: the
`timeout` is the caller's budget for the call.

A *refusal* is different: a 429 or 503 that says when to come back (`Retry-After`) and names no
run. The server refused the request before doing anything (RATE_LIMITED, QUEUE_FULL, no free
database connection), so sending it again is safe whatever the request. With
`rate_limit_retries=N` a call waits out up to N refusals (each wait exactly the server's
`Retry-After`, at most `max_rate_limit_wait`), whether or not it is replayable; these do not use
up `max_retries`. Past them, the ordinary rules above apply, and then the error is raised
(`RateLimitError` with `.retry_after` for a 429).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from noukai._constants import RETRY_AFTER_CAP, RETRY_INITIAL_DELAY, RETRY_MAX_DELAY
from noukai._errors import NoukaiError, RateLimitError

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
REFUSAL_STATUSES = frozenset({429, 503})


def refusal_wait(error: NoukaiError, retry_after: float | None) -> float | None:
    """The server's `Retry-After` when `error` is a refusal (see the module docstring), else None."""
    if error.status_code not in REFUSAL_STATUSES or error.execution_id is not None:
        return None
    if isinstance(error, RateLimitError) and error.retry_after is not None:
        return error.retry_after
    return retry_after


def backoff_delay(attempt: int, *, initial: float, maximum: float, rng: random.Random) -> float:
    """Exponential backoff with equal jitter: half the step for sure, the other half at random,
    so clients that failed together do not come back together. `attempt` counts from 1."""
    step = min(maximum, initial * (2 ** max(attempt - 1, 0)))
    half = float(step) / 2
    return half + rng.uniform(0.0, half)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int
    initial_delay: float = RETRY_INITIAL_DELAY
    max_delay: float = RETRY_MAX_DELAY
    retry_after_cap: float = RETRY_AFTER_CAP
    rate_limit_retries: int = 0

    def after_refusal(
        self, refusals_done: int, error: NoukaiError, *, retry_after: float | None = None
    ) -> float | None:
        """Seconds to wait before sending a refused request again, or None (not a refusal, none
        of `rate_limit_retries` left, or a `Retry-After` beyond `retry_after_cap`)."""
        wait = refusal_wait(error, retry_after)
        if wait is None or refusals_done >= self.rate_limit_retries or wait > self.retry_after_cap:
            return None
        return wait

    def after_connection_error(
        self, retries_done: int, *, replayable: bool, rng: random.Random
    ) -> float | None:
        """Seconds to wait before the next try, or None to give up."""
        if not replayable or retries_done >= self.max_retries:
            return None
        return backoff_delay(retries_done + 1, initial=self.initial_delay, maximum=self.max_delay, rng=rng)

    def after_error(
        self,
        retries_done: int,
        error: NoukaiError,
        *,
        replayable: bool,
        rng: random.Random,
        retry_after: float | None = None,
    ) -> float | None:
        """Seconds to wait before retrying an error answer, or None to raise it."""
        if not replayable or retries_done >= self.max_retries:
            return None
        if error.status_code not in RETRYABLE_STATUSES or error.execution_id is not None:
            return None
        delay = backoff_delay(retries_done + 1, initial=self.initial_delay, maximum=self.max_delay, rng=rng)
        if isinstance(error, RateLimitError) and error.retry_after is not None:
            retry_after = error.retry_after
        if retry_after is not None:
            if retry_after > self.retry_after_cap:
                return None  # the server asks for a longer pause than a client should block for
            delay = max(delay, retry_after)
        return delay
