"""Threads over HTTP against a real server: history across runs, one active run (409 or enqueue),
erasure, forks, windows, TTL, tenancy, every error path, and the thread stream across runs."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess
from tests.sse_client import Frame, iter_frames


def headers(server: ServerProcess, key: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key or server.dev_key}"}


def chat_flow(server: ServerProcess, *, delay_ms: float = 0, history: dict[str, Any] | None = None) -> str:
    """An echo flow whose answer says how many messages the run saw, and the new message."""
    slug = f"chat-{uuid.uuid4().hex[:8]}"
    document: dict[str, Any] = {
        "slug": slug,
        "steps": [
            {
                "id": "say",
                "type": "llm",
                "model": "builtin:echo",
                "prompt": "{{ messages | length }} {{ message }}",
                "params": {"token_delay_ms": delay_ms},
            }
        ],
    }
    if history is not None:
        document["history"] = history
    server.put_flow(server.dev_key, "dev", "main", document)
    return slug


def new_thread(server: ServerProcess, key: str | None = None, **body: Any) -> dict[str, Any]:
    response = httpx.post(f"{server.api_url}/threads", json=body, headers=headers(server, key))
    assert response.status_code == 201, response.text
    value: dict[str, Any] = response.json()
    return value


def execute(server: ServerProcess, slug: str, **body: Any) -> httpx.Response:
    return httpx.post(
        f"{server.api_url}/seq/dev/main/{slug}/execute", json=body, headers=headers(server), timeout=30
    )


def messages(server: ServerProcess, thread_id: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{server.api_url}/threads/{thread_id}/messages", headers=headers(server))
    assert response.status_code == 200, response.text
    return [m["message"] for m in response.json()["messages"]]


def error(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["detail"]["code"]


def wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_history_grows_across_runs(server: ServerProcess) -> None:
    slug = chat_flow(server)
    thread = new_thread(server, metadata={"user": "ada"})
    assert thread["metadata"] == {"user": "ada"} and thread["messageCount"] == 0
    first = execute(server, slug, message="hello", threadId=thread["threadId"])
    assert first.status_code == 200, first.text
    assert first.json()["result"] == "1 hello"
    second = execute(server, slug, message="again", threadId=thread["threadId"])
    assert second.json()["result"] == "3 again"  # hello, its answer, and this turn
    assert messages(server, thread["threadId"]) == [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "1 hello"},
        {"role": "user", "content": "again"},
        {"role": "assistant", "content": "3 again"},
    ]
    info = httpx.get(f"{server.api_url}/threads/{thread['threadId']}", headers=headers(server)).json()
    assert info["messageCount"] == 4 and info["runCount"] == 2 and info["activeRunId"] is None
    # The run keeps the thread's messages as its `messages` input; without a thread nothing is kept.
    assert execute(server, slug, message="alone").json()["result"] == "0 alone"


def test_messages_are_paged_with_a_cursor(server: ServerProcess) -> None:
    slug = chat_flow(server)
    thread_id = new_thread(server)["threadId"]
    for text in ("a", "b", "c"):
        execute(server, slug, message=text, threadId=thread_id)
    url = f"{server.api_url}/threads/{thread_id}/messages"
    seen: list[int] = []
    cursor: str | None = None
    while True:
        params = {"limit": "4", **({"cursor": cursor} if cursor else {})}
        page = httpx.get(url, params=params, headers=headers(server)).json()
        seen += [m["position"] for m in page["messages"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == [1, 2, 3, 4, 5, 6]
    assert error(httpx.get(url, params={"cursor": "x"}, headers=headers(server))) == (422, "VALIDATION_ERROR")
    assert error(httpx.get(url, params={"limit": "0"}, headers=headers(server))) == (422, "VALIDATION_ERROR")


def test_a_busy_thread_answers_409_or_enqueues_the_turn(server: ServerProcess) -> None:
    slow = chat_flow(server, delay_ms=250)
    fast = chat_flow(server)
    thread_id = new_thread(server)["threadId"]
    job = httpx.post(
        f"{server.api_url}/seq/dev/main/{slow}/jobs",
        json={"message": "one two three", "threadId": thread_id},
        headers=headers(server),
    )
    assert job.status_code == 202, job.text
    busy = execute(server, fast, message="now", threadId=thread_id)
    assert error(busy) == (409, "THREAD_BUSY")
    assert busy.json()["detail"]["activeRunId"] == job.json()["executionId"]
    step = httpx.post(
        f"{server.api_url}/seq/dev/main/{fast}/step",
        json={"message": "now", "threadId": thread_id},
        headers=headers(server),
    )
    assert error(step) == (409, "THREAD_BUSY")
    second_job = httpx.post(
        f"{server.api_url}/seq/dev/main/{fast}/jobs",
        json={"message": "now", "threadId": thread_id},
        headers=headers(server),
    )
    assert error(second_job) == (409, "THREAD_BUSY")
    # enqueue: waits its turn, then sees the first turn's answer
    queued = execute(server, fast, message="after", threadId=thread_id, multitask="enqueue")
    assert queued.status_code == 200, queued.text
    assert queued.json()["result"] == "3 after"
    history = messages(server, thread_id)
    assert [m["content"] for m in history] == ["one two three", "1 one two three", "after", "3 after"]
    refused = execute(server, fast, message="x", threadId=thread_id, multitask="later")
    assert error(refused) == (422, "VALIDATION_ERROR")


def test_window_limits_the_history_a_run_sees(server: ServerProcess) -> None:
    windowed = chat_flow(server, history={"max_messages": 2})
    thread_id = new_thread(server)["threadId"]
    for text, seen in (("a", 1), ("b", 3), ("c", 3), ("d", 3)):
        assert (
            execute(server, windowed, message=text, threadId=thread_id).json()["result"] == f"{seen} {text}"
        )
    assert len(messages(server, thread_id)) == 8  # the thread keeps everything
    by_tokens = chat_flow(server, history={"max_tokens": 1})
    assert execute(server, by_tokens, message="e", threadId=thread_id).json()["result"] == "1 e"


def test_delete_erases_the_history_and_the_runs_contents(server: ServerProcess) -> None:
    slug = chat_flow(server)
    thread_id = new_thread(server)["threadId"]
    run_id = execute(server, slug, message="my secret", threadId=thread_id).json()["executionId"]
    url = f"{server.api_url}/threads/{thread_id}"
    erased = httpx.delete(url, headers=headers(server))
    assert erased.status_code == 200, erased.text
    body = erased.json()
    assert body["deleted"] is True and body["messages"] == 2 and body["runs"] == 1 and body["events"] > 0
    assert error(httpx.get(url, headers=headers(server))) == (404, "THREAD_NOT_FOUND")
    assert error(httpx.delete(url, headers=headers(server))) == (404, "THREAD_NOT_FOUND")
    run = httpx.get(f"{server.api_url}/runs/{run_id}", headers=headers(server)).json()
    assert run["status"] == "completed" and run["result"] is None
    trace = httpx.get(f"{server.api_url}/runs/{run_id}/events", headers=headers(server))
    assert error(trace) == (410, "EVENTS_EXPIRED")


def test_delete_of_a_busy_thread_answers_409(server: ServerProcess) -> None:
    slow = chat_flow(server, delay_ms=300)
    thread_id = new_thread(server)["threadId"]
    job = httpx.post(
        f"{server.api_url}/seq/dev/main/{slow}/jobs",
        json={"message": "a b c", "threadId": thread_id},
        headers=headers(server),
    ).json()
    busy = httpx.delete(f"{server.api_url}/threads/{thread_id}", headers=headers(server))
    assert error(busy) == (409, "THREAD_BUSY")
    httpx.post(f"{server.api_url}/runs/{job['executionId']}/cancel", headers=headers(server))

    def deleted() -> bool:
        return (
            httpx.delete(f"{server.api_url}/threads/{thread_id}", headers=headers(server)).status_code == 200
        )

    wait_for(deleted)


def test_fork_starts_a_thread_from_a_position(server: ServerProcess) -> None:
    slug = chat_flow(server)
    thread_id = new_thread(server, metadata={"v": 1})["threadId"]
    for text in ("a", "b"):
        execute(server, slug, message=text, threadId=thread_id)
    url = f"{server.api_url}/threads/{thread_id}/fork"
    fork = httpx.post(url, json={"position": 2}, headers=headers(server))
    assert fork.status_code == 201, fork.text
    forked = fork.json()
    assert forked["threadId"] != thread_id and forked["messageCount"] == 2 and forked["metadata"] == {"v": 1}
    assert execute(server, slug, message="c", threadId=forked["threadId"]).json()["result"] == "3 c"
    assert len(messages(server, thread_id)) == 4  # the source is untouched
    whole = httpx.post(url, headers=headers(server))
    assert whole.status_code == 201 and whole.json()["messageCount"] == 4
    too_far = httpx.post(url, json={"position": 5}, headers=headers(server))
    assert error(too_far) == (400, "THREAD_POSITION_INVALID")
    negative = httpx.post(url, json={"position": -1}, headers=headers(server))
    assert error(negative) == (422, "VALIDATION_ERROR")
    missing = httpx.post(f"{server.api_url}/threads/{uuid.uuid4()}/fork", headers=headers(server))
    assert error(missing) == (404, "THREAD_NOT_FOUND")


def test_threads_belong_to_their_tenant(server: ServerProcess) -> None:
    slug = chat_flow(server)
    thread_id = new_thread(server)["threadId"]
    other = server.create_key("other-org")
    other_project = server.create_key("dev", "elsewhere")
    org_wide = server.create_key("dev")
    for key in (other, other_project):
        for method, path in (
            ("GET", ""),
            ("GET", "/messages"),
            ("DELETE", ""),
            ("POST", "/fork"),
            ("GET", "/events"),
        ):
            answer = httpx.request(
                method, f"{server.api_url}/threads/{thread_id}{path}", headers=headers(server, key)
            )
            assert error(answer) == (404, "THREAD_NOT_FOUND"), (method, path)
    # an org-wide key sees the org's threads, and must name a project to create one
    assert (
        httpx.get(f"{server.api_url}/threads/{thread_id}", headers=headers(server, org_wide)).status_code
        == 200
    )
    no_project = httpx.post(f"{server.api_url}/threads", json={}, headers=headers(server, org_wide))
    assert error(no_project) == (422, "VALIDATION_ERROR")
    assert new_thread(server, org_wide, project="main")["messageCount"] == 0
    wrong = httpx.post(f"{server.api_url}/threads", json={"project": "x"}, headers=headers(server))
    assert error(wrong) == (403, "FORBIDDEN")
    # a thread of another project cannot take a turn of this project's flow
    foreign = new_thread(server, other_project)["threadId"]
    assert error(execute(server, slug, message="x", threadId=foreign)) == (404, "THREAD_NOT_FOUND")


def test_error_paths(server: ServerProcess) -> None:
    slug = chat_flow(server)
    unknown = str(uuid.uuid4())
    assert error(httpx.get(f"{server.api_url}/threads/{unknown}", headers=headers(server))) == (
        404,
        "THREAD_NOT_FOUND",
    )
    assert error(httpx.get(f"{server.api_url}/threads/not-a-uuid", headers=headers(server))) == (
        404,
        "THREAD_NOT_FOUND",
    )
    assert error(execute(server, slug, message="x", threadId=unknown)) == (404, "THREAD_NOT_FOUND")
    assert error(execute(server, slug, message="x", threadId="nope")) == (404, "THREAD_NOT_FOUND")
    job = httpx.post(
        f"{server.api_url}/seq/dev/main/{slug}/jobs",
        json={"message": "x", "threadId": unknown},
        headers=headers(server),
    )
    assert error(job) == (404, "THREAD_NOT_FOUND")
    bad_ttl = httpx.post(f"{server.api_url}/threads", json={"ttlSeconds": 0}, headers=headers(server))
    assert error(bad_ttl) == (422, "VALIDATION_ERROR")
    assert httpx.get(f"{server.api_url}/threads/{unknown}").status_code == 401
    thread_id = new_thread(server)["threadId"]
    events = f"{server.api_url}/threads/{thread_id}/events"
    for params, extra in (({"since_id": "7"}, {}), ({}, {"Last-Event-ID": "1-x"})):
        answer = httpx.get(events, params=params, headers={**headers(server), **extra})
        assert error(answer) == (422, "VALIDATION_ERROR")


def test_ttl_expires_the_thread_then_retention_erases_it(make_server: Any) -> None:
    server = make_server(env={"NOUKAI_RETENTION_INTERVAL_SECONDS": "0.3"})
    slug = chat_flow(server)
    thread_id = new_thread(server, ttlSeconds=1)["threadId"]
    run_id = execute(server, slug, message="brief", threadId=thread_id).json()["executionId"]
    url = f"{server.api_url}/threads/{thread_id}"

    def status() -> int:
        return httpx.get(url, headers=headers(server)).status_code

    # expired: 410 until the sweep erases it, then 404 (it may already be erased: both are fine)
    wait_for(lambda: status() in (404, 410))
    wait_for(lambda: status() == 404)
    run = httpx.get(f"{server.api_url}/runs/{run_id}", headers=headers(server)).json()
    assert run["result"] is None
    long_lived = new_thread(server)
    assert long_lived["ttlSeconds"] == 30 * 24 * 3600


def test_an_expired_thread_answers_410(make_server: Any) -> None:
    server = make_server(env={"NOUKAI_RETENTION_INTERVAL_SECONDS": "3600"})
    slug = chat_flow(server)
    thread_id = new_thread(server, ttlSeconds=1)["threadId"]
    time.sleep(1.2)
    url = f"{server.api_url}/threads/{thread_id}"
    assert error(httpx.get(url, headers=headers(server))) == (410, "THREAD_EXPIRED")
    assert error(httpx.get(f"{url}/messages", headers=headers(server))) == (410, "THREAD_EXPIRED")
    assert error(execute(server, slug, message="late", threadId=thread_id)) == (410, "THREAD_EXPIRED")
    assert error(httpx.post(f"{url}/fork", headers=headers(server))) == (410, "THREAD_EXPIRED")
    assert httpx.delete(url, headers=headers(server)).status_code == 200  # erasure is always allowed


# -- the thread stream ------------------------------------------------------------------------------


def _key(frame_id: str) -> tuple[int, int]:
    ordinal, seq = frame_id.split("-")
    return int(ordinal), int(seq)


def test_thread_stream_cut_and_resumed_across_three_runs(server: ServerProcess) -> None:
    slug = chat_flow(server, delay_ms=5)
    thread_id = new_thread(server)["threadId"]
    run_ids = [
        execute(server, slug, message=f"turn {n} of the conversation", threadId=thread_id).json()[
            "executionId"
        ]
        for n in range(3)
    ]
    expected: list[tuple[int, int]] = []
    for ordinal, run_id in enumerate(run_ids, start=1):
        run = httpx.get(f"{server.api_url}/runs/{run_id}", headers=headers(server)).json()
        expected += [(ordinal, seq) for seq in range(1, run["lastSeq"] + 1)]
    url = f"{server.api_url}/threads/{thread_id}/events"
    got: list[Frame] = []
    last: str | None = None
    cuts = 0
    while len(got) < len(expected):
        extra = {"Last-Event-ID": last} if last else {}
        with httpx.stream("GET", url, headers={**headers(server), **extra}, timeout=30) as response:
            assert response.status_code == 200, response.read()
            taken = 0
            for frame in iter_frames(response):
                if frame.raw_id is None:
                    continue
                got.append(frame)
                last = frame.raw_id
                taken += 1
                if taken == 4 or len(got) == len(expected):
                    break  # cut the connection mid-stream
        cuts += 1
    assert cuts >= 3
    keys = [_key(f.raw_id or "") for f in got]
    assert keys == expected  # monotonic across runs, no gap, no duplicate
    assert [f.json["seq"] for f in got] == [seq for _, seq in expected]
    starts = [f.json["executionId"] for f in got if f.event == "run_started"]
    assert starts == run_ids
    # since_id resumes too: from the second-to-last event, the last one comes again, then nothing
    resumed_at = got[-2].raw_id or ""
    with httpx.stream(
        "GET", url, params={"since_id": resumed_at}, headers=headers(server), timeout=30
    ) as again:
        first = next(f for f in iter_frames(again) if f.raw_id is not None)
        assert first.raw_id == got[-1].raw_id


def test_thread_stream_delivers_a_new_run_live(server: ServerProcess) -> None:
    slug = chat_flow(server)
    thread_id = new_thread(server)["threadId"]
    execute(server, slug, message="first", threadId=thread_id)
    url = f"{server.api_url}/threads/{thread_id}/events"
    with httpx.stream("GET", url, headers=headers(server), timeout=30) as response:
        frames = iter_frames(response)
        seen: list[Frame] = []
        for frame in frames:
            if frame.raw_id is None:
                continue
            seen.append(frame)
            if frame.event == "flow_completed":
                break
        assert {f.raw_id.split("-")[0] for f in seen if f.raw_id} == {"1"}
        second = execute(server, slug, message="second", threadId=thread_id).json()["executionId"]
        for frame in frames:
            if frame.raw_id is None:
                continue
            assert frame.raw_id.startswith("2-")
            if frame.event == "run_started":
                assert frame.json["executionId"] == second
            if frame.event == "flow_completed":
                break


@pytest.mark.postgres
def test_threads_on_postgres(make_server: Any) -> None:
    from tests._services import fresh_postgres_database

    with fresh_postgres_database() as url:
        server = make_server(extra_args=("--database-url", url, "--dev-key"))
        slow = chat_flow(server, delay_ms=200)
        fast = chat_flow(server)
        thread_id = new_thread(server)["threadId"]
        assert execute(server, fast, message="hi", threadId=thread_id).json()["result"] == "1 hi"
        httpx.post(
            f"{server.api_url}/seq/dev/main/{slow}/jobs",
            json={"message": "a b c", "threadId": thread_id},
            headers=headers(server),
        )
        assert error(execute(server, fast, message="x", threadId=thread_id)) == (409, "THREAD_BUSY")
        queued = execute(server, fast, message="z", threadId=thread_id, multitask="enqueue")
        assert queued.json()["result"] == "5 z"
        assert len(messages(server, thread_id)) == 6
        fork = httpx.post(
            f"{server.api_url}/threads/{thread_id}/fork", json={"position": 2}, headers=headers(server)
        )
        assert fork.json()["messageCount"] == 2
        assert (
            httpx.delete(f"{server.api_url}/threads/{thread_id}", headers=headers(server)).json()["messages"]
            == 6
        )
        server.stop()


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_client_tool_turns_are_kept_in_the_history(server: ServerProcess) -> None:
    thread_id = new_thread(server)["threadId"]
    url = f"{server.api_url}/seq/dev/main/assistant/execute"
    answer = httpx.post(
        url, json={"message": "weather?", "tools": [WEATHER], "threadId": thread_id}, headers=headers(server)
    ).json()
    rounds = 0
    while answer["status"] == "tool_calls_required":
        rounds += 1
        results = [{"role": "tool", "tool_call_id": c["id"], "content": "sunny"} for c in answer["toolCalls"]]
        # the thread stays busy while its run waits for the caller's tools
        assert error(execute(server, "echo", message="x", threadId=thread_id)) == (409, "THREAD_BUSY")
        answer = httpx.post(
            url,
            json={
                "tools": [WEATHER],
                "executionId": answer["executionId"],
                "pausedAtStep": answer["pausedAtStep"],
                "iterationsUsed": answer["iterationsUsed"],
                "toolCallMessages": answer["toolCallMessages"] + results,
                "accumulatedOutputs": answer["accumulatedOutputs"],
            },
            headers=headers(server),
        ).json()
    assert answer["status"] == "completed" and rounds >= 1
    history = messages(server, thread_id)
    roles = [m["role"] for m in history]
    assert roles[0] == "user" and roles[-1] == "assistant"
    assert roles[1:-1] == ["assistant", "tool"] * rounds
    calls = [m for m in history if m["role"] == "assistant" and m.get("tool_calls")]
    tools = [m for m in history if m["role"] == "tool"]
    assert len(calls) == rounds
    assert {t["tool_call_id"] for t in tools} == {c["tool_calls"][0]["id"] for c in calls}
    assert all(t["content"] == "sunny" for t in tools)
    assert history[-1]["content"] == answer["result"]


def test_thread_stream_heartbeats_retry_hint_and_planned_close(make_server: Any) -> None:
    server = make_server(
        env={
            "NOUKAI_HEARTBEAT_SECONDS": "0.2",
            "NOUKAI_STREAM_LIFETIME_SECONDS": "1",
            "NOUKAI_RETRY_MS": "250",
        }
    )
    slug = chat_flow(server)
    thread_id = new_thread(server)["threadId"]
    execute(server, slug, message="hello", threadId=thread_id)
    url = f"{server.api_url}/threads/{thread_id}/events"
    started = time.monotonic()
    with httpx.stream(
        "GET", url, params={"types": "flow_completed"}, headers=headers(server), timeout=10
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        body = response.read().decode()
    assert time.monotonic() - started < 5  # closed by the server after its lifetime
    assert body.startswith("retry: 250\n\n")
    assert body.count("event: flow_completed") == 1 and "event: step_output" not in body
    assert "id: 1-" in body and body.count(": ping") >= 2
