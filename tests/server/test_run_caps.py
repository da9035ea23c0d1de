"""Caps on a real server (SQLite, one process): running runs per org and per API key, queued runs
per org and per key (429 QUEUE_FULL with Retry-After, nothing written), and every way of starting
a run records the key that started it."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx

from tests.conftest import ServerProcess
from tests.server.quota_support import (
    QUICK,
    auth,
    endless,
    job,
    key_id,
    run_info,
    sql,
    status_is,
    submit,
    unfinished,
    wait_for,
)

START_BOUND = 2.0
"""How soon a run of an org (or key) under its caps must have completed after its submission,
whatever another org's backlog: a one-step template run needs one claim (the API hands it to the
worker directly, or the claim loop wakes on the enqueue) and milliseconds of work."""


def _running(server: ServerProcess, column: str, value: str) -> int:
    query = f"SELECT count(*) FROM runs WHERE status = 'running' AND {column} = ?"
    return int(sql(server, query, value)[0][0])


def _cancel_all(server: ServerProcess, key: str, run_ids: list[str]) -> None:
    for run_id in run_ids:
        response = httpx.post(f"{server.api_url}/runs/{run_id}/cancel", headers=auth(key), timeout=30)
        assert response.status_code == 200, response.text
    wait_for(lambda: unfinished(server) == 0, "the cancels", server)


def test_one_orgs_endless_backlog_never_delays_another_orgs_runs(make_server: Any) -> None:
    server: ServerProcess = make_server(
        env={"NOUKAI_ORG_MAX_RUNNING": "2"}, extra_args=("--concurrency", "4")
    )
    busy, other = server.create_key("org-x"), server.create_key("org-y")
    server.put_flow(busy, "org-x", "main", endless("forever", step={"timeout_seconds": 600}))
    server.put_flow(other, "org-y", "main", QUICK)
    backlog = [job(server, busy, "org-x", "forever") for _ in range(10)]
    wait_for(lambda: _running(server, "org_id", "org-x") == 2, "org-x's two runs", server)

    for _ in range(4):
        submitted = time.monotonic()
        run_id = job(server, other, "org-y", "quick")
        wait_for(status_is(server, other, run_id, "completed"), "org-y", server)
        assert time.monotonic() - submitted < START_BOUND
    assert _running(server, "org_id", "org-x") == 2  # at its cap, the rest of its backlog queued
    _cancel_all(server, busy, backlog)


def test_a_key_at_its_running_cap_waits_while_other_keys_of_its_org_run(make_server: Any) -> None:
    server: ServerProcess = make_server(
        env={"NOUKAI_ORG_MAX_RUNNING": "10", "NOUKAI_KEY_MAX_RUNNING": "1"}, extra_args=("--concurrency", "6")
    )
    capped, vip, other = (server.create_key("acme") for _ in range(3))
    server.stop()  # the override names a key id, known only once the key exists
    server.env["NOUKAI_KEY_MAX_RUNNING_OVERRIDES"] = f"{key_id(vip)}=2"
    server.start()
    server.put_flow(capped, "acme", "main", endless("forever", step={"timeout_seconds": 600}))
    server.put_flow(capped, "acme", "main", QUICK)
    held = [job(server, capped, "acme", "forever") for _ in range(3)]
    held += [job(server, vip, "acme", "forever") for _ in range(3)]
    wait_for(lambda: _running(server, "api_key_id", key_id(vip)) == 2, "the vip key's runs", server)
    assert _running(server, "api_key_id", key_id(capped)) == 1

    submitted = time.monotonic()
    run_id = job(server, other, "acme", "quick")
    wait_for(lambda: run_info(server, other, run_id)["status"] == "completed", "the other key's run", server)
    assert time.monotonic() - submitted < START_BOUND
    time.sleep(0.5)  # a claim loop that ignored the caps would have taken the queued runs by now
    assert _running(server, "api_key_id", key_id(capped)) == 1
    assert _running(server, "api_key_id", key_id(vip)) == 2
    _cancel_all(server, capped, held)


def _queue_full(response: httpx.Response, scope: str) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["Retry-After"] == "5"
    detail = response.json()["detail"]
    assert (detail["code"], detail["scope"]) == ("QUEUE_FULL", scope), detail
    assert "retry after 5 s" in detail["message"]


def _runs_of(server: ServerProcess, org: str) -> int:
    return int(sql(server, "SELECT count(*) FROM runs WHERE org_id = ?", org)[0][0])


def test_an_org_past_its_queued_cap_is_refused_with_nothing_written(make_server: Any) -> None:
    server: ServerProcess = make_server(
        env={"NOUKAI_ORG_MAX_QUEUED": "2", "NOUKAI_ORG_MAX_QUEUED_OVERRIDES": "org-big=3"},
        extra_args=("--no-workers",),
    )
    small, big = server.create_key("org-small"), server.create_key("org-big")
    server.put_flow(small, "org-small", "main", QUICK)
    server.put_flow(big, "org-big", "main", QUICK)
    for _ in range(2):
        job(server, small, "org-small", "quick")
    _queue_full(submit(server, small, "org-small", "quick"), "org")
    execute = httpx.post(
        f"{server.api_url}/seq/org-small/main/quick/execute", json={}, headers=auth(small), timeout=30
    )
    _queue_full(execute, "org")
    assert _runs_of(server, "org-small") == 2
    for _ in range(3):
        job(server, big, "org-big", "quick")  # its own queue, and its own cap
    _queue_full(submit(server, big, "org-big", "quick"), "org")
    assert _runs_of(server, "org-big") == 3


def test_a_key_past_its_queued_cap_is_refused_while_its_orgs_other_keys_queue(make_server: Any) -> None:
    server: ServerProcess = make_server(env={"NOUKAI_KEY_MAX_QUEUED": "1"}, extra_args=("--no-workers",))
    first, second = server.create_key("acme"), server.create_key("acme")
    server.put_flow(first, "acme", "main", QUICK)
    job(server, first, "acme", "quick")
    _queue_full(submit(server, first, "acme", "quick"), "key")
    step = httpx.post(
        f"{server.api_url}/seq/acme/main/quick/step", json={"stepIndex": 0}, headers=auth(first), timeout=30
    )
    _queue_full(step, "key")
    chat = httpx.post(
        f"{server.base_url}/openai/v1/chat/completions",
        json={"model": "acme/main/quick", "messages": [{"role": "user", "content": "hi"}]},
        headers=auth(first),
        timeout=30,
    )
    assert (chat.status_code, chat.headers["Retry-After"]) == (429, "5"), chat.text
    assert chat.json()["error"]["code"] == "QUEUE_FULL"  # in OpenAI's shape, for OpenAI clients
    job(server, second, "acme", "quick")
    rows = sql(server, "SELECT api_key_id, count(*) FROM runs GROUP BY api_key_id ORDER BY api_key_id")
    assert sorted(rows) == sorted([(key_id(first), 1), (key_id(second), 1)])


def test_every_way_of_starting_a_run_records_its_key(make_server: Any) -> None:
    server: ServerProcess = make_server()
    key = server.create_key("acme")
    server.put_flow(key, "acme", "main", QUICK)
    base = f"{server.api_url}/seq/acme/main/quick"
    started = [
        httpx.post(f"{base}/execute", json={}, headers=auth(key), timeout=30),
        httpx.post(f"{base}/jobs", json={}, headers=auth(key), timeout=30),
        httpx.post(
            f"{base}/step", json={"stepIndex": 0, "runRemaining": True}, headers=auth(key), timeout=30
        ),
        httpx.post(
            f"{server.base_url}/openai/v1/chat/completions",
            json={"model": "acme/main/quick", "messages": [{"role": "user", "content": "hi"}]},
            headers=auth(key),
            timeout=30,
        ),
        httpx.post(
            f"{base}/agui",
            json={
                "threadId": str(uuid.uuid4()),
                "runId": "r1",
                "messages": [{"id": "m1", "role": "user", "content": "hi"}],
                "tools": [],
                "state": {},
                "context": [],
                "forwardedProps": {},
            },
            headers=auth(key),
            timeout=30,
        ),
    ]
    assert [response.status_code for response in started] == [200, 202, 200, 200, 200]
    wait_for(lambda: unfinished(server) == 0, "the runs to end", server)
    rows = sql(server, "SELECT trigger_type, api_key_id FROM runs")
    assert len(rows) == 5, rows
    assert {row[1] for row in rows} == {key_id(key)}, rows


def test_a_retried_request_gets_its_run_back_at_the_queued_cap(make_server: Any) -> None:
    server: ServerProcess = make_server(env={"NOUKAI_ORG_MAX_QUEUED": "1"}, extra_args=("--no-workers",))
    key = server.create_key("acme")
    server.put_flow(key, "acme", "main", QUICK)
    url = f"{server.api_url}/seq/acme/main/quick/jobs"

    def with_key(idempotency_key: str, body: dict[str, Any]) -> httpx.Response:
        headers = {**auth(key), "Idempotency-Key": idempotency_key}
        return httpx.post(url, json=body, headers=headers, timeout=30)

    first = with_key("order-1", {})
    assert first.status_code == 202, first.text
    # The queue is full now, but a retry of the request that made the queued run is no new run.
    again = with_key("order-1", {})
    assert (again.status_code, again.json()["executionId"]) == (202, first.json()["executionId"])
    _queue_full(with_key("order-2", {}), "org")
    conflict = with_key("order-1", {"message": "another request"})
    assert (conflict.status_code, conflict.json()["detail"]["code"]) == (409, "IDEMPOTENCY_CONFLICT")
    assert _runs_of(server, "acme") == 1
