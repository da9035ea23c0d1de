"""ThreadService over a real SQLite store: tenancy, expiry, paging, forks, erasure, and the turn a
run takes, each refusal with its wire code. The HTTP routes over it are tested with a live server
in tests/server/test_threads_api.py."""

from __future__ import annotations

import pytest

from noukai.types.errors import ErrorCode
from noukai_server.engine import RunInputs
from noukai_server.runtime.errors import RequestRejected
from noukai_server.runtime.threads import (
    Tenant,
    ThreadService,
    message_info,
    thread_errors,
    thread_info,
    thread_turn,
    tool_turns,
)
from noukai_server.store import (
    EventRow,
    HistoryWindow,
    RunUpdate,
    Store,
    ThreadBusy,
    ThreadExpired,
    ThreadNotFound,
    ThreadTurn,
)
from tests.store.conftest import FakeClock, make_flow, new_run

pytestmark = pytest.mark.anyio
ACME = Tenant("acme", None)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def store(sqlite_store: Store) -> Store:
    return sqlite_store


async def _thread_with(store: Store, turns: int) -> str:
    """A thread of `turns` completed turns: user `q{i}` then assistant `a{i}` each, appended by the
    store as a run ends (the only way the API appends)."""
    flow = await make_flow(store)
    thread = await store.create_thread("acme", "web", ttl_seconds=600)
    for i in range(turns):
        turn = ThreadTurn(thread.id, ({"role": "user", "content": f"q{i}"},), HistoryWindow(), "reject")
        run = await store.create_run(new_run(flow, input={"message": f"q{i}"}, thread=turn))
        claimed = await store.claim_next_run("w1", 30)
        assert claimed is not None and claimed.id == run.id
        done = EventRow(seq=claimed.last_seq + 1, type="flow_completed", data="{}")
        await store.record(run.id, claimed.attempt, [done], RunUpdate(status="completed", result=f"a{i}"))
    return thread.id


def _code(exc: pytest.ExceptionInfo[RequestRejected]) -> ErrorCode:
    return exc.value.code


async def test_create_get_and_the_info_bodies(store: Store) -> None:
    service = ThreadService(store, default_ttl_seconds=90.5)
    thread = await service.create(ACME, "web", metadata={"user": "u1"}, ttl_seconds=None)
    assert thread.ttl_seconds == 90  # the default, in whole seconds
    info = thread_info(await service.get(ACME, thread.id))
    assert info["threadId"] == thread.id and info["metadata"] == {"user": "u1"}
    assert (info["runCount"], info["messageCount"], info["activeRunId"]) == (0, 0, None)
    assert info["expiresAt"] > info["createdAt"]


async def test_other_tenants_and_bad_ids_are_not_found(store: Store) -> None:
    service = ThreadService(store, default_ttl_seconds=600)
    thread = await service.create(ACME, "web", metadata={}, ttl_seconds=None)
    web = await store.get_project("acme", "web")
    assert web is not None
    assert (await service.get(Tenant("acme", web.id), thread.id)).id == thread.id
    for tenant, thread_id in [
        (Tenant("globex", None), thread.id),  # another org
        (Tenant("acme", "some-other-project-id"), thread.id),  # another project of the org
        (ACME, "not-a-uuid"),
        (ACME, "00000000-0000-4000-8000-000000000000"),
    ]:
        with pytest.raises(RequestRejected) as refused:
            await service.get(tenant, thread_id)
        assert _code(refused) == ErrorCode.THREAD_NOT_FOUND


async def test_an_expired_thread_is_gone_but_can_still_be_deleted(store: Store, clock: FakeClock) -> None:
    service = ThreadService(store, default_ttl_seconds=600)
    thread = await service.create(ACME, "web", metadata={}, ttl_seconds=5)
    clock.advance(6)
    with pytest.raises(RequestRejected) as refused:
        await service.get(ACME, thread.id)
    assert _code(refused) == ErrorCode.THREAD_EXPIRED
    assert refused.value.details == {"threadId": thread.id}
    await service.delete(ACME, thread.id)
    with pytest.raises(RequestRejected) as gone:
        await service.get(ACME, thread.id, expired_ok=True)
    assert _code(gone) == ErrorCode.THREAD_NOT_FOUND


