"""The load generator: closed-loop concurrency levels and the long stream.

At concurrency c, c tasks each start a run, read it to its terminal event, and start the next, until
the level's run count is reached. Times are taken with `time.perf_counter()` on this (client) side:
- time to first event: from just before connecting for the request that starts the run, to the first
  complete event frame of the stream that is read (for `native`, the second connection's);
- total: from the same start to the terminal event (for a target whose streams say nothing at the
  end, LangGraph's, to the clean end of the response).
Server CPU and RSS come from /proc (see `procstat`); the client's own CPU is measured alongside so a
saturated load generator is visible rather than silently mistaken for a slow server.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import statistics
import time
from dataclasses import dataclass
from typing import Any

from . import procstat
from .sse_client import StreamSummary, read_stream
from .targets import HOST, Mode, Target, Workload

RUN_TIMEOUT = 120.0  # seconds; a run that takes longer counts as an error, never as a hang


@dataclass(frozen=True, slots=True)
class RunSample:
    ok: bool
    ttfe: float = 0.0
    total: float = 0.0
    first_at: float = 0.0
    last_at: float = 0.0
    events: int = 0
    tokens: int = 0
    error: str | None = None


def _sample(target: Target, summary: StreamSummary, workload: Workload, started: float) -> RunSample:
    error = None
    if summary.terminal is None:
        error = f"stream ended after {summary.events} events without a terminal event"
    elif summary.terminal.type in target.failure_events:
        error = f"run ended with {summary.terminal.type}: {summary.terminal.data[:200]!r}"
    elif summary.tokens != workload.tokens:
        error = f"{summary.tokens} token events, expected {workload.tokens}"
    first_at = summary.first.at if summary.first else 0.0
    # To the terminal event: the last event, or, for a stream that ends by closing, the close.
    ended_at = summary.terminal.at if summary.terminal else summary.last_at
    return RunSample(
        ok=error is None,
        ttfe=first_at - started,
        total=ended_at - started,
        first_at=first_at,
        last_at=summary.last_at,
        events=summary.events,
        tokens=summary.tokens,
        error=error,
    )


async def one_run(target: Target, workload: Workload, mode: Mode) -> RunSample:
    start = target.start_request(workload, mode)
    started = time.perf_counter()
    read = functools.partial(
        read_stream,
        HOST,
        target.port,
        token_type=target.token_event,
        terminal_types=target.terminal_events,
        close_is_terminal=target.terminal_on_close,
    )
    try:
        async with asyncio.timeout(RUN_TIMEOUT):
            summary = await read(start, stop_at_first=mode == "native")
            if mode == "native":
                if summary.first is None:
                    return RunSample(ok=False, error="the run's stream ended before its first event")
                summary = await read(target.follow_request(start, summary.first))
        return _sample(target, summary, workload, started)
    except Exception as exc:
        return RunSample(ok=False, error=f"{type(exc).__name__}: {exc}"[:300])


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


class _MemorySampler:
    """Largest RSS seen while a level runs (sampled every `interval` seconds): of the server roles
    together, and of each. Only the server's: a database's processes all map its shared buffers,
    so their summed RSS would mean little, and reading them costs the load generator."""

    def __init__(self, target: Target, interval: float = 0.25) -> None:
        self.roles = {r: pids for r, pids in target.processes().items() if r in target.server_roles}
        self.server_roles = target.server_roles
        self.trees = {pid: procstat.descendants(pid) for pids in self.roles.values() for pid in pids}
        self.interval = interval
        self.max_rss_mb = 0.0
        self.max_by_role: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    async def _loop(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval)

    def sample(self) -> None:
        by_role = {
            role: sum(procstat.memory(pid, self.trees[pid]).rss_mb for pid in pids)
            for role, pids in self.roles.items()
        }
        for role, rss in by_role.items():
            self.max_by_role[role] = max(self.max_by_role.get(role, 0.0), rss)
        self.max_rss_mb = max(self.max_rss_mb, sum(by_role[r] for r in self.server_roles if r in by_role))

    async def __aenter__(self) -> _MemorySampler:
        self._task = asyncio.create_task(self._loop())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self.sample()


class _CpuMeter:
    """CPU seconds of every role of a target between `start()` and `stop()`, the load generator's
    own, and the whole machine's busy time (whence what other processes took)."""

    def __init__(self, target: Target) -> None:
        self.target = target

    def start(self) -> None:
        self._roles0 = procstat.role_cpu(self.target.processes())
        self._client0 = procstat.self_cpu_seconds()
        self._busy0 = procstat.system_busy_seconds()
        self._t0 = time.perf_counter()

    def stop(self) -> None:
        self.wall = time.perf_counter() - self._t0
        busy = procstat.system_busy_seconds() - self._busy0
        self.by_role = procstat.cpu_between(self._roles0, procstat.role_cpu(self.target.processes()))
        self.server = sum(v for r, v in self.by_role.items() if r in self.target.server_roles)
        self.client = procstat.self_cpu_seconds() - self._client0
        self.other = max(0.0, busy - sum(self.by_role.values()) - self.client)


