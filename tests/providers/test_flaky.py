"""`builtin:flaky`: fails the first `fail_times` attempts of a step, decided from the attempt alone."""

from __future__ import annotations

from typing import Any

import pytest

from noukai_server.providers import (
    ChatMessage,
    FlakyModel,
    ModelRegistry,
    ModelRequest,
    ProviderBadRequest,
    ProviderRateLimited,
    ProviderSettings,
    ProviderTimeout,
    ProviderUnavailable,
    TextDelta,
)
from tests.providers._support import collect, consume

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def request(attempt: int, text: str = "a b", **extra: Any) -> ModelRequest:
    return ModelRequest(model="flaky", messages=(ChatMessage("user", text),), extra=extra, attempt=attempt)


async def test_fails_the_first_attempt_by_default_then_echoes() -> None:
    with pytest.raises(ProviderUnavailable, match="fails attempt 1 of 1 on purpose") as caught:
        await collect(FlakyModel(), request(1))
    assert caught.value.retryable
    deltas, response = await collect(FlakyModel(), request(2))
    assert deltas == [TextDelta("a "), TextDelta("b")]
    assert response.text == "a b" and response.usage.completion_tokens == 2


async def test_the_attempt_decides_not_the_instance() -> None:
    model = FlakyModel()
    for _ in range(3):  # the same attempt fails every time it is asked, in any process
        with pytest.raises(ProviderUnavailable):
            await collect(model, request(2, fail_times=2))
    _, response = await collect(model, request(3, fail_times=2))
    assert response.text == "a b"


async def test_zero_fail_times_never_fails() -> None:
    _, response = await collect(FlakyModel(), request(1, fail_times=0))
    assert response.text == "a b"


@pytest.mark.parametrize(
    ("kind", "error", "retryable"),
    [
        ("unavailable", ProviderUnavailable, True),
        ("rate_limited", ProviderRateLimited, True),
        ("timeout", ProviderTimeout, True),
        ("bad_request", ProviderBadRequest, False),
    ],
)
async def test_error_kinds(kind: str, error: type[Exception], retryable: bool) -> None:
    with pytest.raises(error) as caught:
        await collect(FlakyModel(), request(1, fail_with=kind))
    assert getattr(caught.value, "retryable") is retryable


async def test_streams_some_words_before_failing() -> None:
    seen: list[Any] = []
    with pytest.raises(ProviderUnavailable):
        await consume(FlakyModel().stream(request(1, "one two three", fail_after_words=2)), seen)
    assert seen == [TextDelta("one "), TextDelta("two ")]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"fail_times": -1}, "fail_times must be a non-negative integer"),
        ({"fail_times": "2"}, "fail_times must be a non-negative integer"),
        ({"fail_times": True}, "fail_times must be a non-negative integer"),
        ({"fail_after_words": 1.5}, "fail_after_words must be a non-negative integer"),
        (
            {"fail_with": "explode"},
            "fail_with must be one of unavailable, rate_limited, timeout, bad_request",
        ),
        ({"fail_with": 3}, "fail_with must be one of"),
    ],
)
async def test_bad_params_are_the_flow_authors_mistake(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ProviderBadRequest, match=message):
        await collect(FlakyModel(), request(5, **extra))


def test_registered_as_builtin_flaky() -> None:
    resolved = ModelRegistry(ProviderSettings()).resolve("builtin:flaky")
    assert isinstance(resolved.client, FlakyModel)


def test_the_attempt_never_reaches_a_provider() -> None:
    from noukai_server.providers.anthropic_client import build_params as anthropic_params
    from noukai_server.providers.openai_client import build_params as openai_params

    call = request(3, top_p=0.5)
    for params in (openai_params(call), anthropic_params(call)):
        assert "attempt" not in params and "attempt" not in params.get("extra_body", {})
