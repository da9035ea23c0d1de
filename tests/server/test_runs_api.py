"""The runs API over a real socket, on SQLite and on PostgreSQL: `GET /runs` with every filter over a
few thousand runs made through the API (jobs, execute, step, thread turns), keyset pages, tenant
isolation, run metadata at execute/step/job time, the rerun (from scratch and from a step) and
every refusal with its code."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests._services import fresh_postgres_database
from tests.conftest import ServerProcess, _server_env, free_port
from tests.server.test_execute_api import assert_error

# Making ~2,200 runs through the API takes a minute or two on a busy 2-CPU machine (PostgreSQL:
# the longer); the module's first test pays for it.
pytestmark = pytest.mark.timeout(900)

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
ECHO = {
    "slug": "echo",
    "steps": [{"id": "say", "type": "llm", "model": "builtin:echo", "prompt": "{{ message }}"}],
}
JOBS_PER_BATCH = 400
"""Runs of each kind made in bulk: with the others, over 2,000 runs per store."""


@dataclass
class Made:
    """What the test made, by execution id, to compare each list with."""

    runs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, run_id: str, **facts: Any) -> None:
        self.runs[run_id] = facts

    def ids(self, **wanted: Any) -> set[str]:
        return {
            run_id
            for run_id, facts in self.runs.items()
            if all(
                value(facts.get(name)) if callable(value) else facts.get(name) == value
                for name, value in wanted.items()
            )
        }


@dataclass
class World:
    server: ServerProcess
    dev: str
    """The dev org's admin key (org-wide)."""
    side: str
    """A key of project dev/side only."""
    reader: str
    """A read-only key of the dev org."""
    acme: str
    """Another org's key."""
    made: Made
    thread_id: str


def _headers(key: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **extra}


async def _post(client: httpx.AsyncClient, key: str, path: str, body: Any, **headers: str) -> httpx.Response:
    return await client.post(path, json=body, headers=_headers(key, **headers))


def _sse_events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]


async def _populate(server: ServerProcess, dev: str, side: str, acme: str) -> tuple[Made, str]:
    made = Made()
    gate = asyncio.Semaphore(16)
    async with httpx.AsyncClient(base_url=server.api_url, timeout=60) as client:

        async def job(key: str, path: str, body: dict[str, Any], **facts: Any) -> None:
            async with gate:
                response = await _post(client, key, path, body)
            assert response.status_code == 202, response.text
            made.add(response.json()["executionId"], trigger="job", **facts)

        batch: list[Any] = []
        for i in range(JOBS_PER_BATCH):
            labels = {"batch": str(i % 4), "team": "red" if i % 3 == 0 else "blue"}
            batch.append(
                job(
                    dev,
                    "/seq/dev/main/echo/v0/jobs",
                    {"message": f"m{i}", "metadata": labels},
                    org="dev",
                    project="main",
                    flow="echo",
                    version=0,
                    status="completed",
                    **labels,
                )
            )
            batch.append(
                job(
                    dev,
                    "/seq/dev/main/broken/jobs",
                    {"metadata": {"batch": str(i % 4)}},
                    org="dev",
                    project="main",
                    flow="broken",
                    version=0,
                    status="failed",
                    batch=str(i % 4),
                )
            )
            batch.append(
                job(
                    side,
                    "/seq/dev/side/echo/jobs",
                    {"message": "s"},
                    org="dev",
                    project="side",
                    flow="echo",
                    version=0,
                    status="completed",
                )
            )
        await asyncio.gather(*batch)
        # Version 1 of dev/main/echo, then runs of it.
        server.put_flow(dev, "dev", "main", ECHO, publish=True)
        await asyncio.gather(
            *(
                job(
                    dev,
                    "/seq/dev/main/echo/jobs",
                    {"message": "v1"},
                    org="dev",
                    project="main",
                    flow="echo",
                    version=1,
                    status="completed",
                )
                for _ in range(JOBS_PER_BATCH)
            ),
            *(
                job(
                    acme,
                    "/seq/acme/main/echo/jobs",
                    {"message": "acme", "metadata": {"batch": "1"}},
                    org="acme",
                    project="main",
                    flow="echo",
                    version=0,
                    status="completed",
                    batch="1",
                )
                for _ in range(JOBS_PER_BATCH)
            ),
        )

        async def execute(i: int) -> None:
            extra = {"X-Session-Id": "session-a"} if i % 2 else {}
            async with gate:
                response = await _post(
                    client,
                    dev,
                    "/seq/dev/main/three-steps/execute",
                    {"message": f"x{i}", "metadata": {"kind": "execute"}},
                    **extra,
                )
            assert response.status_code == 200, response.text
            made.add(
                response.json()["executionId"],
                trigger="execute",
                org="dev",
                project="main",
                flow="three-steps",
                version=0,
                status="completed",
                kind="execute",
                session="session-a" if i % 2 else None,
            )

        async def step(i: int) -> None:
            async with gate:
                response = await _post(
                    client,
                    dev,
                    "/seq/dev/main/three-steps/step",
                    {"message": f"s{i}", "stepIndex": 0, "metadata": {"kind": "step"}},
                )
            assert response.status_code == 200, response.text
            run_id = _sse_events(response.text)[0]["executionId"]
            made.add(
                run_id,
                trigger="step",
                org="dev",
                project="main",
                flow="three-steps",
                version=0,
                status="waiting",
                kind="step",
            )

        await asyncio.gather(*(execute(i) for i in range(100)), *(step(i) for i in range(100)))
        thread = await _post(client, dev, "/threads", {"project": "main"})
        assert thread.status_code == 201, thread.text
        thread_id = thread.json()["threadId"]
        for i in range(3):
            response = await _post(
                client,
                dev,
                "/seq/dev/main/echo/execute",
                {"message": f"t{i}", "threadId": thread_id, "metadata": {"kind": "thread"}},
            )
            assert response.status_code == 200, response.text
            made.add(
                response.json()["executionId"],
                trigger="execute",
                org="dev",
                project="main",
                flow="echo",
                version=1,
                status="completed",
                thread=thread_id,
                kind="thread",
            )
        # Every queued job has ended before the lists are read.
        for _ in range(600):
            listed = await client.get("/runs", params={"status": "queued,running"}, headers=_headers(dev))
            if not listed.json()["runs"]:
                break
            await asyncio.sleep(0.1)
    return made, thread_id