def _by_role(meter: _CpuMeter, per: int, unit: float, rss: dict[str, float] | None = None) -> dict[str, Any]:
    """Per role: CPU per run (unit 1e3: ms) or per event (1e6: µs), utilisation, and RSS."""
    return {
        role: {
            "cpu_s": seconds,
            "cpu_per_unit": unit * seconds / max(1, per),
            "cpu_util": seconds / meter.wall,
            **({"rss_max_mb": rss.get(role, 0.0)} if rss is not None else {}),
        }
        for role, seconds in meter.by_role.items()
    }


async def run_level(
    target: Target,
    workload: Workload,
    mode: Mode,
    concurrency: int,
    runs: int,
    min_seconds: float = 0.0,
    max_seconds: float = math.inf,
) -> dict[str, Any]:
    """At least `runs` runs of `workload`, `concurrency` at a time, and more until `min_seconds` have
    passed (so a fast target's level lasts long enough for CPU ticks to mean something). No run is
    started after `max_seconds` (so a slow target's level ends in time; the runs started finish and
    count, and `capped` says the level stopped short of `runs`). Every worker starts at least one run."""
    remaining = runs
    samples: list[RunSample] = []
    now = time.perf_counter()
    until, deadline = now + min_seconds, now + max_seconds

    async def worker() -> None:
        nonlocal remaining
        first = True
        while remaining > 0 or time.perf_counter() < until:
            if not first and time.perf_counter() >= deadline:
                break
            first = False
            remaining -= 1
            samples.append(await one_run(target, workload, mode))

    meter = _CpuMeter(target)
    meter.start()
    async with _MemorySampler(target) as memory:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    meter.stop()
    wall, server_cpu, client_cpu = meter.wall, meter.server, meter.client

    good = [s for s in samples if s.ok]
    errors = [s.error for s in samples if not s.ok]
    ttfe = [s.ttfe * 1000 for s in good] or [float("nan")]
    total = [s.total * 1000 for s in good] or [float("nan")]
    events = sum(s.events for s in good)
    return {
        "target": target.name,
        "workload": workload.name,
        "mode": mode,
        "concurrency": concurrency,
        "runs": len(samples),
        "runs_planned": runs,
        "capped": len(samples) < runs,
        "ok": len(good),
        "errors": len(errors),
        "error_samples": sorted(set(e for e in errors if e))[:5],
        "wall_s": wall,
        "runs_per_s": len(good) / wall,
        "events_per_run": events / len(good) if good else 0,
        "events_per_s": events / wall,
        "ttfe_ms": {"p50": percentile(ttfe, 50), "p95": percentile(ttfe, 95), "max": max(ttfe)},
        "total_ms": {"p50": percentile(total, 50), "p95": percentile(total, 95), "max": max(total)},
        "server_cpu_s": server_cpu,
        "server_cpu_ms_per_run": 1000 * server_cpu / max(1, len(good)),
        "server_cpu_util": server_cpu / wall,
        "client_cpu_s": client_cpu,
        "client_cpu_ms_per_run": 1000 * client_cpu / max(1, len(good)),
        "client_cpu_util": client_cpu / wall,
        "other_cpu_util": meter.other / wall,
        "server_rss_mb": sum(procstat.role_rss_mb(memory.roles).values()),
        "server_rss_max_mb": memory.max_rss_mb,
        # CPU per run in ms, per process role (one role, "server", for a single-process target).
        "processes": _by_role(meter, len(good), 1e3, memory.max_by_role),
    }


