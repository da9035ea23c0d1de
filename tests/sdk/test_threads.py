"""`client.threads` and `thread_id=` through the SDK (sync and async) against the real server."""

from __future__ import annotations

import uuid

import pytest

import noukai
from noukai import FlowExecutionError, ThreadEvent
from noukai._reconnect import Wait
from noukai._threads import ThreadStreamMachine, parse_thread_event_id
from tests.conftest import ServerProcess
from tests.cutting_proxy import CuttingProxy


def chat_flow(server: ServerProcess, *, delay_ms: float = 0) -> str:
    slug = f"sdkchat-{uuid.uuid4().hex[:8]}"
    server.put_flow(
        server.dev_key,
        "dev",
        "main",
        {
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
        },
    )
    return slug


def test_threads_sync(client: noukai.Noukai, server: ServerProcess) -> None:
    flow = client.flow(chat_flow(server))
    thread = client.threads.create(metadata={"user": "ada"}, ttl_seconds=3600)
    assert thread.metadata == {"user": "ada"} and thread.ttl_seconds == 3600
    assert flow.execute(message="hi", thread_id=thread.id).result == "1 hi"
    assert flow.execute(message="more", thread_id=thread.id).result == "3 more"
    # the /step stream and jobs take turns too
    events = list(flow.events(message="streamed", thread_id=thread.id))
    assert events[-1].type == "flow_completed"
    job = flow.execute_async(message="queued", thread_id=thread.id)
    assert job.wait(timeout=20).result == "7 queued"
    got = client.threads.get(thread.id)
    assert got.message_count == 8 and got.run_count == 4 and got.active_run_id is None
    page = client.threads.messages(thread.id, limit=3)
    assert [m.content for m in page.messages] == ["hi", "1 hi", "more"] and page.next_cursor == "3"
    rest = client.threads.messages(thread.id, cursor=page.next_cursor)
    assert [m.position for m in rest.messages] == [4, 5, 6, 7, 8] and rest.next_cursor is None
    fork = client.threads.fork(thread.id, position=2, metadata={"branch": 1})
    assert fork.message_count == 2 and fork.metadata == {"branch": 1}
    assert flow.execute(message="branch", thread_id=fork.id).result == "3 branch"
    erased = client.threads.delete(thread.id)
    assert erased.deleted and erased.messages == 8 and erased.runs == 4 and erased.events > 0
    with pytest.raises(noukai.FlowNotFoundError) as missing:
        client.threads.get(thread.id)
    assert missing.value.code == "THREAD_NOT_FOUND"


def test_busy_thread_raises_or_enqueues(client: noukai.Noukai, server: ServerProcess) -> None:
    slow = client.flow(chat_flow(server, delay_ms=250))
    fast = client.flow(chat_flow(server))
    thread = client.threads.create()
    job = slow.execute_async(message="a b c", thread_id=thread.id)
    with pytest.raises(FlowExecutionError) as busy:
        fast.execute(message="now", thread_id=thread.id)
    assert busy.value.code == "THREAD_BUSY" and busy.value.status_code == 409
    assert fast.execute(message="later", thread_id=thread.id, multitask="enqueue").result == "3 later"
    assert job.poll().status == "completed"


@pytest.mark.anyio
async def test_threads_async(aclient: noukai.AsyncNoukai, server: ServerProcess) -> None:
    flow = aclient.flow(chat_flow(server))
    thread = await aclient.threads.create()
    assert (await flow.execute(message="one", thread_id=thread.id)).result == "1 one"
    assert (await flow.execute(message="two", thread_id=thread.id)).result == "3 two"
    page = await aclient.threads.messages(thread.id)
    assert [m.role for m in page.messages] == ["user", "assistant", "user", "assistant"]
    fork = await aclient.threads.fork(thread.id)
    assert (await aclient.threads.get(fork.id)).message_count == 4
    seen: list[ThreadEvent] = []
    async with aclient.threads.events(thread.id) as stream:
        async for item in stream:
            seen.append(item)
            if item.type == "flow_completed" and item.run_ordinal == 2:
                break
        assert stream.last_event_id == seen[-1].id
    assert [e.run_ordinal for e in seen if e.type == "run_started"] == [1, 2]
    await aclient.threads.delete(fork.id)


