"""`client.runs.list()` / `iter()` / `rerun()` and `metadata=` on the calls that start runs, against
fake servers (the same calls against a real server are in tests/server/test_cli_runs.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx2
import pytest

import noukai
from tests.sdk.conftest import fake_async_client, fake_client, json_response
from tests.sdk.fakes import FakeStepServer


def run_info(execution_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "executionId": execution_id,
        "flowId": "flow-uuid",
        "flowVersion": 1,
        "status": "completed",
        "triggerType": "job",
        "cursor": 2,
        "result": None,
        "error": None,
        "lastSeq": 9,
        "createdAt": "2026-12-01T10:00:00Z",
        "completedAt": "2026-12-01T10:00:01Z",
        **extra,
    }


class Pages:
    """`GET /runs` over `total` runs, `limit` per page, cursors that name the next index."""

    def __init__(self, total: int) -> None:
        self.ids = [f"run-{n}" for n in range(total)]
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        assert request.method == "GET" and request.url.path == "/api/v1/runs"
        start = int(request.url.params.get("cursor", "0"))
        limit = int(request.url.params.get("limit", "50"))
        chunk = self.ids[start : start + limit]
        more = start + limit < len(self.ids)
        return json_response(
            200,
            {"runs": [run_info(one) for one in chunk], "nextCursor": str(start + limit) if more else None},
        )


def pairs(request: httpx2.Request) -> list[tuple[str, str]]:
    return list(request.url.params.multi_items())


# -- list ------------------------------------------------------------------------------------------


def test_list_sends_every_filter_and_reads_the_page() -> None:
    seen: list[httpx2.Request] = []
    full = run_info(
        "run-1",
        org="acme",
        project="spell",
        flow="grade",
        sessionId="s-1",
        threadId="t-1",
        metadata={"customer": "c42"},
        startedAt="2026-12-01T10:00:00.250Z",
        durationMs=750,
        attempt=2,
        cancelRequested=False,
        traceId="0af7651916cd43dd8448eb211c80319c",
        rerunOf="run-0",
        rerunFromStep="b",
    )

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return json_response(200, {"runs": [full], "nextCursor": "c-2"})

    with fake_client(handler) as client:
        page = client.runs.list(
            org="acme",
            project="spell",
            flow="grade",
            version=0,
            status=["failed", "cancelled"],
            trigger="job",
            since=datetime(2026, 12, 1, 9, 0),  # naive: UTC
            until=datetime(2026, 12, 1, 12, 0, tzinfo=timezone(timedelta(hours=2))),
            session="s-1",
            thread="t-1",
            metadata={"customer": "c42", "tier": "gold"},
            limit=10,
            cursor="c-1",
        )
    assert isinstance(page, noukai.RunPage) and page.next_cursor == "c-2"
    run = page.runs[0]
    assert isinstance(run, noukai.RunInfo)
    assert (run.org, run.project, run.flow, run.session_id, run.thread_id) == (
        "acme",
        "spell",
        "grade",
        "s-1",
        "t-1",
    )
    assert run.metadata == {"customer": "c42"} and run.duration_ms == 750 and run.attempt == 2
    assert run.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert (run.rerun_of, run.rerun_from_step) == ("run-0", "b")
    assert run.started_at == datetime(2026, 12, 1, 10, 0, 0, 250000, tzinfo=UTC)
    assert pairs(seen[0]) == [
        ("org", "acme"),
        ("project", "spell"),
        ("flow", "grade"),
        ("trigger", "job"),
        ("session", "s-1"),
        ("thread", "t-1"),
        ("version", "0"),
        ("status", "failed,cancelled"),
        ("since", "2026-12-01T09:00:00+00:00"),
        ("until", "2026-12-01T12:00:00+02:00"),
        ("metadata", "customer:c42"),
        ("metadata", "tier:gold"),
        ("limit", "10"),
        ("cursor", "c-1"),
    ]


def test_list_without_filters_sends_none_and_reads_an_older_servers_runs() -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return json_response(200, {"runs": [run_info("old")], "nextCursor": None})

    with fake_client(handler) as client:
        page = client.runs.list(status="running")
    run = page.runs[0]
    assert page.next_cursor is None
    assert (run.org, run.flow, run.metadata, run.trace_id, run.rerun_of, run.cancel_requested) == (
        None,
        None,
        {},
        None,
        None,
        False,
    )
    assert pairs(seen[0]) == [("status", "running")]


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"version": -1}, ValueError, "version"),
        ({"version": True}, ValueError, "version"),
        ({"status": []}, ValueError, "status"),
        ({"status": ["ok", ""]}, ValueError, "status"),
        ({"limit": 0}, ValueError, "limit"),
        ({"since": "2026-01-01"}, TypeError, "since"),
        ({"metadata": {"n": 1}}, TypeError, "metadata"),
    ],
)
def test_list_refuses_bad_filters_before_sending(
    kwargs: dict[str, Any], error: type[Exception], words: str
) -> None:
    server = Pages(1)
    with fake_client(server) as client, pytest.raises(error, match=words):
        client.runs.list(**kwargs)
    assert server.requests == []


def test_the_servers_refusal_is_raised_with_its_code() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        body = {"detail": {"code": "VALIDATION_ERROR", "message": "since: not an ISO-8601 instant"}}
        return json_response(422, body)

    with fake_client(handler) as client, pytest.raises(noukai.FlowExecutionError) as caught:
        client.runs.list(flow="x")
    assert caught.value.code == "VALIDATION_ERROR" and caught.value.status_code == 422
    assert "since" in caught.value.message


def test_a_key_without_read_scope_gets_permission_denied() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return json_response(403, {"detail": {"code": "FORBIDDEN", "message": "another org"}})

    with fake_client(handler) as client, pytest.raises(noukai.PermissionDeniedError):
        client.runs.list(org="other")


# -- iter ------------------------------------------------------------------------------------------


def test_iter_follows_the_cursors_to_the_last_page() -> None:
    server = Pages(7)
    with fake_client(server) as client:
        ids = [run.execution_id for run in client.runs.iter(flow="grade", page_size=3)]
    assert ids == server.ids
    assert [r.url.params.get("cursor") for r in server.requests] == [None, "3", "6"]
    assert all(r.url.params["flow"] == "grade" and r.url.params["limit"] == "3" for r in server.requests)


def test_iter_is_lazy_and_checks_its_arguments_at_the_call() -> None:
    server = Pages(5)
    with fake_client(server) as client:
        with pytest.raises(ValueError, match="limit"):
            client.runs.iter(page_size=0)
        runs = client.runs.iter(page_size=2, cursor="2")
        assert server.requests == []  # nothing asked before the iteration starts
        assert next(runs).execution_id == "run-2"
        assert len(server.requests) == 1
        assert [run.execution_id for run in runs] == ["run-3", "run-4"]


@pytest.mark.anyio
async def test_async_list_and_iter() -> None:
    server = Pages(5)
    async with fake_async_client(server) as client:
        page = await client.runs.list(limit=2, metadata={"k": "v"})
        assert [run.execution_id for run in page.runs] == ["run-0", "run-1"] and page.next_cursor == "2"
        assert ("metadata", "k:v") in pairs(server.requests[0])
        ids = [run.execution_id async for run in client.runs.iter(page_size=2)]
    assert ids == server.ids
    assert [r.url.params.get("cursor") for r in server.requests[1:]] == [None, "2", "4"]


# -- rerun -----------------------------------------------------------------------------------------


class Reruns:
    def __init__(self) -> None:
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        assert request.method == "POST"
        original = request.url.path.split("/")[4]
        if original == "gone":
            return json_response(404, {"detail": {"code": "RUN_NOT_FOUND", "message": "no run gone"}})
        body = json.loads(request.content)
        if body.get("fromStep") == "c":
            detail = {"code": "RERUN_NOT_POSSIBLE", "message": "step b did not complete"}
            return json_response(409, {"detail": detail})
        return json_response(
            202,
            run_info(
                "run-new",
                status="queued",
                completedAt=None,
                rerunOf=original,
                rerunFromStep=body.get("fromStep") if isinstance(body.get("fromStep"), str) else None,
                metadata=body.get("metadata", {}),
            ),
        )


def test_rerun_sends_only_what_is_given() -> None:
    server = Reruns()
    with fake_client(server) as client:
        plain = client.runs.rerun("run-1")
        from_id = client.runs.rerun("run-1", from_step="b", metadata={"why": "retry"})
        from_index = client.runs.rerun("run-1", from_step=1)
    assert [r.url.path for r in server.requests] == ["/api/v1/runs/run-1/rerun"] * 3
    assert [json.loads(r.content) for r in server.requests] == [
        {},
        {"fromStep": "b", "metadata": {"why": "retry"}},
        {"fromStep": 1},
    ]
    assert plain.rerun_of == "run-1" and plain.status == "queued" and not plain.terminal
    assert from_id.rerun_from_step == "b" and from_id.metadata == {"why": "retry"}
    assert from_index.execution_id == "run-new"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"from_step": -1}, ValueError),
        ({"from_step": True}, TypeError),
        ({"from_step": 1.5}, TypeError),
        ({"metadata": {"k": 2}}, TypeError),
    ],
)
def test_rerun_refuses_bad_arguments_before_sending(kwargs: dict[str, Any], error: type[Exception]) -> None:
    server = Reruns()
    with fake_client(server) as client, pytest.raises(error):
        client.runs.rerun("run-1", **kwargs)
    with fake_client(server) as client, pytest.raises(ValueError, match="execution_id"):
        client.runs.rerun("")
    assert server.requests == []


def test_rerun_refusals_keep_their_codes() -> None:
    server = Reruns()
    with fake_client(server) as client:
        with pytest.raises(noukai.FlowNotFoundError) as missing:
            client.runs.rerun("gone")
        with pytest.raises(noukai.FlowExecutionError) as impossible:
            client.runs.rerun("run-1", from_step="c")
    assert missing.value.code == "RUN_NOT_FOUND" and missing.value.status_code == 404
    assert impossible.value.code == "RERUN_NOT_POSSIBLE" and impossible.value.status_code == 409


def test_a_rerun_whose_answer_was_lost_is_not_sent_twice() -> None:
    """A second POST would start a second run: the connection error is raised instead."""
    calls: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        calls.append(request)
        raise httpx2.ReadError("connection reset", request=request)

    with fake_client(handler, max_retries=3) as client, pytest.raises(noukai.APIConnectionError):
        client.runs.rerun("run-1")
    assert len(calls) == 1


@pytest.mark.anyio
async def test_async_rerun() -> None:
    server = Reruns()
    async with fake_async_client(server) as client:
        info = await client.runs.rerun("run-9", from_step="a")
        with pytest.raises(noukai.FlowNotFoundError):
            await client.runs.rerun("gone")
    assert info.rerun_of == "run-9" and info.rerun_from_step == "a"
    assert json.loads(server.requests[0].content) == {"fromStep": "a"}


# -- metadata on the calls that start runs ---------------------------------------------------------


class Starts:
    """Answers `/execute` and `/jobs`, keeping their bodies."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        action = request.url.path.rsplit("/", 1)[-1]
        self.bodies.append((action, json.loads(request.content)))
        if action == "jobs":
            return json_response(
                202, {"executionId": "job-1", "status": "pending", "flowId": "f", "blockCount": 1}
            )
        return json_response(
            200,
            {"status": "completed", "result": "ok", "executionId": "run-1", "flowId": "f", "blockCount": 1},
        )