async def long_stream(target: Target, workload: Workload, mode: Mode, repeats: int) -> dict[str, Any]:
    """One long run at a time, `repeats` times: the event rate of a single stream."""
    rates, totals, samples = [], [], []
    meter = _CpuMeter(target)
    meter.start()
    for _ in range(repeats):
        sample = await one_run(target, workload, mode)
        if not sample.ok:
            samples.append(sample)
            continue
        samples.append(sample)
        # n events arrive over n - 1 gaps, from the first to the last.
        rates.append((sample.events - 1) / max(1e-9, sample.last_at - sample.first_at))
        totals.append(sample.total * 1000)
    meter.stop()
    wall, server_cpu, client_cpu = meter.wall, meter.server, meter.client
    good = [s for s in samples if s.ok]
    events = sum(s.events for s in good)
    return {
        "target": target.name,
        "workload": workload.name,
        "mode": mode,
        "repeats": repeats,
        "ok": len(good),
        "errors": len(samples) - len(good),
        "error_samples": sorted({s.error for s in samples if s.error})[:5],
        "events_per_run": events / len(good) if good else 0,
        "events_per_s": statistics.median(rates) if rates else float("nan"),
        "events_per_s_all": rates,
        "ttfe_ms": statistics.median(s.ttfe * 1000 for s in good) if good else float("nan"),
        "total_ms": statistics.median(totals) if totals else float("nan"),
        "server_cpu_us_per_event": 1e6 * server_cpu / max(1, events),
        "client_cpu_us_per_event": 1e6 * client_cpu / max(1, events),
        "other_cpu_util": meter.other / wall,
        # CPU per event in µs, per process role.
        "processes": _by_role(meter, events, 1e6),
    }


async def wait_for_quiet(max_wait: float, threshold: float = 0.25) -> float:
    """Wait (up to `max_wait` s) until other processes use less than `threshold` of one CPU over a
    1 s window; returns the last window's figure. The machine may be shared: this is recorded, so
    a busy neighbour shows up in the results instead of passing for a slow server."""
    deadline = time.monotonic() + max_wait
    while True:
        busy0, own0, t0 = procstat.system_busy_seconds(), procstat.self_cpu_seconds(), time.perf_counter()
        await asyncio.sleep(1.0)
        own = procstat.self_cpu_seconds() - own0
        other = max(0.0, procstat.system_busy_seconds() - busy0 - own) / (time.perf_counter() - t0)
        if other < threshold or time.monotonic() >= deadline:
            return other


class SteadyLoad:
    """Closed-loop runners in the background (while a profiler samples the server)."""

    def __init__(self, target: Target, workload: Workload, mode: Mode, concurrency: int) -> None:
        self._args = (target, workload, mode)
        self._concurrency = concurrency
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.completed = 0
        self.failed = 0

    async def _worker(self) -> None:
        while not self._stop.is_set():
            sample = await one_run(*self._args)
            if sample.ok:
                self.completed += 1
            else:
                self.failed += 1

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(self._concurrency)]

    async def stop(self) -> None:
        """Let every runner finish its current run."""
        self._stop.set()
        await asyncio.gather(*self._tasks)