def _start(stack: ExitStack, store: str, tmp: Any) -> tuple[ServerProcess, str | None]:
    url = None
    args: tuple[str, ...] = ()
    if store == "postgres":
        url = stack.enter_context(fresh_postgres_database())
        args = ("--database-url", url)
    server = ServerProcess(free_port(), tmp, _server_env(), args)
    server.start(timeout=120)  # on a busy machine, a PostgreSQL server's start alone took 30 s
    stack.callback(server.stop)
    return server, url


def _key(server: ServerProcess, url: str | None, *args: str) -> str:
    extra = ("--database-url", url) if url else ()
    return server.cli("keys", "create", *args, *extra).strip()


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp(f"runs-{request.param}")
    with ExitStack() as stack:
        server, url = _start(stack, request.param, tmp)
        dev = _key(server, url, "--org", "dev")  # the server's dev key is a dev/main key
        server.put_flow(dev, "dev", "side", ECHO)
        side = _key(server, url, "--org", "dev", "--project", "side")
        reader = _key(server, url, "--org", "dev", "--scope", "read")
        acme = _key(server, url, "--org", "acme")
        server.put_flow(acme, "acme", "main", ECHO)
        started = time.monotonic()
        made, thread_id = asyncio.run(_populate(server, dev, side, acme))
        print(f"\n[{request.param}] made {len(made.runs):,} runs in {time.monotonic() - started:.0f} s")
        yield World(server, dev, side, reader, acme, made, thread_id)
    if os.environ.get("NOUKAI_KEEP_TEST_DATA") is None:
        shutil.rmtree(tmp, ignore_errors=True)


def _get(world: World, params: Any = None, key: str | None = None) -> httpx.Response:
    return httpx.get(
        f"{world.server.api_url}/runs", params=params, headers=_headers(key or world.dev), timeout=30
    )


def _all(
    world: World, params: dict[str, Any], key: str | None = None, limit: int = 200
) -> list[dict[str, Any]]:
    """Every page of a list, checking each page's size and that the pages join up newest first."""
    runs: list[dict[str, Any]] = []
    cursor = None
    while True:
        response = _get(world, {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}, key)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["runs"]) <= limit
        runs += page["runs"]
        cursor = page["nextCursor"]
        if cursor is None:
            break
        assert len(page["runs"]) == limit
    order = [(datetime.fromisoformat(r["createdAt"]), r["executionId"]) for r in runs]
    assert order == sorted(order, reverse=True)
    assert len({r["executionId"] for r in runs}) == len(runs)
    return runs


