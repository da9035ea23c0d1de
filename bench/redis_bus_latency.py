"""Cross-process latency of the Redis bus: one process publishes single-event batches, another
receives them through its own `RedisBus`; the lag is the receive time minus the publish time on
the machine's monotonic clock (CLOCK_MONOTONIC, shared by every process on Linux).

Batches go out one per millisecond (a token stream, not a flood), so the figure is the lag a
live reader sees, not a throughput limit.

Run: `python -m bench.redis_bus_latency --url redis://127.0.0.1:6379/0 --count 2000`.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import struct
import time
import uuid
from multiprocessing.synchronize import Event as ProcessEvent

from noukai_server.bus import LogEvent, RedisBus

RUN_ID = "latency"


async def _receive(url: str, prefix: str, count: int, ready: ProcessEvent) -> list[float]:
    bus = await RedisBus.open(url, prefix=prefix)
    subscription = bus.subscribe(RUN_ID)
    assert await subscription.ready(5.0), "Redis did not confirm the subscription"
    ready.set()
    lags: list[float] = []
    while len(lags) < count:
        if not await subscription.wait(10.0):
            break
        now = time.monotonic_ns()
        for event in subscription.take_nowait():
            (sent,) = struct.unpack("!Q", event.data[:8])
            lags.append((now - sent) / 1e6)
    await bus.aclose()
    return lags


def _receiver(
    url: str, prefix: str, count: int, ready: ProcessEvent, out: multiprocessing.Queue[list[float]]
) -> None:
    out.put(asyncio.run(_receive(url, prefix, count, ready)))


async def _publish(url: str, prefix: str, count: int) -> None:
    bus = await RedisBus.open(url, prefix=prefix)
    for seq in range(1, count + 1):
        data = struct.pack("!Q", time.monotonic_ns()) + b'{"eventType":"token"}'
        await bus.publish(RUN_ID, [LogEvent.create(RUN_ID, seq, "token", data)])
        await asyncio.sleep(0.001)
    await bus.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--count", type=int, default=2000)
    args = parser.parse_args()
    prefix = f"bench-{uuid.uuid4().hex}"
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    out: multiprocessing.Queue[list[float]] = context.Queue()
    receiver = context.Process(target=_receiver, args=(args.url, prefix, args.count, ready, out))
    receiver.start()
    if not ready.wait(30):
        raise SystemExit("the receiving process did not start")
    asyncio.run(_publish(args.url, prefix, args.count))
    lags = sorted(out.get(timeout=60))
    receiver.join()
    if len(lags) < args.count:
        print(f"only {len(lags)} of {args.count} events arrived")
    percentiles = statistics.quantiles(lags, n=100)
    print(
        f"{len(lags)} single-event batches across processes: p50 {percentiles[49]:.3f} ms, "
        f"p99 {percentiles[98]:.3f} ms, max {lags[-1]:.3f} ms"
    )


if __name__ == "__main__":
    main()
