"""The published SDK over our request-rate limit: a refused call raises its `RateLimitError`
with `retry_after` (seconds, from our `Retry-After`) and our code, sync and async, for the POSTs
it never retries and for the GETs it retries once before raising."""

from __future__ import annotations

from typing import Any

import pytest

from tests.compat.conftest import noukai_sdk
from tests.conftest import ServerProcess


@pytest.fixture
def limited(make_server: Any, monkeypatch: pytest.MonkeyPatch) -> ServerProcess:
    """A server allowing one request per minute per key; the SDK's `env="dev"` points at it."""
    import noukai_sdk._client

    server: ServerProcess = make_server(env={"NOUKAI_REQUESTS_PER_MINUTE": "1"})
    monkeypatch.setattr(noukai_sdk._client, "DEV_BASE_URL", server.api_url)
    return server


def assert_rate_limited(error: Any) -> None:
    assert isinstance(error, noukai_sdk.RateLimitError)
    assert error.status_code == 429
    assert error.code == "RATE_LIMITED"
    assert isinstance(error.retry_after, float) and 1.0 <= error.retry_after <= 60.0


def test_a_refused_execute_raises_rate_limit_error_with_retry_after(limited: ServerProcess) -> None:
    key = limited.create_key("dev", "main")
    with noukai_sdk.Noukai(api_key=key, env="dev", org="dev", project="main") as client:
        assert client.flow("echo").execute(message="hi").result
        with pytest.raises(noukai_sdk.RateLimitError) as info:
            client.flow("echo").execute(message="again")
    assert_rate_limited(info.value)


def test_a_refused_job_poll_raises_rate_limit_error_after_its_retry(limited: ServerProcess) -> None:
    key = limited.create_key("dev", "main")
    with noukai_sdk.Noukai(api_key=key, env="dev", org="dev", project="main") as client:
        job = client.flow("echo").execute_async(message="queued")
        with pytest.raises(noukai_sdk.RateLimitError) as info:
            job.poll()  # a GET: the SDK retries it once (still refused), then raises
    assert_rate_limited(info.value)


@pytest.mark.anyio
async def test_the_async_client_raises_the_same(limited: ServerProcess) -> None:
    key = limited.create_key("dev", "main")
    async with noukai_sdk.AsyncNoukai(api_key=key, env="dev", org="dev", project="main") as client:
        assert (await client.flow("echo").execute(message="hi")).result
        with pytest.raises(noukai_sdk.RateLimitError) as info:
            await client.flow("echo").execute(message="again")
    assert_rate_limited(info.value)