def _ids(runs: list[dict[str, Any]]) -> set[str]:
    return {run["executionId"] for run in runs}


def _made_in(world: World, org: str = "dev", **wanted: Any) -> set[str]:
    return world.made.ids(org=org, **wanted)


def test_the_org_list_has_every_run_newest_first_in_pages(world: World) -> None:
    runs = _all(world, {}, limit=137)
    # Reruns made by other tests may come first; everything this module made is there.
    assert _made_in(world) <= _ids(runs)
    assert len(_made_in(world)) > 1800
    assert all(run["org"] == "dev" and run["result"] is None for run in runs)


def test_a_page_is_the_default_fifty_with_a_cursor(world: World) -> None:
    page = _get(world).json()
    assert len(page["runs"]) == 50 and page["nextCursor"]
    second = _get(world, {"cursor": page["nextCursor"]}).json()
    assert not _ids(page["runs"]) & _ids(second["runs"])


@pytest.mark.parametrize(
    ("params", "wanted"),
    [
        ({"project": "side"}, {"project": "side"}),
        ({"flow": "echo"}, {"flow": "echo"}),
        ({"project": "main", "flow": "echo"}, {"project": "main", "flow": "echo"}),
        ({"flow": "echo", "version": "1"}, {"flow": "echo", "version": 1}),
        (
            {"flow": "echo", "version": "0", "project": "main"},
            {"flow": "echo", "version": 0, "project": "main"},
        ),
        ({"status": "failed"}, {"status": "failed"}),
        ({"status": "waiting, failed"}, {"status": lambda s: s in ("waiting", "failed")}),
        ({"trigger": "step"}, {"trigger": "step"}),
        ({"trigger": "execute", "flow": "three-steps"}, {"trigger": "execute", "flow": "three-steps"}),
        ({"session": "session-a"}, {"session": "session-a"}),
        ({"metadata": "batch:1"}, {"batch": "1"}),
        ({"metadata": ["batch:1", "team:red"]}, {"batch": "1", "team": "red"}),
        ({"metadata": "batch:2", "status": "failed"}, {"batch": "2", "status": "failed"}),
        ({"metadata": "kind:step", "trigger": "step"}, {"kind": "step"}),
        ({"metadata": "batch:9"}, {"batch": "9"}),
        ({"metadata": "kind:thread"}, {"kind": "thread"}),
        ({"flow": "no-such-flow"}, {"flow": "no-such-flow"}),
        ({"project": "no-such-project"}, {"project": "no-such-project"}),
    ],
)
def test_each_filter_lists_exactly_its_runs(
    world: World, params: dict[str, Any], wanted: dict[str, Any]
) -> None:
    runs = _all(world, params)
    reruns = {run["executionId"] for run in runs if run["rerunOf"]}
    assert _ids(runs) - reruns == _made_in(world, **wanted)


def test_the_thread_filter(world: World) -> None:
    runs = _all(world, {"thread": world.thread_id})
    assert _ids(runs) == _made_in(world, thread=world.thread_id)
    assert len(runs) == 3 and {run["threadId"] for run in runs} == {world.thread_id}


