"""The in-process bus's subscriptions: bursts taken without awaiting, waits with a timeout that
lose nothing when they time out or are cancelled, and a closed subscription that stays quiet."""

from __future__ import annotations

import asyncio

import pytest

from noukai_server.bus import LogEvent, MemoryBus

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def events(run_id: str, *seqs: int) -> list[LogEvent]:
    return [LogEvent.create(run_id, seq, "token", b'{"seq": %d}' % seq) for seq in seqs]


async def test_take_nowait_drains_everything_in_order() -> None:
    bus = MemoryBus()
    subscription = bus.subscribe("r")
    assert subscription.take_nowait() == []
    await bus.publish("r", events("r", 1, 2))
    await bus.publish("r", events("r", 3))
    await bus.publish("other", events("other", 9))
    assert [e.seq for e in subscription.take_nowait()] == [1, 2, 3]
    assert subscription.take_nowait() == []
    await subscription.aclose()


async def test_wait_times_out_then_wakes_on_a_publish_and_consumes_nothing() -> None:
    bus = MemoryBus()
    subscription = bus.subscribe("r")
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await subscription.wait(0.05) is False
    assert loop.time() - started >= 0.04
    assert await subscription.wait(0) is False

    async def later() -> None:
        await asyncio.sleep(0.02)
        await bus.publish("r", events("r", 1))

    publisher = asyncio.create_task(later())
    assert await subscription.wait(10) is True
    await publisher
    assert await subscription.wait(10) is True  # already queued: at once
    assert [e.seq for e in subscription.take_nowait()] == [1]
    await subscription.aclose()


async def test_a_cancelled_wait_loses_nothing() -> None:
    bus = MemoryBus()
    subscription = bus.subscribe("r")
    waiter = asyncio.create_task(subscription.wait(10))
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await bus.publish("r", events("r", 1, 2))
    assert [(await anext(subscription)).seq, (await anext(subscription)).seq] == [1, 2]
    await subscription.aclose()


async def test_a_closed_subscription_ends_iteration_and_waits_quietly() -> None:
    bus = MemoryBus()
    subscription = bus.subscribe("r")
    pending = asyncio.create_task(subscription.wait(10))
    await asyncio.sleep(0.01)
    await bus.aclose()
    await pending  # woken by the close
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await subscription.wait(0.05) is False  # no busy loop: it sleeps out the timeout
    assert loop.time() - started >= 0.04
    with pytest.raises(StopAsyncIteration):
        await anext(subscription)
    await bus.publish("r", events("r", 1))  # nobody is subscribed any more
    assert subscription.take_nowait() == []
