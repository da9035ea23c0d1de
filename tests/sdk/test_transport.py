"""Headers, retries, time budgets and the logging hook, against a fake server."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest

import noukai
from tests.sdk.conftest import ScriptedStream, fake_async_client, fake_client, json_response

RESULT = {"status": "completed", "result": "ok", "executionId": "e1", "flowId": "f", "blockCount": 1}


def test_every_request_carries_the_contract_headers() -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return json_response(200, RESULT)

    with fake_client(handler) as client:
        client.flow("grade-3").execute(message="hi")
    headers = seen[0].headers
    assert headers["authorization"] == "Bearer nk_test"
    assert headers["x-noukai-api-version"] == "2026-05-31"
    assert headers["user-agent"].startswith(f"noukai-python/{noukai.__version__} (httpx2/")
    assert headers["accept"] == "application/json"
    assert headers["content-type"] == "application/json"
    assert headers["idempotency-key"]
    assert "x-session-id" not in headers
    assert str(seen[0].url) == "http://fake/api/v1/seq/acme/spell/grade-3/execute"


def test_gets_are_retried_on_retryable_statuses(slept: list[float]) -> None:
    answers = [json_response(503, {}), json_response(200, {"executionId": "e1", "status": "running"})]

    def handler(request: httpx2.Request) -> httpx2.Response:
        return answers.pop(0)

    with fake_client(handler) as client:
        assert client.runs.retrieve("e1").status == "running"
    assert len(slept) == 1 and 0.25 <= slept[0] <= 0.5


def test_retry_after_is_honoured(slept: list[float]) -> None:
    answers = [json_response(429, {"detail": {"code": "RATE_LIMIT", "message": "x"}}, {"Retry-After": "3"})]
    answers.append(json_response(200, {"executionId": "e1", "status": "running"}))
    with fake_client(lambda r: answers.pop(0)) as client:
        client.runs.retrieve("e1")
    assert slept == [3.0]


def test_retries_run_out(slept: list[float]) -> None:
    with (
        fake_client(lambda r: json_response(502, {}), max_retries=2) as client,
        pytest.raises(noukai.FlowExecutionError) as info,
    ):
        client.runs.retrieve("e1")
    assert info.value.status_code == 502 and len(slept) == 2
    with (
        fake_client(lambda r: json_response(429, {}), max_retries=0) as client,
        pytest.raises(noukai.RateLimitError),
    ):
        client.runs.retrieve("e1")
    assert len(slept) == 2


def test_execute_is_retried_with_the_same_idempotency_key(slept: list[float]) -> None:
    keys: list[str] = []
    bodies: list[bytes] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        keys.append(request.headers["idempotency-key"])
        bodies.append(request.content)
        if len(keys) == 1:
            raise httpx2.ConnectError("refused")
        if len(keys) == 2:
            return json_response(503, {"detail": {"code": "X", "message": "busy"}})
        return json_response(200, RESULT)

    with fake_client(handler, max_retries=2) as client:
        assert client.flow("g").execute(message="hi").result == "ok"
    assert len(set(keys)) == 1 and len(set(bodies)) == 1 and len(keys) == 3


def test_a_given_idempotency_key_is_sent() -> None:
    seen: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.headers["idempotency-key"])
        return json_response(200, RESULT)

    with fake_client(handler) as client:
        client.flow("g").execute(message="hi", idempotency_key="order-42")
    assert seen == ["order-42"]


def test_a_failed_run_is_not_retried(slept: list[float]) -> None:
    calls: list[int] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        calls.append(1)
        body = {"detail": {"code": "FUNCTION_ERROR", "message": "boom", "executionId": "e1", "stepId": "s"}}
        return json_response(500, body)

    with fake_client(handler, max_retries=3) as client, pytest.raises(noukai.FlowExecutionError) as info:
        client.flow("g").execute(message="hi")
    assert calls == [1] and slept == []
    assert (info.value.code, info.value.execution_id, info.value.step_id) == ("FUNCTION_ERROR", "e1", "s")
    assert info.value.request_id == "req-1"


def test_connection_errors(slept: list[float]) -> None:
    def refused(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("refused")

    with fake_client(refused, max_retries=1) as client:
        with pytest.raises(noukai.APIConnectionError) as info:
            client.runs.retrieve("e1")
        assert not isinstance(info.value, noukai.APITimeoutError)
        assert len(slept) == 1
        with pytest.raises(noukai.APIConnectionError):
            client.runs.cancel("e1")  # idempotent: retried too
        assert len(slept) == 2


def test_timeouts_are_not_retried(slept: list[float]) -> None:
    def slow(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("slow")

    with fake_client(slow) as client, pytest.raises(noukai.APITimeoutError):
        client.runs.retrieve("e1")
    assert slept == []


def test_the_budget_holds_while_the_server_sends_keepalives(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(range(0, 1000, 10))
    monkeypatch.setattr("noukai._transport.time.monotonic", lambda: float(next(clock)))
    keepalive = ScriptedStream([b" "] * 20 + [json.dumps(RESULT).encode()])

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, stream=keepalive)

    with fake_client(handler) as client, pytest.raises(noukai.APITimeoutError):
        client.flow("g").execute(message="hi", timeout=35)


def test_leading_whitespace_before_the_json_is_fine() -> None:
    with fake_client(lambda r: httpx2.Response(200, content=b"   " + json.dumps(RESULT).encode())) as client:
        assert client.flow("g").execute(message="hi").result == "ok"


def test_log_hook_phases_and_payloads(slept: list[float]) -> None:
    answers = [json_response(503, {}), json_response(200, RESULT)]
    events: list[dict[str, Any]] = []
    with fake_client(lambda r: answers.pop(0), log_handler=events.append) as client:
        client.flow("g").execute(message="secret")
    assert [e["phase"] for e in events] == ["request", "response", "retry", "request", "response"]
    assert events[0] == {
        "phase": "request",
        "method": "POST",
        "path": "/seq/acme/spell/g/execute",
        "attempt": 1,
    }
    assert events[1]["status_code"] == 503 and events[1]["request_id"] == "req-1"
    assert events[2]["attempt"] == 1 and events[2]["reason"] == "HTTP 503"
    assert events[4]["attempt"] == 2
    assert all("request_body" not in e and "response_body" not in e for e in events)

    logged: list[dict[str, Any]] = []
    with fake_client(
        lambda r: json_response(200, RESULT), log_handler=logged.append, log_payloads=True
    ) as client:
        client.flow("g").execute(message="secret")
    assert logged[0]["request_body"]["message"] == "secret"
    assert logged[1]["response_body"] == RESULT
    assert all("authorization" not in json.dumps(e).lower() for e in logged)


def test_a_broken_log_hook_does_not_break_calls(caplog: pytest.LogCaptureFixture) -> None:
    def broken(event: dict[str, Any]) -> None:
        raise RuntimeError("hook")

    with fake_client(lambda r: json_response(200, RESULT), log_handler=broken) as client:
        assert client.flow("g").execute(message="x").result == "ok"
    assert "log_handler raised" in caplog.text


@pytest.mark.anyio
async def test_async_retries_and_errors(slept: list[float]) -> None:
    answers = [json_response(504, {}), json_response(200, {"executionId": "e1", "status": "waiting"})]
    async with fake_async_client(lambda r: answers.pop(0)) as client:
        assert (await client.runs.retrieve("e1")).status == "waiting"
    assert len(slept) == 1

    def refused(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("refused")

    async with fake_async_client(refused, max_retries=0) as client:
        with pytest.raises(noukai.APIConnectionError):
            await client.flow("g").execute(message="x")

    def slow(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("slow")

    async with fake_async_client(slow) as client:
        with pytest.raises(noukai.APITimeoutError):
            await client.runs.retrieve("e1")

    async with fake_async_client(
        lambda r: json_response(404, {"detail": {"code": "RUN_NOT_FOUND", "message": "no"}})
    ) as client:
        with pytest.raises(noukai.FlowNotFoundError):
            await client.runs.cancel("e1")


def test_a_given_http_client_is_not_closed_by_the_sdk() -> None:
    http = httpx2.Client(transport=httpx2.MockTransport(lambda r: json_response(200, RESULT)))
    client = noukai.Noukai(api_key="nk_x", base_url="http://fake", http_client=http)
    client.close()
    assert not http.is_closed
    http.close()