def test_since_is_inclusive_and_until_exclusive(world: World) -> None:
    everything = _all(world, {"flow": "three-steps"})
    middle = everything[len(everything) // 2]
    since = _all(world, {"flow": "three-steps", "since": middle["createdAt"]})
    until = _all(world, {"flow": "three-steps", "until": middle["createdAt"]})
    assert middle["executionId"] in _ids(since) and middle["executionId"] not in _ids(until)
    assert _ids(since) | _ids(until) == _ids(everything) and not _ids(since) & _ids(until)
    assert all(r["createdAt"] >= middle["createdAt"] for r in since)


def test_listed_runs_carry_their_names_labels_and_times(world: World) -> None:
    failed = _get(world, {"flow": "broken", "limit": 1}).json()["runs"][0]
    assert (failed["org"], failed["project"], failed["flow"]) == ("dev", "main", "broken")
    assert failed["status"] == "failed" and failed["error"]["code"]
    assert set(failed["metadata"]) == {"batch"}
    assert failed["durationMs"] is not None and failed["durationMs"] >= 0
    assert failed["attempt"] == 1 and failed["triggerType"] == "job"
    waiting = _get(world, {"trigger": "step", "limit": 1}).json()["runs"][0]
    assert waiting["status"] == "waiting" and waiting["durationMs"] is None
    assert waiting["metadata"] == {"kind": "step"}


# -- tenants -------------------------------------------------------------------------------------


def test_another_org_sees_only_its_own_runs(world: World) -> None:
    runs = _all(world, {}, key=world.acme)
    assert _ids(runs) - {r["executionId"] for r in runs if r["rerunOf"]} == _made_in(world, org="acme")
    assert _ids(_all(world, {"metadata": "batch:1"}, key=world.acme)) >= _made_in(world, org="acme")
    assert not _ids(_all(world, {"metadata": "batch:1"}, key=world.acme)) & _made_in(world)


def test_naming_another_org_is_forbidden(world: World) -> None:
    assert_error(_get(world, {"org": "dev"}, key=world.acme), 403, "FORBIDDEN")
    assert_error(_get(world, {"org": "acme"}), 403, "FORBIDDEN")


def test_a_project_key_sees_only_its_project(world: World) -> None:
    runs = _all(world, {}, key=world.side)
    assert _ids(runs) == _made_in(world, project="side")
    assert _ids(_all(world, {"flow": "echo"}, key=world.side)) == _made_in(world, project="side")
    assert_error(_get(world, {"project": "main"}, key=world.side), 403, "FORBIDDEN")


def test_a_read_key_lists_but_cannot_rerun(world: World) -> None:
    assert _get(world, {"limit": 1}, key=world.reader).status_code == 200
    run_id = next(iter(_made_in(world, flow="echo", project="main")))
    response = httpx.post(
        f"{world.server.api_url}/runs/{run_id}/rerun", json={}, headers=_headers(world.reader)
    )
    assert_error(response, 403, "FORBIDDEN")


# -- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"version": "-1"}, "version"),
        ({"version": "v1"}, "version"),
        ({"status": "finished"}, "status"),
        ({"status": ","}, "status"),
        ({"trigger": "cron"}, "trigger"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-12-01T00:00:00"}, "until"),
        ({"metadata": "no-colon"}, "metadata"),
        ({"metadata": "bad key:x"}, "metadata"),
        ({"metadata": ["a:1", "a:2"]}, "metadata"),
        ({"cursor": "garbage!"}, "cursor"),
        ({"cursor": "bm90fGF1dWlk"}, "cursor"),
        ({"session": "x" * 256}, "session"),
        ({"flow": "f" * 65}, "flow"),
    ],
)
def test_invalid_parameters_are_422_naming_the_parameter(
    world: World, params: dict[str, Any], param: str
) -> None:
    detail = assert_error(_get(world, params), 422, "VALIDATION_ERROR")
    assert detail["message"].startswith(f"invalid request: {param}:")
    assert detail["errors"][0]["loc"] == ["query", param]


@pytest.mark.parametrize(
    ("metadata", "where"),
    [
        ({"a b": "x"}, "metadata"),
        ({"n": 1}, "metadata"),
        ({"n": True}, "metadata"),
        ({"n": "x" * 257}, "metadata"),
        ({f"k{i}": "v" for i in range(17)}, "metadata"),
        (["a"], "metadata"),
    ],
)
@pytest.mark.parametrize("route", ["echo/execute", "echo/jobs", "echo/step"])
def test_invalid_metadata_is_refused_at_every_start(
    world: World, route: str, metadata: Any, where: str
) -> None:
    body = {"message": "x", "stepIndex": 0, "metadata": metadata}
    response = httpx.post(
        f"{world.server.api_url}/seq/dev/main/{route}", json=body, headers=_headers(world.dev)
    )
    detail = assert_error(response, 422, "VALIDATION_ERROR")
    assert detail["errors"][0]["loc"][0] == where


def test_the_largest_metadata_is_accepted_and_kept(world: World) -> None:
    labels = {f"k.{i}_-{'x' * 58}": "v" * 256 for i in range(16)}
    response = httpx.post(
        f"{world.server.api_url}/seq/dev/main/echo/execute",
        json={"message": "big", "metadata": labels},
        headers=_headers(world.dev),
    )
    assert response.status_code == 200, response.text
    info = _run(world, response.json()["executionId"])
    assert info["metadata"] == labels
    key, value = next(iter(labels.items()))
    assert response.json()["executionId"] in _ids(_all(world, {"metadata": f"{key}:{value}"}))


