"""Retry decisions and backoff."""

from __future__ import annotations

import random

import pytest

from noukai._errors import FlowExecutionError, NoukaiError, RateLimitError, parse_retry_after
from noukai._retry import RetryPolicy, backoff_delay


def test_backoff_is_exponential_with_real_jitter() -> None:
    rng = random.Random(1)
    for attempt, step in ((1, 0.5), (2, 1.0), (3, 2.0), (6, 8.0), (20, 8.0)):
        values = {backoff_delay(attempt, initial=0.5, maximum=8.0, rng=rng) for _ in range(50)}
        assert all(step / 2 <= v <= step for v in values)
        assert len(values) > 40  # not a fixed factor


def error(status: int, **kwargs: object) -> NoukaiError:
    return FlowExecutionError("x", status_code=status, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_retryable_statuses(status: int) -> None:
    policy = RetryPolicy(max_retries=2)
    rng = random.Random(0)
    assert policy.after_error(0, error(status), replayable=True, rng=rng) is not None
    assert policy.after_error(1, error(status), replayable=True, rng=rng) is not None
    assert policy.after_error(2, error(status), replayable=True, rng=rng) is None
    assert policy.after_error(0, error(status), replayable=False, rng=rng) is None


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 410, 422, 501])
def test_other_statuses_are_final(status: int) -> None:
    assert (
        RetryPolicy(max_retries=3).after_error(0, error(status), replayable=True, rng=random.Random()) is None
    )


def test_a_failed_run_is_not_retried() -> None:
    failed = error(502, execution_id="run-1", code="BYOK_KEY_REJECTED")
    assert RetryPolicy(max_retries=3).after_error(0, failed, replayable=True, rng=random.Random()) is None


def test_retry_after_is_honoured_and_capped() -> None:
    policy = RetryPolicy(max_retries=1)
    rng = random.Random()
    limited = RateLimitError("slow down", status_code=429, retry_after=3.0)
    assert policy.after_error(0, limited, replayable=True, rng=rng) == 3.0
    assert policy.after_error(0, error(503), replayable=True, rng=rng, retry_after=2.5) == 2.5
    assert policy.after_error(0, error(503), replayable=True, rng=rng, retry_after=600) is None


def test_zero_retries_means_none() -> None:
    policy = RetryPolicy(max_retries=0)
    assert policy.after_error(0, error(503), replayable=True, rng=random.Random()) is None
    assert policy.after_connection_error(0, replayable=True, rng=random.Random()) is None
    assert RetryPolicy(max_retries=1).after_connection_error(0, replayable=False, rng=random.Random()) is None
    assert (
        RetryPolicy(max_retries=1).after_connection_error(0, replayable=True, rng=random.Random()) is not None
    )


def test_parse_retry_after() -> None:
    assert parse_retry_after(None) is None
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("-1") == 0.0
    assert parse_retry_after("nan") is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0
