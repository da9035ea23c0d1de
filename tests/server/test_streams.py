"""The native resumable stream, the step protocol's errors, heartbeats and cancellation."""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

import httpx
import pytest

from noukai.types import events as ev
from tests.conftest import ServerProcess
from tests.server.test_execute_api import assert_error
from tests.sse_client import Frame, iter_frames

STEP_BODY = {
    "stepIndex": 0,
    "accumulatedOutputs": {},
    "parameters": {},
    "inputOverrides": {},
    "runRemaining": True,
    "iterationsUsed": 0,
    "trace": False,
}


HANG_GUARD = 30.0
"""Seconds to wait for what should come at once: a guard against hangs, not a measure."""


def headers(server: ServerProcess) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.dev_key}"}


def slow_flow(server: ServerProcess, words: int, delay_ms: float, steps: int = 2) -> str:
    slug = f"slow-{uuid.uuid4().hex[:8]}"
    text = " ".join(f"w{i}" for i in range(words))
    server.put_flow(
        server.dev_key,
        "dev",
        "main",
        {
            "slug": slug,
            "steps": [
                {
                    "id": f"s{n}",
                    "type": "llm",
                    "model": "builtin:echo",
                    "prompt": text,
                    "params": {"token_delay_ms": delay_ms},
                }
                for n in range(steps)
            ],
        },
    )
    return slug


def start_run(server: ServerProcess, slug: str, **body: Any) -> str:
    """Start a run through /step and hang up after its first event; the run goes on."""
    payload = {**STEP_BODY, "message": "go", **body}
    with httpx.stream(
        "POST",
        f"{server.api_url}/seq/dev/main/{slug}/step",
        json=payload,
        headers=headers(server),
        timeout=30,
    ) as response:
        assert response.status_code == 200, response.read()
        first = next(iter_frames(response))
    assert first.event == "run_started"
    return str(first.json["executionId"])


def read_stream(
    server: ServerProcess,
    run_id: str,
    *,
    since: int | None = None,
    last_event_id: int | None = None,
    limit: int | None = None,
    params: dict[str, str] | None = None,
) -> list[Frame]:
    query = dict(params or {})
    if since is not None:
        query["since_id"] = str(since)
    hdrs = headers(server)
    if last_event_id is not None:
        hdrs["Last-Event-ID"] = str(last_event_id)
    frames: list[Frame] = []
    with httpx.stream(
        "GET", f"{server.api_url}/runs/{run_id}/events", params=query, headers=hdrs, timeout=30
    ) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for frame in iter_frames(response):
            frames.append(frame)
            if limit is not None and sum(1 for f in frames if f.id is not None) >= limit:
                break  # drop the connection mid-run
    return frames


def events_only(frames: list[Frame]) -> list[Frame]:
    return [f for f in frames if f.id is not None]