def test_a_later_step_call_keeps_the_runs_metadata(world: World) -> None:
    url = f"{world.server.api_url}/seq/dev/main/three-steps/step"
    first = httpx.post(
        url, json={"message": "m", "stepIndex": 0, "metadata": {"a": "1"}}, headers=_headers(world.dev)
    )
    run_id = _sse_events(first.text)[0]["executionId"]
    changed = httpx.post(
        url, json={"executionId": run_id, "stepIndex": 1, "metadata": {"a": "2"}}, headers=_headers(world.dev)
    )
    assert "metadata" in assert_error(changed, 422, "VALIDATION_ERROR")["message"]
    same = httpx.post(
        url, json={"executionId": run_id, "stepIndex": 1, "metadata": {"a": "1"}}, headers=_headers(world.dev)
    )
    assert same.status_code == 200, same.text
    none = httpx.post(url, json={"executionId": run_id, "stepIndex": 2}, headers=_headers(world.dev))
    assert none.status_code == 200, none.text
    assert _run(world, run_id)["metadata"] == {"a": "1"}


# -- run info and trace ids ----------------------------------------------------------------------


def _run(world: World, run_id: str, key: str | None = None) -> dict[str, Any]:
    response = httpx.get(f"{world.server.api_url}/runs/{run_id}", headers=_headers(key or world.dev))
    assert response.status_code == 200, response.text
    value: dict[str, Any] = response.json()
    return value


def test_a_callers_traceparent_gives_the_run_its_trace_id(world: World) -> None:
    response = httpx.post(
        f"{world.server.api_url}/seq/dev/main/echo/execute",
        json={"message": "traced"},
        headers=_headers(world.dev, traceparent=TRACEPARENT),
    )
    info = _run(world, response.json()["executionId"])
    assert info["traceId"] == TRACEPARENT.split("-")[1]
    untraced = httpx.post(
        f"{world.server.api_url}/seq/dev/main/echo/execute",
        json={"message": "x"},
        headers=_headers(world.dev),
    )
    # This server exports no traces (no OTEL_* variables): a run without a caller's trace has none.
    assert _run(world, untraced.json()["executionId"])["traceId"] is None


# -- reruns --------------------------------------------------------------------------------------


