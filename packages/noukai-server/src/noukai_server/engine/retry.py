"""Backoff between the attempts of a step (pure: the jitter comes from the caller)."""

from __future__ import annotations

from typing import Final

from noukai_server.flows import RetryPolicy

MIN_ATTEMPTS_AFTER_INTERRUPTION: Final = 3
"""An interrupted attempt (its worker was lost) counts like a failed one, but a step may always
run at least this many times in all: turning retries off must not turn a server restart into a
failed run, while a step that kills its worker every time still ends."""


def backoff_seconds(policy: RetryPolicy, attempt: int, jitter: float) -> float:
    """The wait after failed attempt `attempt` (1-based): exponential, capped, with "equal jitter".

    `jitter` is a number in [0, 1); the wait is between half and all of the capped exponential,
    so retries of many runs spread out but never come back at once.
    """
    if attempt < 1:
        raise ValueError(f"attempts count from 1, got {attempt}")
    if not 0.0 <= jitter <= 1.0:
        raise ValueError(f"jitter must be within [0, 1], got {jitter}")
    exponent = min(attempt - 1, 62)  # 2**62 * any sane initial backoff is past every cap
    ceiling = min(policy.max_backoff_seconds, policy.initial_backoff_seconds * 2.0**exponent)
    return ceiling / 2 + ceiling / 2 * jitter
