"""Our SDK against a real server with a tiny request rate: a refused call raises `RateLimitError`
with the server's `retry_after`; `rate_limit_retries=N` waits out N refusals (exactly the server's
`Retry-After`, at most `max_rate_limit_wait`), even for calls that are not otherwise replayable,
then succeeds or raises. 503s that say when to come back are refusals too (fake server)."""

from __future__ import annotations

import sqlite3
from typing import Any

import anyio
import pytest

import noukai
from tests.conftest import ServerProcess
from tests.sdk.conftest import fake_client, json_response


@pytest.fixture
def limited(make_server: Any) -> ServerProcess:
    """One request per minute per key: every test uses keys of its own."""
    server: ServerProcess = make_server(env={"NOUKAI_REQUESTS_PER_MINUTE": "1"})
    return server


def sdk(server: ServerProcess, key: str, **kwargs: Any) -> noukai.Noukai:
    return noukai.Noukai(api_key=key, base_url=server.base_url, org="dev", project="main", **kwargs)


def threads_in(server: ServerProcess) -> int:
    with sqlite3.connect(server.data_dir / "noukai.db") as conn:
        return int(conn.execute("SELECT count(*) FROM threads").fetchone()[0])


def test_a_refused_call_raises_rate_limit_error_with_retry_after(limited: ServerProcess) -> None:
    with sdk(limited, limited.create_key("dev", "main"), max_retries=0) as client:
        assert client.flow("echo").execute(message="hi").result
        with pytest.raises(noukai.RateLimitError) as info:
            client.flow("echo").execute(message="again")
    error = info.value
    assert error.status_code == 429 and error.code == "RATE_LIMITED"
    assert isinstance(error.retry_after, float) and 1.0 <= error.retry_after <= 60.0
    assert error.retry_after == float(error.retry_after // 1)  # whole seconds, as sent


def test_refusals_are_waited_out_exactly_then_raised(limited: ServerProcess, slept: list[float]) -> None:
    """`slept` records the waits instead of sleeping: every retry is refused again."""
    events: list[dict[str, Any]] = []
    key = limited.create_key("dev", "main")
    with sdk(limited, key, max_retries=0, rate_limit_retries=2, log_handler=events.append) as client:
        client.threads.create()
        before = threads_in(limited)
        with pytest.raises(noukai.RateLimitError) as info:
            client.threads.create()  # a POST without Idempotency-Key: not replayable otherwise
    assert len(slept) == 2 and all(1 <= wait <= 60 and wait == int(wait) for wait in slept)
    assert info.value.retry_after is not None and info.value.retry_after <= slept[0]
    retries = [e for e in events if e["phase"] == "retry"]
    assert [(e["reason"], e["delay"]) for e in retries] == [("HTTP 429", wait) for wait in slept]
    assert threads_in(limited) == before  # three refused requests, nothing created


def test_a_retry_after_beyond_the_cap_raises_at_once(limited: ServerProcess, slept: list[float]) -> None:
    key = limited.create_key("dev", "main")
    with sdk(limited, key, rate_limit_retries=5, max_rate_limit_wait=0.5) as client:
        client.threads.create()
        with pytest.raises(noukai.RateLimitError) as info:
            client.threads.create()
    assert slept == [] and info.value.retry_after is not None and info.value.retry_after >= 1


def test_by_default_a_call_that_is_not_replayable_is_not_retried(
    limited: ServerProcess, slept: list[float]
) -> None:
    with sdk(limited, limited.create_key("dev", "main")) as client:
        assert client.rate_limit_retries == 0
        client.threads.create()
        with pytest.raises(noukai.RateLimitError):
            client.threads.create()
    assert slept == []


def test_the_async_client_waits_for_real_and_then_succeeds(limited: ServerProcess) -> None:
    """No recorded sleep here: the client really waits out the server's `Retry-After` (up to a
    minute: the rate's window), and the second call then goes through."""
    key = limited.create_key("dev", "main")
    events: list[dict[str, Any]] = []

    async def main() -> tuple[str, str]:
        async with noukai.AsyncNoukai(
            api_key=key,
            base_url=limited.base_url,
            org="dev",
            project="main",
            max_retries=0,
            rate_limit_retries=1,
            max_rate_limit_wait=61,
            log_handler=events.append,
        ) as client:
            first = await client.threads.create()
            second = await client.threads.create()
            return first.id, second.id

    first, second = anyio.run(main)
    assert first != second
    retries = [e for e in events if e["phase"] == "retry"]
    assert len(retries) == 1 and retries[0]["reason"] == "HTTP 429" and 1 <= retries[0]["delay"] <= 60


# -- against a fake server: what only another server (or a proxy) would answer -------------------


def test_a_503_with_retry_after_is_a_refusal_and_one_without_is_not(slept: list[float]) -> None:
    """`max_retries=0`: only the refusal rule can send these again."""
    answers = [
        json_response(
            503, {"detail": {"code": "SERVICE_UNAVAILABLE", "message": "busy"}}, {"Retry-After": "2"}
        ),
        json_response(200, {"executionId": "e1", "status": "running"}),
    ]
    with fake_client(lambda r: answers.pop(0), max_retries=0, rate_limit_retries=1) as client:
        assert client.runs.retrieve("e1").status == "running"
    assert slept == [2.0]
    with (
        fake_client(lambda r: json_response(503, {}), max_retries=0, rate_limit_retries=3) as client,
        pytest.raises(noukai.FlowExecutionError) as info,
    ):
        client.runs.retrieve("e1")
    assert info.value.status_code == 503 and slept == [2.0]  # no Retry-After: not a refusal


def test_an_answer_that_names_a_run_is_never_a_refusal(slept: list[float]) -> None:
    body = {"detail": {"code": "PROVIDER_RATE_LIMITED", "message": "x", "executionId": "e1"}}
    with (
        fake_client(lambda r: json_response(429, body, {"Retry-After": "1"}), rate_limit_retries=3) as client,
        pytest.raises(noukai.RateLimitError) as info,
    ):
        client.flow("g").execute(message="hi")
    assert info.value.execution_id == "e1" and slept == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate_limit_retries": -1}, "rate_limit_retries must be an int >= 0"),
        ({"rate_limit_retries": True}, "rate_limit_retries must be an int >= 0"),
        ({"max_rate_limit_wait": -1}, "max_rate_limit_wait must be a number of seconds >= 0"),
        ({"max_rate_limit_wait": float("inf")}, "max_rate_limit_wait must be a number of seconds >= 0"),
    ],
)
def test_bad_options_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        noukai.Noukai(api_key="nk_test", base_url="http://fake", **kwargs)
