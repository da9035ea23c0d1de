"""Resumable streams against real servers: kills and restarts, planned closes, silent
connections, cancellation and pruned logs."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import pytest

import noukai
from tests.conftest import ServerProcess
from tests.sdk.conftest import put_slow_flow


def sdk(server: ServerProcess, **kwargs: Any) -> noukai.Noukai:
    return noukai.Noukai(
        api_key=server.dev_key, base_url=server.base_url, org="dev", project="main", **kwargs
    )


def start_run(client: noukai.Noukai, slug: str) -> str:
    """Start a run through the step protocol and hang up after `run_started` (the run goes on)."""
    with client.flow(slug).events(message="go", run_remaining=True) as stream:
        first = next(stream)
    assert isinstance(first, noukai.RunStarted) and first.execution_id
    return first.execution_id


def signature(events: list[noukai.StreamEvent]) -> list[tuple[int | None, str, str]]:
    return [(e.seq, e.type, e.model_dump_json()) for e in events]


def assert_whole_log(events: list[noukai.StreamEvent], full: list[noukai.StreamEvent]) -> None:
    assert [e.seq for e in events] == list(range(1, len(full) + 1))
    assert signature(events) == signature(full)
    assert events[-1].type == "flow_completed"


def test_kill_and_restart_mid_stream_loses_and_repeats_nothing(make_server: Any) -> None:
    server = make_server({"NOUKAI_LEASE_SECONDS": "1"})
    retries: list[dict[str, Any]] = []
    with sdk(server, log_handler=lambda e: retries.append(e) if e["phase"] == "retry" else None) as client:
        slug = put_slow_flow(server, words=30, delay_ms=30, steps=3)
        run_id = start_run(client, slug)
        events: list[noukai.StreamEvent] = []
        restarter: threading.Thread | None = None
        for event in client.runs.events(run_id):
            events.append(event)
            if len(events) == 12:
                restarter = threading.Thread(target=server.restart, kwargs={"kill": True})
                restarter.start()
        assert restarter is not None
        restarter.join()
        assert retries, "the stream must have reconnected"
        full = list(client.runs.events(run_id))
        assert_whole_log(events, full)


def test_events_of_a_new_run_survive_a_restart_too(make_server: Any) -> None:
    server = make_server({"NOUKAI_LEASE_SECONDS": "1"})
    with sdk(server) as client:
        slug = put_slow_flow(server, words=30, delay_ms=30, steps=2)
        events: list[noukai.StreamEvent] = []
        restarter = threading.Thread(target=server.restart, kwargs={"kill": True})
        stream = client.flow(slug).events(message="go", run_remaining=True)
        for event in stream:
            events.append(event)
            if len(events) == 10:
                restarter.start()
        restarter.join()
        assert stream.execution_id is not None
        full = list(client.runs.events(stream.execution_id))
        assert_whole_log(events, full)


@pytest.mark.anyio
async def test_planned_closes_are_resumed(make_server: Any) -> None:
    server = make_server(
        {"NOUKAI_STREAM_LIFETIME_SECONDS": "0.3", "NOUKAI_HEARTBEAT_SECONDS": "0.1", "NOUKAI_RETRY_MS": "50"}
    )
    logged: list[dict[str, Any]] = []
    slug = put_slow_flow(server, words=40, delay_ms=25, steps=2)
    with sdk(server) as client:
        run_id = start_run(client, slug)
        async with noukai.AsyncNoukai(
            api_key=server.dev_key, base_url=server.base_url, log_handler=logged.append
        ) as aclient:
            events = [e async for e in aclient.runs.events(run_id, heartbeat_seconds=0.1)]
        full = list(client.runs.events(run_id))
        assert_whole_log(events, full)
        cycles = [e for e in logged if e["phase"] == "retry"]
        assert len(cycles) >= 3 and all(e["reason"] == "server closed the stream" for e in cycles)
        assert all(abs(e["delay"] - 0.05) < 1e-9 for e in cycles)  # the server's retry hint


def test_a_silent_connection_is_dropped_and_resumed(make_server: Any) -> None:
    server = make_server({"NOUKAI_HEARTBEAT_SECONDS": "0.2"})
    slug = put_slow_flow(server, words=40, delay_ms=25, steps=1)
    retries: list[dict[str, Any]] = []
    with sdk(server, log_handler=lambda e: retries.append(e) if e["phase"] == "retry" else None) as client:
        run_id = start_run(client, slug)
        assert server.process is not None
        pid = server.process.pid
        events: list[noukai.StreamEvent] = []
        with client.runs.events(run_id, heartbeat_seconds=0.2) as stream:
            for event in stream:
                events.append(event)
                if len(events) == 5:
                    os.kill(pid, signal.SIGSTOP)  # the socket stays open; nothing comes any more
                    threading.Timer(2.0, os.kill, args=(pid, signal.SIGCONT)).start()
        assert any("3 heartbeats" in e["reason"] for e in retries), retries
        assert_whole_log(events, list(client.runs.events(run_id)))


def test_since_id_types_and_cursor(server: ServerProcess, client: noukai.Noukai) -> None:
    result = client.flow("three-steps").execute(message="go")
    assert isinstance(result, noukai.ExecuteResult) and result.execution_id
    run_id = result.execution_id
    full = list(client.runs.events(run_id))
    tail = client.runs.events(run_id, since_id=5)
    rest = list(tail)
    assert [e.seq for e in rest] == [e.seq for e in full if e.seq and e.seq > 5]
    assert tail.last_event_id == full[-1].seq and tail.execution_id == run_id
    assert list(client.runs.events(run_id, since_id=full[-1].seq)) == []  # already at the end
    only = [e.type for e in client.runs.events(run_id, types=["step_completed"])]
    assert only == ["step_completed"] * 3


@pytest.mark.anyio
async def test_async_break_and_resume(server: ServerProcess, aclient: noukai.AsyncNoukai) -> None:
    slug = put_slow_flow(server, words=20, delay_ms=10, steps=2)
    with sdk(server) as client:
        run_id = start_run(client, slug)
    first: list[noukai.StreamEvent] = []
    stream = aclient.runs.events(run_id)
    async for event in stream:
        first.append(event)
        if len(first) == 6:
            break
    await stream.aclose()
    rest = [e async for e in aclient.runs.events(run_id, since_id=stream.last_event_id)]
    full = [e async for e in aclient.runs.events(run_id)]
    assert_whole_log(first + rest, full)


def test_cancel_ends_the_stream(server: ServerProcess, client: noukai.Noukai) -> None:
    # One word at once, then a minute before each of the next: only an interrupted step can end
    # the run before another word comes.
    slug = put_slow_flow(server, words=5, delay_ms=60_000, steps=1)
    run_id = start_run(client, slug)
    run = client.flow(slug).run(run_id)
    names = []
    for event in run.events():
        names.append(event.type)
        if event.type == "step_output" and names.count("step_output") == 1:
            answer = run.cancel()
            assert answer.execution_id == run_id and answer.cancel_requested
    assert names[-1] == "run_cancelled", names
    assert names.count("step_output") == 1 and "step_completed" not in names, names
    assert run.retrieve().status == "cancelled"
    assert run.cancel().status == "cancelled"  # idempotent


def test_a_cancelled_run_raises_from_steps(server: ServerProcess, client: noukai.Noukai) -> None:
    # A minute between words: however late the cancel comes, the run is still going.
    slug = put_slow_flow(server, words=3, delay_ms=60_000, steps=2)
    stream = client.flow(slug).steps(message="go")

    def cancel_once_started() -> None:
        deadline = time.monotonic() + 10
        while stream.execution_id is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)  # into the first step, which streams for minutes
        client.runs.cancel(str(stream.execution_id))

    canceller = threading.Thread(target=cancel_once_started)
    canceller.start()
    with pytest.raises(noukai.FlowExecutionError) as info:
        for _ in stream:
            pass
    canceller.join()
    assert info.value.code == "RUN_CANCELLED" and info.value.execution_id == stream.execution_id


def test_idempotency_key_gives_the_same_run(client: noukai.Noukai) -> None:
    key = f"order-{time.monotonic_ns()}"
    first = client.flow("echo").execute(message="once", idempotency_key=key)
    again = client.flow("echo").execute(message="once", idempotency_key=key)
    assert first.execution_id == again.execution_id


def test_pruned_logs_answer_events_expired(make_server: Any) -> None:
    server = make_server(
        {"NOUKAI_EVENT_RETENTION_SECONDS": "0.3", "NOUKAI_RETENTION_INTERVAL_SECONDS": "0.1"}
    )
    with sdk(server) as client:
        result = client.flow("echo").execute(message="gone soon")
        assert isinstance(result, noukai.ExecuteResult) and result.execution_id
        deadline = time.monotonic() + 10
        while client.runs.retrieve(result.execution_id).status == "completed" and time.monotonic() < deadline:
            try:
                list(client.runs.events(result.execution_id))
            except noukai.FlowExecutionError:
                break  # pruned
            time.sleep(0.2)
        with pytest.raises(noukai.FlowExecutionError) as info:
            list(client.runs.events(result.execution_id))
        assert (info.value.status_code, info.value.code) == (410, "EVENTS_EXPIRED")
        assert info.value.execution_id == result.execution_id
        assert client.runs.retrieve(result.execution_id).result == "gone soon"


def test_unknown_runs(client: noukai.Noukai) -> None:
    with pytest.raises(noukai.FlowNotFoundError) as info:
        list(client.runs.events("00000000-0000-4000-8000-000000000000"))
    assert info.value.code == "RUN_NOT_FOUND"
