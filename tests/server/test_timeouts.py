"""Timeouts on a real server: the `time.sleep 1e9` attack ends at the server's default step timeout
(STEP_TIMEOUT, each attempt in the trace) while another org's run goes through; a run's total
deadline stops it mid-step (RUN_TIMEOUT), survives a crash (a run re-claimed after its deadline
never runs again), and fails a run that waited in the queue past it."""

from __future__ import annotations

import statistics
import time
from datetime import datetime

import httpx
import pytest

from tests.conftest import ServerProcess
from tests.server.quota_support import (
    QUICK,
    HealthProbe,
    auth,
    endless,
    job,
    run_info,
    sql,
    status_is,
    unfinished,
    wait_for,
)

STEP_TIMEOUT = 1.0
"""The server's default step timeout in these tests (`NOUKAI_STEP_TIMEOUT_SECONDS`)."""
SLOTS = 4
"""The worker's slots: each org may hold half of them (2) with the default fair claiming."""
HEALTH_P99 = 0.050
"""The issue's bound on /health's 99th percentile while an attack runs."""


def _step_attempts(
    server: ServerProcess, key: str, org: str, slug: str, run_id: str
) -> list[dict[str, object]]:
    response = httpx.get(
        f"{server.api_url}/seq/{org}/main/{slug}/runs/{run_id}/steps/nap/trace",
        params={"attempt": "all"},
        headers=auth(key),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    attempts: list[dict[str, object]] = response.json()["attempts"]
    return attempts


def _seconds_between(created: str, deadline: str) -> float:
    """The run's deadline counts from when the API took the request, a hair before the insert."""
    return (datetime.fromisoformat(deadline) - datetime.fromisoformat(created)).total_seconds()


def _failed(server: ServerProcess, run_ids: list[str]) -> int:
    marks = ", ".join("?" * len(run_ids))
    return int(
        sql(server, f"SELECT count(*) FROM runs WHERE status = 'failed' AND id IN ({marks})", *run_ids)[0][0]
    )


def _event_types(server: ServerProcess, run_id: str) -> list[str]:
    return [
        row[0] for row in sql(server, "SELECT type FROM run_events WHERE run_id = ? ORDER BY seq", run_id)
    ]


def test_endless_steps_fail_at_the_default_timeout_while_another_org_runs(make_server: object) -> None:
    server: ServerProcess = make_server(  # type: ignore[operator]
        env={"NOUKAI_STEP_TIMEOUT_SECONDS": str(STEP_TIMEOUT)}, extra_args=("--concurrency", str(SLOTS))
    )
    attacker, victim = server.create_key("org-x"), server.create_key("org-y")
    server.put_flow(attacker, "org-x", "main", endless("sleeper", retry={"max_attempts": 2}))
    server.put_flow(victim, "org-y", "main", QUICK)

    with HealthProbe(server) as health:
        begun = time.monotonic()
        attacks = [job(server, attacker, "org-x", "sleeper") for _ in range(6)]  # three times its cap
        quick = job(server, victim, "org-y", "quick")
        # org-x holds 2 of the 4 slots at most, so org-y's run starts at once: well inside one
        # step timeout, whatever org-x's backlog.
        waited = wait_for(
            lambda: run_info(server, victim, quick)["status"] == "completed", "org-y's run", server
        )
        assert waited < STEP_TIMEOUT, waited
        # Read from the store's file, not the API: the probe measures the server, not our polling.
        wait_for(lambda: _failed(server, attacks) == len(attacks), "org-x's runs to fail", server)
        elapsed = time.monotonic() - begun
    # 6 runs x 2 attempts of 1 s, two at a time (plus backoffs): seconds, not 1e9.
    assert elapsed < 30, elapsed
    for run_id in attacks:
        error = run_info(server, attacker, run_id)["error"]
        assert error["code"] == "STEP_TIMEOUT", error
        assert "ran past the server's step timeout (1 s)" in error["message"]
    first, second = _step_attempts(server, attacker, "org-x", "sleeper", attacks[0])
    for number, attempt in ((1, first), (2, second)):
        assert (attempt["attempt"], attempt["status"]) == (number, "failed")
        assert attempt["errorContext"]["code"] == "STEP_TIMEOUT"  # type: ignore[index]
    assert unfinished(server) == 0  # nothing left running or queued
    print(
        f"\n[timeouts] /health p50 {statistics.median(health.latencies) * 1000:.1f} ms, "
        f"p99 {health.p99() * 1000:.1f} ms over {len(health.latencies)} probes"
    )
    assert health.p99() < HEALTH_P99, health.p99()


def test_a_flows_run_timeout_stops_the_run_mid_step(make_server: object) -> None:
    server: ServerProcess = make_server()  # type: ignore[operator]
    key = server.create_key("acme")
    server.put_flow(
        key, "acme", "main", endless("bounded", step={"timeout_seconds": 600}, run_timeout_seconds=1)
    )
    run_id = job(server, key, "acme", "bounded")
    waited = wait_for(lambda: run_info(server, key, run_id)["status"] == "failed", "the deadline", server)
    assert waited < 10, waited  # stopped at its 1 s deadline, not at the step's 600 s
    info = run_info(server, key, run_id)
    assert info["error"]["code"] == "RUN_TIMEOUT", info
    assert "passed its deadline" in info["error"]["message"]
    [attempt] = _step_attempts(server, key, "acme", "bounded", run_id)
    assert (attempt["status"], attempt["errorContext"]["code"]) == ("failed", "RUN_TIMEOUT")  # type: ignore[index]
    assert _event_types(server, run_id)[-1] == "run_failed"
    [(created, deadline)] = sql(server, "SELECT created_at, deadline_at FROM runs WHERE id = ?", run_id)
    assert _seconds_between(created, deadline) == pytest.approx(1, abs=0.05)


def test_the_servers_max_run_seconds_is_the_default_and_caps_a_flows_deadline(make_server: object) -> None:
    server: ServerProcess = make_server(env={"NOUKAI_MAX_RUN_SECONDS": "1"})  # type: ignore[operator]
    key = server.create_key("acme")
    server.put_flow(
        key, "acme", "main", endless("greedy", step={"timeout_seconds": 600}, run_timeout_seconds=3600)
    )
    server.put_flow(key, "acme", "main", endless("plain", step={"timeout_seconds": 600}))
    runs = [job(server, key, "acme", "greedy"), job(server, key, "acme", "plain")]
    for run_id in runs:
        wait_for(status_is(server, key, run_id, "failed"), "the deadline", server)
        assert run_info(server, key, run_id)["error"]["code"] == "RUN_TIMEOUT"
    deadlines = sql(server, "SELECT created_at, deadline_at FROM runs ORDER BY created_at")
    for created, deadline in deadlines:
        assert _seconds_between(created, deadline) == pytest.approx(1, abs=0.05)


def test_a_run_reclaimed_after_its_deadline_fails_without_running_again(make_server: object) -> None:
    server: ServerProcess = make_server(env={"NOUKAI_LEASE_SECONDS": "1"})  # type: ignore[operator]
    key = server.create_key("acme")
    document = endless("crashy", step={"timeout_seconds": 600}, run_timeout_seconds=3)
    server.put_flow(key, "acme", "main", document)
    run_id = job(server, key, "acme", "crashy")
    wait_for(lambda: "step_started" in _event_types(server, run_id), "the step to start", server)
    server.stop(kill=True)  # the worker dies mid-step, holding the run's lease
    [(deadline,)] = sql(server, "SELECT deadline_at FROM runs WHERE id = ?", run_id)
    time.sleep(max(0.0, datetime.fromisoformat(deadline).timestamp() - time.time()) + 1.5)
    server.start()  # its claim loop finds the dead lease past the run's deadline

    wait_for(
        lambda: run_info(server, key, run_id)["status"] == "failed", "the re-claimed run to fail", server
    )
    assert run_info(server, key, run_id)["error"]["code"] == "RUN_TIMEOUT"
    types = _event_types(server, run_id)
    assert types.count("step_started") == 1, types  # the step never ran a second attempt
    assert types[-1] == "run_failed"
    [attempt] = _step_attempts(server, key, "acme", "crashy", run_id)
    assert (attempt["attempt"], attempt["errorContext"]["code"]) == (1, "RUN_TIMEOUT")  # type: ignore[index]


def test_a_run_that_waited_in_the_queue_past_its_deadline_never_starts(make_server: object) -> None:
    server: ServerProcess = make_server(extra_args=("--no-workers",))  # type: ignore[operator]
    key = server.create_key("acme")
    server.put_flow(key, "acme", "main", {**QUICK, "run_timeout_seconds": 0.5})
    run_id = job(server, key, "acme", "quick")
    time.sleep(1.0)
    assert run_info(server, key, run_id)["status"] == "queued"
    server.stop()
    server.extra_args = ()  # the same server, now with its workers
    server.start()
    wait_for(lambda: run_info(server, key, run_id)["status"] == "failed", "the late run to fail", server)
    assert run_info(server, key, run_id)["error"]["code"] == "RUN_TIMEOUT"
    assert _event_types(server, run_id) == ["run_failed"]  # never started, no step ran
    assert unfinished(server) == 0


def test_a_paced_run_resumed_after_its_deadline_fails_without_running_its_next_step(
    make_server: object,
) -> None:
    """Waiting time counts: a run paused between `/step` calls holds its place until its deadline."""
    server: ServerProcess = make_server()  # type: ignore[operator]
    key = server.create_key("acme")
    two_steps = {
        "slug": "paced",
        "run_timeout_seconds": 1,
        "steps": [
            {"id": "one", "type": "template", "template": "1"},
            {"id": "two", "type": "template", "template": "2"},
        ],
    }
    server.put_flow(key, "acme", "main", two_steps)
    url = f"{server.api_url}/seq/acme/main/paced/step"
    first = httpx.post(url, json={"stepIndex": 0}, headers=auth(key), timeout=30)
    assert first.status_code == 200, first.text
    [(run_id,)] = sql(server, "SELECT id FROM runs")
    assert run_info(server, key, run_id)["status"] == "waiting"
    time.sleep(1.5)
    second = httpx.post(url, json={"stepIndex": 1, "executionId": run_id}, headers=auth(key), timeout=30)
    assert second.status_code == 200, second.text
    assert "run_failed" in second.text and "RUN_TIMEOUT" in second.text
    assert run_info(server, key, run_id)["error"]["code"] == "RUN_TIMEOUT"
    types = _event_types(server, run_id)
    assert types.count("step_started") == 1 and types[-1] == "run_failed", types
