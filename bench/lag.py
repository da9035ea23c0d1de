"""Event lag: from the moment the engine emits an event to the moment the client of the API
process has received it, end to end.

The emit time is the event's stored `created_at`, taken by the engine's log writer when the event is
emitted (`RunLogWriter._now`, read from the wall clock at most once per millisecond, so it can be up
to 1 ms early: the figures can overstate the lag by that much, never understate it). In the scaled
deployment that is the worker process's clock; the client's receive time is this process's; both
are the machine's one CLOCK_REALTIME. The lag therefore covers everything in between: the batch's
commit to PostgreSQL, the Redis PUBLISH, the API process's subscriber, the follower, the SSE write
and the socket. For the embedded target the same path stays in one process (SQLite, in-process
bus).

The workload is `bench-paced`: one `builtin:echo` step streaming 50 words, one every 20 ms, read
live on the stream that starts the run (`step` mode). Measured alone, and again while a closed-loop
load of three-step runs keeps the deployment busy.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .load import SteadyLoad, percentile
from .sse_client import read_stream
from .targets import HOST, NoukaiTarget, Workload

PACED = Workload("paced", "bench-paced", " ".join(f"w{i}" for i in range(50)), tokens=50)
TOKEN_DELAY_MS = 20  # as in bench/flows/bench-paced.yaml


@dataclass(frozen=True, slots=True)
class PacedSample:
    lags: list[float]
    """ms from each event's emit to its receipt by the client."""
    phases: dict[str, float]
    """ms of each leg from the client's request to its first event (see `PHASES`)."""


PHASES = {
    "request_to_created": "client sends the request -> run row created (API process)",
    "created_to_started": "run created -> started (claimed by a worker: the queue)",
    "started_to_first_emit": "run started -> its first event emitted (engine start-up)",
    "first_emit_to_received": "first event emitted -> received by the client (delivery)",
}
"""The time to first event, cut at the timestamps the store keeps (`services.RunTimes`)."""


async def one_paced_run(target: NoukaiTarget) -> PacedSample:
    offset = time.time() - time.perf_counter()  # perf_counter -> wall clock, for this run
    sent = time.perf_counter()
    summary = await read_stream(
        HOST,
        target.port,
        target.run_request(PACED),
        token_type=target.token_event,
        terminal_types=target.terminal_events,
        keep_times=True,
    )
    if summary.first is None or summary.terminal is None or not summary.times:
        raise RuntimeError(f"the paced run's stream ended early ({summary.events} events)")
    if summary.terminal.type in target.failure_events:
        raise RuntimeError(f"the paced run failed: {summary.terminal.data[:200]!r}")
    times = await asyncio.to_thread(target.run_times, target.run_id(summary.first))

    def wall_ms(when: datetime) -> float:
        return 1000 * (when.timestamp() - offset)  # on the perf_counter scale, in ms

    lags = [1000 * at - wall_ms(times.events[seq]) for seq, at in summary.times if seq in times.events]
    if len(lags) != len(summary.times):
        raise RuntimeError(f"{len(summary.times) - len(lags)} streamed events are not in the store")
    first_seq, first_at = summary.times[0]
    first_emit = wall_ms(times.events[first_seq])
    created = wall_ms(times.created)
    started = wall_ms(times.started) if times.started else float("nan")
    phases = {
        "request_to_created": created - 1000 * sent,
        "created_to_started": started - created,
        "started_to_first_emit": first_emit - started,
        "first_emit_to_received": 1000 * first_at - first_emit,
    }
    return PacedSample(lags, phases)


async def measure_lag(
    target: NoukaiTarget, runs: int, load: Workload | None = None, concurrency: int = 0
) -> dict[str, Any]:
    """`runs` paced runs one after the other, alone or beside `concurrency` closed-loop runs of
    `load`; the lag's distribution over all their events."""
    background = SteadyLoad(target, load, "step", concurrency) if load and concurrency else None
    if background is not None:
        background.start()
        await asyncio.sleep(1.0)  # let the load ramp up
    lags: list[float] = []
    phases: dict[str, list[float]] = {name: [] for name in PHASES}
    errors: list[str] = []
    try:
        for _ in range(runs):
            try:
                sample = await one_paced_run(target)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}"[:300])
                continue
            lags += sample.lags
            for name, value in sample.phases.items():
                phases[name].append(value)
    finally:
        if background is not None:
            await background.stop()
    scenario = f"beside c={concurrency} {load.name} runs" if background and load else "alone"

    def spread(values: list[float]) -> dict[str, float]:
        if not values:
            return {}
        return {
            "p50": percentile(values, 50),
            "p95": percentile(values, 95),
            "p99": percentile(values, 99),
            "max": max(values),
        }

    return {
        "target": target.name,
        "scenario": scenario,
        "concurrency": concurrency,
        "runs": runs,
        "ok": runs - len(errors),
        "errors": len(errors),
        "error_samples": sorted(set(errors))[:5],
        "events": len(lags),
        "token_delay_ms": TOKEN_DELAY_MS,
        "lag_ms": spread(lags),
        # Medians of the time to first event's legs (ms), one value per paced run.
        "first_event_phases_ms": {
            name: statistics.median(values) if values else float("nan") for name, values in phases.items()
        },
        "background_runs": background.completed if background else 0,
    }
