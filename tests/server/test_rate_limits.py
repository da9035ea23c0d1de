"""Request-rate limits against real `noukai serve` processes: per key and per org, with override
maps; 429 RATE_LIMITED with `Retry-After` and `X-RateLimit-*`; a refused request does nothing;
`/health` and stream reconnects are never limited; counters hold across processes (SQLite file
and PostgreSQL through the store, and Redis)."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests._services import REDIS_URL, fresh_postgres_database, require_redis
from tests.conftest import ServerProcess, _server_env, free_port

FLOW = "/seq/dev/main/echo"


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def cheap(server: ServerProcess, key: str) -> httpx.Response:
    """An authenticated request that does nothing (reads a run that does not exist)."""
    return httpx.get(f"{server.api_url}/runs/00000000-0000-0000-0000-000000000000", headers=auth(key))


def key_id(key: str) -> str:
    return key.split("_")[1]


def runs_in(server: ServerProcess) -> int:
    with sqlite3.connect(server.data_dir / "noukai.db") as conn:
        return int(conn.execute("SELECT count(*) FROM runs").fetchone()[0])


def assert_refused(response: httpx.Response, limit: int) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["detail"]["code"] == "RATE_LIMITED"
    assert f"at most {limit} a minute" in response.json()["detail"]["message"]
    retry_after = response.headers["retry-after"]
    assert retry_after.isdigit() and 1 <= int(retry_after) <= 60
    assert response.headers["x-ratelimit-limit"] == str(limit)
    assert response.headers["x-ratelimit-remaining"] == "0"
    assert 1 <= int(response.headers["x-ratelimit-reset"]) <= 60


def test_a_key_over_its_rate_is_refused_with_retry_after_and_the_refused_request_does_nothing(
    make_server: Any,
) -> None:
    server = make_server(env={"NOUKAI_REQUESTS_PER_MINUTE": "3"})
    key = server.dev_key
    remaining = []
    for _ in range(2):
        answer = cheap(server, key)
        assert answer.status_code == 404
        assert answer.headers["x-ratelimit-limit"] == "3"
        remaining.append(answer.headers["x-ratelimit-remaining"])
    done = httpx.post(f"{server.api_url}{FLOW}/execute", json={"message": "hi"}, headers=auth(key))
    assert done.status_code == 200 and done.headers["x-ratelimit-remaining"] == "0"
    assert remaining == ["2", "1"]
    before = runs_in(server)
    refused = httpx.post(
        f"{server.api_url}{FLOW}/execute",
        json={"message": "hi"},
        headers={**auth(key), "Idempotency-Key": "refused-once"},
    )
    assert_refused(refused, 3)
    assert runs_in(server) == before  # nothing was created
    assert_refused(cheap(server, key), 3)
    # What needs no key is never limited.
    for _ in range(5):
        assert httpx.get(f"{server.api_url}/health").status_code == 200
    assert httpx.get(f"{server.base_url}/openapi.json").status_code == 200
    # Another key of the same org has its own rate (no org limit is set).
    other = server.create_key("dev")
    assert cheap(server, other).status_code == 404


def test_an_unlimited_server_sends_no_rate_limit_headers(server: ServerProcess) -> None:
    answer = cheap(server, server.dev_key)
    assert answer.status_code == 404 and "x-ratelimit-limit" not in answer.headers


def test_an_orgs_keys_share_the_org_rate_and_other_orgs_are_untouched(make_server: Any) -> None:
    server = make_server(env={"NOUKAI_ORG_REQUESTS_PER_MINUTE": "4", "NOUKAI_REQUESTS_PER_MINUTE": "100"})
    first, second = server.create_key("acme"), server.create_key("acme")
    outsider = server.create_key("globex")
    for key in (first, second, first, second):
        assert cheap(server, key).status_code == 404
    answer = cheap(server, first)
    assert_refused(answer, 4)  # the org's limit is the tighter one: it is the one reported
    assert_refused(cheap(server, second), 4)
    fine = cheap(server, outsider)
    assert fine.status_code == 404 and fine.headers["x-ratelimit-limit"] == "4"
    assert fine.headers["x-ratelimit-remaining"] == "3"


def test_override_maps_replace_the_defaults_by_key_id_and_by_org_id(make_server: Any) -> None:
    server = make_server(env={"NOUKAI_REQUESTS_PER_MINUTE": "1", "NOUKAI_ORG_REQUESTS_PER_MINUTE": "2"})
    generous, plain = server.create_key("big"), server.create_key("small")
    server.env["NOUKAI_KEY_REQUESTS_PER_MINUTE_OVERRIDES"] = f"{key_id(generous)}=50"
    server.env["NOUKAI_ORG_REQUESTS_PER_MINUTE_OVERRIDES"] = "big=5"
    server.restart()
    for _ in range(5):
        answer = cheap(server, generous)
        assert answer.status_code == 404, answer.text
    assert_refused(cheap(server, generous), 5)  # the org override, tighter than the key's 50
    assert cheap(server, plain).status_code == 404
    assert_refused(cheap(server, plain), 1)


def test_a_stream_reconnect_is_never_refused(make_server: Any) -> None:
    server = make_server(env={"NOUKAI_REQUESTS_PER_MINUTE": "2"})
    key = server.dev_key
    run = httpx.post(f"{server.api_url}{FLOW}/execute", json={"message": "hi"}, headers=auth(key))
    run_id = run.json()["executionId"]
    assert cheap(server, key).status_code == 404
    events = f"{server.api_url}/runs/{run_id}/events"
    assert_refused(httpx.get(events, headers=auth(key)), 2)  # opening a stream counts
    resumed = httpx.get(events, headers={**auth(key), "Last-Event-ID": "1"})
    assert resumed.status_code == 200, resumed.text
    assert "event: flow_completed" in resumed.text
    again = httpx.get(events, headers={**auth(key), "Last-Event-ID": "2"})
    assert again.status_code == 200  # every reconnect, not just one


def test_the_openai_compatible_route_answers_429_in_its_own_shape(make_server: Any) -> None:
    server = make_server(env={"NOUKAI_REQUESTS_PER_MINUTE": "1"})
    url = f"{server.base_url}/openai/v1/chat/completions"
    body = {"model": "dev/main/echo", "messages": [{"role": "user", "content": "hi"}]}
    assert httpx.post(url, json=body, headers=auth(server.dev_key)).status_code == 200
    refused = httpx.post(url, json=body, headers=auth(server.dev_key))
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "RATE_LIMITED"
    assert int(refused.headers["retry-after"]) >= 1 and refused.headers["x-ratelimit-remaining"] == "0"


def test_a_bad_limit_setting_stops_the_server_with_a_clear_message(make_server: Any) -> None:
    with pytest.raises(RuntimeError) as info:
        make_server(env={"NOUKAI_REQUESTS_PER_MINUTE": "0"})
    assert "NOUKAI_REQUESTS_PER_MINUTE" in str(info.value)
    assert "an integer >= 1" in str(info.value)


# -- across processes ----------------------------------------------------------------------------


def _two_servers(tmp_path: Any, env: dict[str, str]) -> Iterator[list[ServerProcess]]:
    # The store's URL in the environment, so that `keys create` (the CLI) reaches it too.
    servers: list[ServerProcess] = []
    try:
        for index in range(2):
            data_dir = tmp_path / f"api{index}"
            data_dir.mkdir()
            server = ServerProcess(free_port(), data_dir, {**_server_env(), **env})
            servers.append(server)
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


def _shared_count(servers: list[ServerProcess], limit: int) -> None:
    # An org of its own: Redis outlives the test, and its counters would still be full next time.
    key = servers[0].create_key(f"acme-{uuid.uuid4().hex[:8]}")
    statuses = [cheap(servers[index % 2], key).status_code for index in range(limit)]
    assert statuses == [404] * limit
    for server in servers:
        assert_refused(cheap(server, key), limit)


def test_two_processes_on_one_sqlite_file_count_together(tmp_path: Any) -> None:
    data_dir = tmp_path / "shared"
    data_dir.mkdir()
    env = {**_server_env(), "NOUKAI_REQUESTS_PER_MINUTE": "6"}
    servers = [ServerProcess(free_port(), data_dir, env) for _ in range(2)]
    try:
        for server in servers:
            server.start()
        _shared_count(servers, 6)
    finally:
        for server in servers:
            server.stop()


@pytest.mark.postgres
def test_two_processes_on_postgresql_count_together_in_the_store(tmp_path: Any) -> None:
    with fresh_postgres_database() as url:
        env = {"NOUKAI_DATABASE_URL": url, "NOUKAI_REQUESTS_PER_MINUTE": "6"}
        for servers in _two_servers(tmp_path, env):
            _shared_count(servers, 6)


@pytest.mark.postgres
def test_two_processes_with_redis_count_together_in_redis(tmp_path: Any) -> None:
    require_redis()
    with fresh_postgres_database() as url:
        env = {
            "NOUKAI_DATABASE_URL": url,
            "NOUKAI_REDIS_URL": REDIS_URL,
            "NOUKAI_ORG_REQUESTS_PER_MINUTE": "5",
        }
        for servers in _two_servers(tmp_path, env):
            _shared_count(servers, 5)
            import psycopg

            with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
                stored = conn.execute("SELECT count(*) FROM rate_counters").fetchone()
            assert stored is not None and stored[0] == 0  # counted in Redis, not in the store