def _execute(world: World, slug: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(
        f"{world.server.api_url}/seq/dev/main/{slug}/execute", json=body, headers=_headers(world.dev)
    )
    assert response.status_code == 200, response.text
    value: dict[str, Any] = response.json()
    return value


def _rerun(
    world: World, run_id: str, body: Any = None, key: str | None = None, **headers: str
) -> httpx.Response:
    url = f"{world.server.api_url}/runs/{run_id}/rerun"
    return httpx.post(url, json=body, headers=_headers(key or world.dev, **headers))


def _settled(world: World, run_id: str) -> dict[str, Any]:
    for _ in range(300):
        info = _run(world, run_id)
        if info["status"] in ("completed", "failed", "cancelled"):
            return info
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not end")


def _events(world: World, run_id: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{world.server.api_url}/runs/{run_id}/events", headers=_headers(world.dev), timeout=30
    )
    return _sse_events(response.text)


def test_a_rerun_from_the_start_runs_every_step_again_with_the_same_inputs(world: World) -> None:
    original = _execute(world, "three-steps", {"message": "again", "metadata": {"origin": "test"}})
    response = _rerun(world, original["executionId"], traceparent=TRACEPARENT)
    assert response.status_code == 202, response.text
    queued = response.json()
    assert queued["rerunOf"] == original["executionId"] and queued["rerunFromStep"] is None
    assert queued["triggerType"] == "job" and queued["metadata"] == {"origin": "test"}
    assert queued["traceId"] == TRACEPARENT.split("-")[1]
    done = _settled(world, queued["executionId"])
    assert done["result"] == original["result"] == "three: two: one: again"
    started = [e["stepId"] for e in _events(world, queued["executionId"]) if e["eventType"] == "step_started"]
    assert started == ["one", "two", "three"]
    linked = _all(world, {"metadata": "origin:test"})
    assert {r["executionId"]: r["rerunOf"] for r in linked} == {
        original["executionId"]: None,
        queued["executionId"]: original["executionId"],
    }


@pytest.mark.parametrize("from_step", ["three", 2])
def test_a_rerun_from_a_step_reuses_the_earlier_outputs(world: World, from_step: str | int) -> None:
    original = _execute(world, "three-steps", {"message": "reuse"})
    response = _rerun(world, original["executionId"], {"fromStep": from_step, "metadata": {"re": "run"}})
    assert response.status_code == 202, response.text
    queued = response.json()
    assert queued["rerunOf"] == original["executionId"] and queued["rerunFromStep"] == "three"
    assert queued["metadata"] == {"re": "run"} and queued["traceId"] is None
    done = _settled(world, queued["executionId"])
    # Step three rendered `steps.two.output` from the original's recorded output.
    assert done["status"] == "completed" and done["result"] == "three: two: one: reuse"
    events = _events(world, queued["executionId"])
    assert events[0]["eventType"] == "run_started"
    started = [(e["stepId"], e["stepIndex"]) for e in events if e["eventType"] == "step_started"]
    assert started == [("three", 2)]
    assert {e.get("stepId") for e in events if "stepId" in e} == {"three"}


def test_a_rerun_from_a_step_after_a_skipped_one_keeps_the_skip(world: World) -> None:
    original = _execute(world, "maybe", {"message": "hello", "parameters": {"polish": False}})
    assert original["result"] == "hello"
    queued = _rerun(world, original["executionId"], {"fromStep": "polish"}).json()
    assert _settled(world, queued["executionId"])["result"] == "hello"


def test_rerun_refusals(world: World) -> None:
    original = _execute(world, "three-steps", {"message": "r"})
    run_id = original["executionId"]
    assert_error(_rerun(world, run_id, {"fromStep": "nope"}), 404, "STEP_NOT_FOUND")
    assert_error(_rerun(world, run_id, {"fromStep": 3}), 404, "STEP_NOT_FOUND")
    assert_error(_rerun(world, run_id, {"fromStep": -1}), 404, "STEP_NOT_FOUND")
    assert_error(_rerun(world, run_id, {"fromStep": True}), 422, "VALIDATION_ERROR")
    assert_error(_rerun(world, run_id, {"fromStep": 1.5}), 422, "VALIDATION_ERROR")
    assert_error(_rerun(world, run_id, {"from": 1}), 422, "VALIDATION_ERROR")
    assert_error(_rerun(world, run_id, {"metadata": {"n": 1}}), 422, "VALIDATION_ERROR")
    assert_error(_rerun(world, str(uuid.uuid4())), 404, "RUN_NOT_FOUND")
    assert_error(_rerun(world, "not-a-run-id"), 404, "RUN_NOT_FOUND")
    assert_error(_rerun(world, run_id, key=world.acme), 404, "RUN_NOT_FOUND")
    assert_error(_rerun(world, run_id, key=world.side), 404, "RUN_NOT_FOUND")


def test_a_rerun_needs_every_earlier_step_done(world: World) -> None:
    url = f"{world.server.api_url}/seq/dev/main/three-steps/step"
    first = httpx.post(url, json={"message": "half", "stepIndex": 0}, headers=_headers(world.dev))
    paused = _sse_events(first.text)[0]["executionId"]  # waiting after step one
    detail = assert_error(_rerun(world, paused, {"fromStep": "three"}), 409, "RERUN_NOT_POSSIBLE")
    assert detail["stepId"] == "two"
    assert _rerun(world, paused, {"fromStep": "two"}).status_code == 202
    failed = next(iter(_made_in(world, flow="broken")))
    assert_error(_rerun(world, failed, {"fromStep": 2}), 404, "STEP_NOT_FOUND")
    again = _rerun(world, failed, {"fromStep": "boom"})  # step `ok` completed in the original
    assert again.status_code == 202
    assert _settled(world, again.json()["executionId"])["status"] == "failed"


def test_a_rerun_of_a_run_with_client_tools_is_refused(world: World) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    started = httpx.post(
        f"{world.server.api_url}/seq/dev/main/assistant/execute",
        json={"message": "hi", "tools": tools},
        headers=_headers(world.dev),
    )
    assert started.status_code == 200, started.text
    assert_error(_rerun(world, started.json()["executionId"]), 409, "RERUN_NOT_POSSIBLE")