def test_thread_stream_survives_cuts_across_three_runs(server: ServerProcess) -> None:
    """The SDK resumes the thread stream after dropped connections: every event of three runs,
    in order, once."""
    with noukai.Noukai(api_key=server.dev_key, base_url=server.base_url, org="dev", project="main") as direct:
        flow = direct.flow(chat_flow(server))
        thread = direct.threads.create()
        runs = [flow.execute(message=f"turn {n} " + "word " * 20, thread_id=thread.id) for n in range(3)]
        lasts = [direct.runs.retrieve(r.execution_id or "").last_seq for r in runs]
    expected = [(ordinal, seq) for ordinal, last in enumerate(lasts, start=1) for seq in range(1, last + 1)]
    with (
        CuttingProxy(server.port, after_bytes=600, cuts=3) as proxy,
        noukai.Noukai(api_key=server.dev_key, base_url=proxy.url, org="dev", project="main") as cut,
    ):
        got: list[tuple[int, int]] = []
        with cut.threads.events(thread.id) as stream:
            for item in stream:
                got.append(parse_thread_event_id(item.id))
                if len(got) == len(expected):
                    break
        assert proxy.cuts_made == 3
    assert got == expected
    # an application restart resumes from the saved id
    with noukai.Noukai(api_key=server.dev_key, base_url=server.base_url, org="dev", project="main") as again:
        saved = f"{len(lasts)}-{lasts[-1] - 1}"
        with again.threads.events(thread.id, since_id=saved) as stream:
            first = next(iter(stream))
        assert first.id == f"{len(lasts)}-{lasts[-1]}" and first.type == "flow_completed"


def test_thread_stream_machine_drops_repeats_and_plans_reconnects() -> None:
    machine = ThreadStreamMachine("00000000-0000-0000-0000-000000000001", last_event_id="1-2")
    call = machine.next_action()
    assert not isinstance(call, Wait)
    assert call.params == {"since_id": "1-2"} and call.headers["Last-Event-ID"] == "1-2"
    machine.on_open()
    frames = (
        b'id: 1-2\nevent: step_started\ndata: {"seq": 2, "stepId": "a"}\n\n'
        b'id: 1-3\nevent: flow_completed\ndata: {"seq": 3}\n\n'
        b'id: 2-1\nevent: run_started\ndata: {"seq": 1}\n\n'
    )
    events = machine.feed(frames)
    assert [(e.id, e.run_ordinal, e.type) for e in events] == [
        ("1-3", 1, "flow_completed"),
        ("2-1", 2, "run_started"),
    ]
    machine.on_close()
    wait = machine.next_action()
    assert isinstance(wait, Wait)
    resumed = machine.next_action()
    assert not isinstance(resumed, Wait) and resumed.params == {"since_id": "2-1"}
    with pytest.raises(ValueError):
        parse_thread_event_id("7")
    with pytest.raises(ValueError):
        ThreadStreamMachine("t", last_event_id="x-1")


def test_thread_errors_through_the_sdk(client: noukai.Noukai, server: ServerProcess) -> None:
    unknown = str(uuid.uuid4())
    flow = client.flow(chat_flow(server))
    with pytest.raises(noukai.FlowNotFoundError) as raised:
        flow.execute(message="x", thread_id=unknown)
    assert raised.value.code == "THREAD_NOT_FOUND"
    thread = client.threads.create()
    with pytest.raises(FlowExecutionError) as position:
        client.threads.fork(thread.id, position=3)
    assert position.value.code == "THREAD_POSITION_INVALID"
    with pytest.raises(noukai.FlowNotFoundError):
        next(iter(client.threads.events(unknown)))
    with pytest.raises(ValueError):
        client.threads.get("")
