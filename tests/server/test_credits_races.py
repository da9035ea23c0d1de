"""Credits under races, on SQLite and PostgreSQL: concurrent runs of one org spending its last
dollars never overdraw by more than one step's cost each and lose no charge, and a server killed
mid-step charges the retried step once (its first attempt never completed, and the step before
it, already charged, is not charged again).

Every model step costs exactly 1 USD (see `test_credits.py`); the fake provider's scripted
replies are slow enough that the runs overlap.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests._services import fresh_postgres_database
from tests.conftest import ServerProcess
from tests.fakeprovider import FakeProvider, Reply
from tests.server.test_credits import STEP_USD, Org, priced_flow, start_priced_server

RUNS = 6
STEPS = 3
BALANCE_USD = "2.5"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_args(request: pytest.FixtureRequest) -> Iterator[tuple[str, ...]]:
    if request.param == "sqlite":
        yield ()
        return
    with fresh_postgres_database() as url:
        yield ("--database-url", url)


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with FakeProvider() as provider:
        yield provider


@pytest.fixture
def start(tmp_path: Path, fake: FakeProvider) -> Iterator[Any]:
    started: list[ServerProcess] = []

    def make(*args: str, env: dict[str, str] | None = None) -> ServerProcess:
        data_dir = tmp_path / f"data{len(started)}"
        data_dir.mkdir()
        server = start_priced_server(data_dir, fake, *args, env=env)
        started.append(server)
        return server

    try:
        yield make
    finally:
        for server in started:
            server.stop()


def dev(server: ServerProcess, database_args: tuple[str, ...]) -> Org:
    """The dev org, with an org-wide admin key (the dev key is limited to dev/main)."""
    return Org(server, "dev", server.cli("keys", "create", "--org", "dev", *database_args).strip())


def usd(text: str) -> float:
    return float(text)


def test_concurrent_runs_never_overdraw_by_more_than_a_step_each(
    database_args: tuple[str, ...], start: Any, fake: FakeProvider
) -> None:
    server = start(*database_args)
    org = dev(server, database_args)
    server.put_flow(org.key, "dev", "main", priced_flow("race", STEPS))
    assert org.add(BALANCE_USD).status_code == 200
    # Four chunks 100 ms apart: each step takes about 0.4 s, so the runs are mid-step together.
    fake.script(
        *(Reply(chunks=["a ", "b ", "c ", "d"], usage=(4, 4), delay=0.1) for _ in range(RUNS * STEPS))
    )

    with ThreadPoolExecutor(RUNS) as pool:
        responses = list(pool.map(lambda n: org.execute("race", f"run {n}"), range(RUNS)))
    fake.clear()

    outcomes = []
    for response in responses:
        if response.status_code == 200:
            outcomes.append("completed")
            continue
        assert response.status_code == 402, response.text
        outcomes.append(response.json()["detail"]["code"])
    assert set(outcomes) <= {"completed", "CREDITS_EXHAUSTED", "INSUFFICIENT_CREDITS"}
    assert "CREDITS_EXHAUSTED" in outcomes, outcomes  # the balance did run out under the runs

    balance = usd(org.credits()["balanceUsd"])
    usage = org.usage()["total"]
    spent = usd(usage["costUsd"])
    # Nothing lost: every charge the usage shows came off the balance, to the micro-dollar.
    assert round(usd(BALANCE_USD) - balance, 6) == spent
    assert usage["steps"] == spent / STEP_USD
    # Each run that was charged overdrew by one step at most (it stops at its next boundary).
    charged_runs = usage["runs"]
    assert balance < 0 and -balance <= charged_runs * STEP_USD, (balance, charged_runs, outcomes)
    assert usage["steps"] < RUNS * STEPS  # the runs were stopped, not merely charged
    # Nothing is left running or queued.
    assert org.execute("race").json()["detail"]["code"] == "INSUFFICIENT_CREDITS"


def job_status(org: Org, slug: str, run_id: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(
        org.url(f"/seq/{org.name}/main/{slug}/jobs/{run_id}"), headers=org.headers, timeout=5
    ).json()
    return body


def test_a_killed_worker_is_not_charged_twice(
    database_args: tuple[str, ...], start: Any, fake: FakeProvider
) -> None:
    # A short lease, so the killed server's run is claimable again soon after the restart.
    server = start("--concurrency", "1", *database_args, env={"NOUKAI_LEASE_SECONDS": "2"})
    org = dev(server, database_args)
    server.put_flow(org.key, "dev", "main", priced_flow("crash", STEPS))
    assert org.add("10").status_code == 200
    fake.script(
        Reply.text("first", usage=(4, 1)),
        Reply(chunks=[f"w{i} " for i in range(100)], usage=(4, 100), delay=0.05),  # s1: about 5 s
        Reply.text("again", usage=(4, 1)),  # s1, attempt 2
        Reply.text("last", usage=(4, 1)),
    )
    response = httpx.post(org.url("/seq/dev/main/crash/jobs"), json={"message": "hi"}, headers=org.headers)
    assert response.status_code in (200, 201, 202), response.text
    run_id = response.json()["executionId"]

    trace_url = org.url(f"/seq/dev/main/crash/runs/{run_id}/trace")
    deadline = time.monotonic() + 20
    while True:  # kill the server while s1 streams (s0 is done, and charged)
        trace = httpx.get(trace_url, headers=org.headers).json()
        if any(s["stepId"] == "s1" and s["status"] == "running" for s in trace.get("steps", [])):
            break
        assert time.monotonic() < deadline, trace
        time.sleep(0.05)
    time.sleep(0.3)
    assert org.usage()["total"]["costUsd"] == "1.000000"  # s0's charge, stored with its checkpoint
    server.restart(kill=True)

    deadline = time.monotonic() + 60
    while (state := job_status(org, "crash", run_id))["status"] != "completed":
        assert state["status"] != "failed", state
        assert time.monotonic() < deadline, f"{state}\n{server.log_text()[-3000:]}"
        time.sleep(0.1)
    assert len(fake.requests) == 4  # s1 ran twice: once cut off, once to its end

    attempts = httpx.get(
        org.url(f"/seq/dev/main/crash/runs/{run_id}/steps/s1/trace"),
        params={"attempt": "all"},
        headers=org.headers,
    ).json()["attempts"]
    assert [(a["attempt"], a["status"]) for a in attempts] == [(1, "failed"), (2, "completed")]
    usage = org.usage()["total"]
    assert (usage["costUsd"], usage["steps"], usage["runs"]) == ("3.000000", STEPS, 1)
    assert org.credits()["balanceUsd"] == "7.000000"