async def test_messages_are_paged_by_position(store: Store) -> None:
    service = ThreadService(store, default_ttl_seconds=600)
    thread_id = await _thread_with(store, 3)
    first, cursor = await service.messages(ACME, thread_id, cursor=None, limit=2)
    assert [m.content["content"] for m in first] == ["q0", "a0"] and cursor == "2"
    second, cursor = await service.messages(ACME, thread_id, cursor=cursor, limit=3)
    assert [m.position for m in second] == [3, 4, 5] and cursor == "5"
    last, cursor = await service.messages(ACME, thread_id, cursor=cursor, limit=None)
    assert [message_info(m)["message"]["content"] for m in last] == ["a2"] and cursor is None
    assert message_info(last[0])["role"] == "assistant" and message_info(last[0])["runId"] is not None


@pytest.mark.parametrize(
    ("cursor", "limit", "where"),
    [
        ("abc", None, "cursor"),
        ("-1", None, "cursor"),
        ("1" * 13, None, "cursor"),
        (None, 0, "limit"),
        (None, 501, "limit"),
    ],
)
async def test_bad_paging_is_a_validation_error(
    store: Store, cursor: str | None, limit: int | None, where: str
) -> None:
    service = ThreadService(store, default_ttl_seconds=600)
    thread = await service.create(ACME, "web", metadata={}, ttl_seconds=None)
    with pytest.raises(RequestRejected) as refused:
        await service.messages(ACME, thread.id, cursor=cursor, limit=limit)
    assert _code(refused) == ErrorCode.VALIDATION_ERROR
    assert refused.value.details["errors"][0]["loc"] == ["query", where]


async def test_fork_keeps_the_history_up_to_a_position(store: Store) -> None:
    service = ThreadService(store, default_ttl_seconds=600)
    thread_id = await _thread_with(store, 2)
    fork = await service.fork(ACME, thread_id, position=2, metadata={"from": thread_id}, ttl_seconds=30)
    assert (fork.message_count, fork.metadata, fork.ttl_seconds) == (2, {"from": thread_id}, 30)
    page, _ = await service.messages(ACME, fork.id, cursor=None, limit=None)
    assert [m.content["content"] for m in page] == ["q0", "a0"]
    whole = await service.fork(ACME, thread_id, position=None, metadata=None, ttl_seconds=None)
    assert whole.message_count == 4
    with pytest.raises(RequestRejected) as refused:
        await service.fork(ACME, thread_id, position=5, metadata=None, ttl_seconds=None)
    assert _code(refused) == ErrorCode.THREAD_POSITION_INVALID


def test_store_errors_become_wire_errors() -> None:
    cases: list[tuple[Exception, ErrorCode]] = [
        (ThreadNotFound("no thread t"), ErrorCode.THREAD_NOT_FOUND),
        (ThreadExpired("thread t expired"), ErrorCode.THREAD_EXPIRED),
        (ThreadBusy("t", "run-1"), ErrorCode.THREAD_BUSY),
    ]
    for error, code in cases:
        with pytest.raises(RequestRejected) as refused, thread_errors():
            raise error
        assert refused.value.code == code
    assert refused.value.details == {"activeRunId": "run-1"}


def test_the_turn_a_run_takes() -> None:
    thread_id = "11111111-1111-4111-8111-111111111111"
    window = HistoryWindow(max_messages=4)
    one = thread_turn(thread_id, RunInputs(message="hi"), window, None)
    assert (one.messages, one.multitask, one.window) == (
        ({"role": "user", "content": "hi"},),
        "reject",
        window,
    )
    several = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    assert thread_turn(thread_id, RunInputs(messages=several), window, "enqueue").messages == tuple(several)
    assert thread_turn(thread_id, RunInputs(), window, "enqueue").messages == ()
    with pytest.raises(RequestRejected) as bad_mode:
        thread_turn(thread_id, RunInputs(message="hi"), window, "interrupt")
    assert bad_mode.value.code == ErrorCode.VALIDATION_ERROR
    with pytest.raises(RequestRejected) as bad_id:
        thread_turn("thread-1", RunInputs(message="hi"), window, None)
    assert bad_id.value.code == ErrorCode.THREAD_NOT_FOUND


def test_tool_turns_keep_the_assistant_message_that_asked() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
    asked = {"role": "assistant", "content": "", "tool_calls": [call]}
    pause = {"pending": [call], "messages": [{"role": "user", "content": "q"}, asked]}
    results = [{"tool_call_id": "c1", "content": "42"}]
    assert tool_turns(pause, results) == [asked, {"role": "tool", "tool_call_id": "c1", "content": "42"}]
    # A pause that recorded no assistant message with its calls: rebuilt from the pending calls.
    rebuilt = tool_turns({"pending": [call], "messages": [{"role": "assistant", "content": "x"}]}, results)
    assert rebuilt[0] == {"role": "assistant", "content": "x", "tool_calls": [call]}
    assert tool_turns({"pending": [call]}, [])[0]["content"] == ""
