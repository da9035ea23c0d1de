"""`Idempotency-Key` against real servers, on every route that takes it (`/execute` and `/jobs`,
base path and `vN`): a repeat follows the run already started; the same key with a different
request answers 409 IDEMPOTENCY_CONFLICT; a key past `[limits] idempotency_ttl_seconds` starts a
new run; many concurrent requests with one key make one run (SQLite and PostgreSQL)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests._services import fresh_postgres_database
from tests.conftest import ServerProcess

ROUTES = ("/seq/dev/main/echo/execute", "/seq/dev/main/echo/v0/execute", "/seq/dev/main/echo/jobs")


def send(server: ServerProcess, path: str, body: dict[str, Any], key: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {server.dev_key}", "Idempotency-Key": key}
    return httpx.post(f"{server.api_url}{path}", json=body, headers=headers, timeout=30)


def run_id(response: httpx.Response) -> str:
    assert response.status_code in (200, 202), response.text
    value: str = response.json()["executionId"]
    return value


def assert_conflict(response: httpx.Response, key: str) -> None:
    assert response.status_code == 409, response.text
    detail = response.json()["detail"]
    assert detail["code"] == "IDEMPOTENCY_CONFLICT"
    assert f"Idempotency-Key '{key}' was already used for run" in detail["message"]
    assert "different request" in detail["message"]


@pytest.mark.parametrize("path", ROUTES)
def test_a_reused_key_with_a_different_request_is_refused(server: ServerProcess, path: str) -> None:
    key = f"conflict-{path}"
    first = run_id(send(server, path, {"message": "one"}, key))
    assert run_id(send(server, path, {"message": "one"}, key)) == first
    assert_conflict(send(server, path, {"message": "two"}, key), key)
    assert_conflict(send(server, path, {"message": "one", "parameters": {"x": 1}}, key), key)
    assert run_id(send(server, path, {"message": "one"}, key)) == first  # still remembered


def test_the_same_key_on_another_flow_or_kind_of_call_is_refused(server: ServerProcess) -> None:
    first = run_id(send(server, "/seq/dev/main/echo/jobs", {"message": "m"}, "crossed"))
    assert_conflict(send(server, "/seq/dev/main/greet/jobs", {"message": "m"}, "crossed"), "crossed")
    assert_conflict(send(server, "/seq/dev/main/echo/execute", {"message": "m"}, "crossed"), "crossed")
    assert run_id(send(server, "/seq/dev/main/echo/jobs", {"message": "m"}, "crossed")) == first


def test_a_key_past_its_ttl_starts_a_new_run(make_server: Any) -> None:
    server = make_server(env={"NOUKAI_IDEMPOTENCY_TTL_SECONDS": "1"})
    path = "/seq/dev/main/echo/execute"
    first = run_id(send(server, path, {"message": "hi"}, "daily"))
    time.sleep(1.2)  # past the TTL
    second = run_id(send(server, path, {"message": "changed"}, "daily"))  # forgotten: no conflict
    assert second != first
    headers = {"Authorization": f"Bearer {server.dev_key}"}
    old = httpx.get(f"{server.api_url}/runs/{first}", headers=headers)
    assert old.status_code == 200 and old.json()["status"] == "completed"  # the old run is kept


def _crowd(server: ServerProcess, path: str, bodies: list[dict[str, Any]], key: str) -> list[httpx.Response]:
    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(lambda body: send(server, path, body, key), bodies))


def _one_run_for_a_crowd(server: ServerProcess) -> None:
    for path in ("/seq/dev/main/echo/jobs", "/seq/dev/main/echo/execute"):
        key = f"crowd-{path}"
        answers = _crowd(server, path, [{"message": "same"}] * 24, key)
        assert len({run_id(answer) for answer in answers}) == 1
    # Two requests racing for one key: every copy of one gets the run, every copy of the other 409.
    answers = _crowd(server, "/seq/dev/main/echo/jobs", [{"message": str(i % 2)} for i in range(24)], "mixed")
    won = [a for a in answers if a.status_code == 202]
    lost = [a for a in answers if a.status_code == 409]
    assert len(won) == 12 and len(lost) == 12, [a.status_code for a in answers]
    assert len({run_id(a) for a in won}) == 1
    for answer in lost:
        assert_conflict(answer, "mixed")


def test_concurrent_requests_with_one_key_make_one_run_on_sqlite(make_server: Any) -> None:
    _one_run_for_a_crowd(make_server())


@pytest.mark.postgres
def test_concurrent_requests_with_one_key_make_one_run_on_postgresql(make_server: Any) -> None:
    with fresh_postgres_database() as url:
        server = make_server(extra_args=("--database-url", url))
        _one_run_for_a_crowd(server)