def wait_status(server: ServerProcess, run_id: str, status: str, timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run: dict[str, Any] = httpx.get(f"{server.api_url}/runs/{run_id}", headers=headers(server)).json()
        if run["status"] == status or time.monotonic() > deadline:
            return run
        time.sleep(0.02)


@pytest.mark.parametrize("seed", range(6))
def test_dropping_and_resuming_loses_and_repeats_nothing(server: ServerProcess, seed: int) -> None:
    rng = random.Random(seed)
    slug = slow_flow(server, words=40, delay_ms=2, steps=3)
    run_id = start_run(server, slug)
    collected: list[Frame] = []
    last: int | None = None
    for _ in range(200):
        take = rng.randint(1, 25)
        frames = events_only(read_stream(server, run_id, last_event_id=last, limit=take))
        collected.extend(frames)
        if frames:
            last = frames[-1].id
        if collected and collected[-1].event == "flow_completed":
            break
    full = events_only(read_stream(server, run_id, since=0))
    assert [f.id for f in collected] == list(range(1, len(full) + 1))
    assert [(f.id, f.event, f.data) for f in collected] == [(f.id, f.event, f.data) for f in full]
    assert full[-1].event == "flow_completed"


def test_since_id_after_the_run_ended_replays_the_rest(server: ServerProcess) -> None:
    run_id = start_run(server, "three-steps")
    wait_status(server, run_id, "completed")
    full = events_only(read_stream(server, run_id))
    tail = events_only(read_stream(server, run_id, since=5))
    assert [f.id for f in tail] == [f.id for f in full if f.id and f.id > 5]
    assert tail[-1].event == "flow_completed"


def test_types_filter_and_retry_hint(server: ServerProcess) -> None:
    run_id = start_run(server, "three-steps")
    frames = read_stream(server, run_id, params={"types": "step_completed,flow_completed"})
    assert frames[0].retry is not None
    names = [f.event for f in events_only(frames)]
    assert names == ["step_completed"] * 3 + ["flow_completed"]


def test_every_frame_carries_its_seq_and_type(server: ServerProcess) -> None:
    run_id = start_run(server, "echo")
    for frame in events_only(read_stream(server, run_id)):
        assert frame.json["seq"] == frame.id
        assert frame.json["eventType"] == frame.event


def test_stream_errors(server: ServerProcess) -> None:
    assert_error(
        httpx.get(f"{server.api_url}/runs/{uuid.uuid4()}/events", headers=headers(server)),
        404,
        "RUN_NOT_FOUND",
    )
    assert_error(
        httpx.get(f"{server.api_url}/runs/not-a-uuid/events", headers=headers(server)), 404, "RUN_NOT_FOUND"
    )
    run_id = start_run(server, "echo")
    bad = {**headers(server), "Last-Event-ID": "abc"}
    assert_error(httpx.get(f"{server.api_url}/runs/{run_id}/events", headers=bad), 422, "VALIDATION_ERROR")
    for since in ("-1", "abc", "1.5"):
        url = f"{server.api_url}/runs/{run_id}/events?since_id={since}"
        assert_error(httpx.get(url, headers=headers(server)), 422, "VALIDATION_ERROR")
    assert_error(httpx.get(f"{server.api_url}/runs/{run_id}/events?since_id=-1"), 401, "UNAUTHENTICATED")
    other = server.create_key("intruder")
    assert_error(
        httpx.get(f"{server.api_url}/runs/{run_id}/events", headers={"Authorization": f"Bearer {other}"}),
        404,
        "RUN_NOT_FOUND",
    )
    assert_error(httpx.get(f"{server.api_url}/runs/{run_id}/events"), 401, "UNAUTHENTICATED")


def step_call(server: ServerProcess, slug: str, body: dict[str, Any], version: str = "") -> httpx.Response:
    path = f"/seq/dev/main/{slug}{'/' + version if version else ''}/step"
    return httpx.post(f"{server.api_url}{path}", json={**STEP_BODY, **body}, headers=headers(server))


def test_step_protocol_errors(server: ServerProcess) -> None:
    assert_error(
        step_call(server, "three-steps", {"stepIndex": 1, "message": "x"}), 400, "INVALID_FIRST_CALL"
    )
    assert_error(
        step_call(server, "three-steps", {"executionId": str(uuid.uuid4()), "stepIndex": 1}),
        404,
        "RUN_NOT_FOUND",
    )
    assert_error(step_call(server, "echo", {"runRemaining": False}), 400, "MISSING_MESSAGE")
    with httpx.stream(
        "POST",
        f"{server.api_url}/seq/dev/main/three-steps/v0/step",
        json={**STEP_BODY, "message": "draft"},
        headers=headers(server),
    ) as draft:
        assert draft.status_code == 200  # the draft can be stepped through too
        assert events_only(list(iter_frames(draft)))[-1].event == "flow_completed"
    assert_error(step_call(server, "three-steps", {"message": "x"}, version="v9"), 404, "FLOW_NOT_FOUND")
    assert_error(step_call(server, "no-such-flow", {"message": "x"}), 404, "FLOW_NOT_FOUND")
    paced = start_run(server, "three-steps", runRemaining=False)
    wait_status(server, paced, "waiting")
    assert_error(
        step_call(server, "three-steps", {"executionId": paced, "stepIndex": 7}), 400, "INVALID_STEP_INDEX"
    )
    assert_error(
        step_call(server, "three-steps", {"executionId": paced, "stepIndex": 2}), 400, "INVALID_STEP_INDEX"
    )
    assert_error(step_call(server, "echo", {"executionId": paced, "stepIndex": 1}), 404, "RUN_NOT_FOUND")
    done = start_run(server, "echo")
    wait_status(server, done, "completed")
    assert_error(step_call(server, "echo", {"executionId": done, "stepIndex": 0}), 409, "RUN_NOT_RESUMABLE")


def test_cancel_mid_step_ends_the_stream_without_finishing_the_step(server: ServerProcess) -> None:
    # One word at once, then a minute before each of the next: only an interrupted step can end
    # the run before another word comes.
    slug = slow_flow(server, words=5, delay_ms=60_000, steps=1)
    run_id = start_run(server, slug)
    frames: list[Frame] = []
    with httpx.stream(
        "GET", f"{server.api_url}/runs/{run_id}/events", headers=headers(server), timeout=90
    ) as response:
        cancelled_at = None
        for frame in iter_frames(response):
            # A hang guard, far below the minute a step that was not interrupted would take.
            assert cancelled_at is None or time.monotonic() - cancelled_at < HANG_GUARD, frames
            if frame.id is None:
                continue
            frames.append(frame)
            if frame.event == "step_output" and cancelled_at is None:
                cancelled_at = time.monotonic()
                answer = httpx.post(f"{server.api_url}/runs/{run_id}/cancel", headers=headers(server))
                assert answer.status_code == 200
            if frame.event == "run_cancelled":
                break
    names = [f.event for f in frames]
    assert names[-1] == "run_cancelled", names
    assert names.count("step_output") == 1, names  # the step was cut off mid-stream
    assert "step_completed" not in names, names
    time.sleep(0.3)
    after = events_only(read_stream(server, run_id, since=frames[-1].id))
    assert after == []
    assert wait_status(server, run_id, "cancelled")["status"] == "cancelled"
    again = httpx.post(f"{server.api_url}/runs/{run_id}/cancel", headers=headers(server))
    assert again.json()["status"] == "cancelled"


def test_cancel_a_waiting_run_and_unknown_runs(server: ServerProcess) -> None:
    paced = start_run(server, "three-steps", runRemaining=False)
    wait_status(server, paced, "waiting")
    answer = httpx.post(f"{server.api_url}/runs/{paced}/cancel", headers=headers(server))
    assert answer.json()["status"] == "cancelled"
    frames = events_only(read_stream(server, paced))
    assert frames[-1].event == "run_cancelled"
    assert_error(
        step_call(server, "three-steps", {"executionId": paced, "stepIndex": 1}), 409, "RUN_NOT_RESUMABLE"
    )
    assert_error(
        httpx.post(f"{server.api_url}/runs/{uuid.uuid4()}/cancel", headers=headers(server)),
        404,
        "RUN_NOT_FOUND",
    )


def test_heartbeats_lifetime_and_execute_keepalive(make_server: Any) -> None:
    server = make_server({"NOUKAI_HEARTBEAT_SECONDS": "0.2", "NOUKAI_STREAM_LIFETIME_SECONDS": "0.7"})
    slug = f"sleepy-{uuid.uuid4().hex[:6]}"
    server.put_flow(
        server.dev_key,
        "dev",
        "main",
        {
            "slug": slug,
            "steps": [
                {
                    "id": "nap",
                    "type": "python",
                    "function": "time.sleep",
                    "args": {"seconds": 5, "value": "rested"},
                }
            ],
        },
    )
    run_id = start_run(server, slug)
    first = read_stream(server, run_id)
    # The server closed it on purpose after its 0.7 s lifetime: the run (5 s) is still going.
    assert not any(f.event in ev.TERMINAL_EVENTS for f in first), [f.event for f in first]
    assert httpx.get(f"{server.api_url}/runs/{run_id}", headers=headers(server)).json()["status"] == "running"
    assert any("ping" in c for f in first for c in f.comments)
    cursor: int | None = max(f.id for f in events_only(first) if f.id is not None)
    rest: list[Frame] = []
    deadline = time.monotonic() + 60  # a hang guard
    # Each stream lives 0.7 s: keep resuming from the last seq seen (some reads bring nothing).
    while not rest or rest[-1].event != "flow_completed":
        assert time.monotonic() < deadline
        got = events_only(read_stream(server, run_id, last_event_id=cursor))
        rest += got
        if got:
            cursor = got[-1].id
    assert rest[-1].json["result"] == "rested"
    # /execute on a run longer than the heartbeat: whitespace keepalives, then the JSON.
    with httpx.stream(
        "POST", f"{server.api_url}/seq/dev/main/{slug}/execute", json={}, headers=headers(server), timeout=30
    ) as response:
        chunks = list(response.iter_bytes())
    raw = b"".join(chunks)
    assert raw.startswith(b" ")
    assert httpx.Response(200, content=raw).json()["result"] == "rested"


def test_pruned_logs_answer_410_and_the_run_stays_readable(make_server: Any) -> None:
    server = make_server(
        {"NOUKAI_EVENT_RETENTION_SECONDS": "0.5", "NOUKAI_RETENTION_INTERVAL_SECONDS": "0.2"}
    )
    run_id = start_run(server, "echo")
    assert wait_status(server, run_id, "completed")["status"] == "completed"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        response = httpx.get(f"{server.api_url}/runs/{run_id}/events", headers=headers(server))
        if response.status_code == 410:
            break
        time.sleep(0.2)
    detail = assert_error(response, 410, "EVENTS_EXPIRED")
    assert detail["executionId"] == run_id
    assert wait_status(server, run_id, "completed")["result"] == "go"