def test_metadata_is_sent_on_execute_and_jobs_only_when_given() -> None:
    server = Starts()
    with fake_client(server) as client:
        flow = client.flow("grade")
        flow.execute(message="hi", metadata={"customer": "c42"})
        flow.execute(message="hi")
        flow.execute_async(message="hi", metadata={"batch": "7"})
        flow.execute_async(message="hi")
        with pytest.raises(TypeError, match="metadata"):
            flow.execute(message="hi", metadata={"n": 1})  # type: ignore[dict-item]
        with pytest.raises(TypeError, match="metadata"):
            flow.execute_async(metadata={1: "x"})  # type: ignore[dict-item]
    assert [(action, body.get("metadata")) for action, body in server.bodies] == [
        ("execute", {"customer": "c42"}),
        ("execute", None),
        ("jobs", {"batch": "7"}),
        ("jobs", None),
    ]


@pytest.mark.anyio
async def test_async_metadata_on_execute_and_jobs() -> None:
    server = Starts()
    async with fake_async_client(server) as client:
        flow = client.flow("grade")
        await flow.execute(message="hi", metadata={"a": "1"})
        await flow.execute_async(message="hi", metadata={"b": "2"})
    assert [body["metadata"] for _, body in server.bodies] == [{"a": "1"}, {"b": "2"}]


def test_metadata_goes_with_the_first_step_call_only() -> None:
    server = FakeStepServer(steps=["a", "b"])
    with fake_client(server) as client:
        flow = client.flow("grade")
        done = list(flow.steps(message="hi", metadata={"customer": "c42"}))
        with pytest.raises(TypeError, match="metadata"):
            flow.events(metadata={"n": None})  # type: ignore[dict-item]
    assert [event.step_id for event in done] == ["a", "b"]
    assert [body.get("metadata") for body in server.bodies] == [{"customer": "c42"}, None]


@pytest.mark.anyio
async def test_async_metadata_on_steps() -> None:
    server = FakeStepServer(steps=["a", "b"])
    async with fake_async_client(server) as client:
        events = [event async for event in client.flow("grade").events(message="hi", metadata={"k": "v"})]
    assert events and [body.get("metadata") for body in server.bodies] == [{"k": "v"}, None]
