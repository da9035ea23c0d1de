"""What telemetry costs a run, measured so that the machine's noise cancels out.

The level table (`report_telemetry.rows`) runs each target once, one after the other, for a second
or two per level. On two shared cores that is too short and too far apart: the "off" server alone
varied from 5.8 to 10.1 ms of CPU per run between rounds, so its ratios swung from +9 % to +38 %.

Here both servers are up at once and the same closed-loop load goes to one, then the other, in
short alternating windows (off, on, on, off, off, on, ...: each pair starts with the one that went
second last time, so a drift in the background favours neither). Each window's server CPU per run
is read from /proc (`procstat.cpu_seconds`, the server process and its children). The ratio is the
pooled one (all the "on" CPU over all its runs, against the same for "off"); the median and range
of the per-pair ratios show how steady it was.

A second, independent estimate comes from py-spy (when installed, as `make bench` has it): one
extra window on the "on" server, sampling every thread, and the share of the samples whose stack
enters the telemetry code (`noukai_server/telemetry/`, the HTTP counter's own bookkeeping, the
`/metrics` route, prometheus-client and the OpenTelemetry SDK), split between the event-loop thread
and the exporter's thread. It does not depend on the background load, only on where the server's
time goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from . import procstat
from .load import SteadyLoad
from .targets import Mode, Target, Workload
from .targets_telemetry import TelemetryOffTarget, TelemetryOnTarget

WARMUP_SECONDS = 3.0
RAMP_SECONDS = 0.5
"""Load runs this long on a window's server before its CPU is read (the runners are all busy)."""

TELEMETRY_FRAMES = (
    "noukai_server/telemetry/",
    "noukai_server/api/metrics_endpoint.py",
    "noukai_server/store/run_counts.py",
    "prometheus_client/",
    "opentelemetry/",
)
"""A stack that enters one of these is telemetry's time (the whole stack from there down)."""
HTTP_COUNTER = "noukai_server/api/http_metrics.py"
HTTP_COUNTER_PASS_THROUGH = ("__call__", "send_noting_status")
"""The HTTP counter wraps every request: only its own bookkeeping is telemetry, not what it wraps."""


async def _window(
    target: Target, workload: Workload, mode: Mode, concurrency: int, seconds: float
) -> dict[str, Any]:
    load = SteadyLoad(target, workload, mode, concurrency)
    load.start()
    try:
        await asyncio.sleep(RAMP_SECONDS)
        runs0, cpu0, began = load.completed, procstat.cpu_seconds(target.pid), time.perf_counter()
        await asyncio.sleep(seconds)
        runs1, cpu1, ended = load.completed, procstat.cpu_seconds(target.pid), time.perf_counter()
    finally:
        await load.stop()
    runs = runs1 - runs0
    return {
        "runs": runs,
        "failed": load.failed,
        "cpu_s": cpu1 - cpu0,
        "seconds": ended - began,
        "cpu_ms_per_run": 1000 * (cpu1 - cpu0) / runs if runs else None,
    }


def telemetry_share(collapsed: Iterable[str]) -> dict[str, Any]:
    """From py-spy's raw output (`--threads`: each stack starts with its thread): the share of all
    samples spent in telemetry, and in which thread."""
    total = 0
    spent: Counter[str] = Counter()
    for line in collapsed:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        thread, *frames = stack.split(";")
        if any(_is_telemetry(frame) for frame in frames):
            spent["event_loop" if "MainThread" in thread else "other_threads"] += samples
    share = sum(spent.values()) / total if total else None
    return {
        "samples": total,
        "telemetry_share": share,
        "event_loop_share": spent["event_loop"] / total if total else None,
        "other_threads_share": spent["other_threads"] / total if total else None,
    }


def _is_telemetry(frame: str) -> bool:
    if HTTP_COUNTER in frame:
        return not any(f"{name} " in frame for name in HTTP_COUNTER_PASS_THROUGH)
    return any(part in frame for part in TELEMETRY_FRAMES)


async def _profile(
    target: Target, workload: Workload, mode: Mode, concurrency: int, seconds: float
) -> dict[str, Any]:
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        return {"error": "py-spy is not installed (make bench runs with `uv run --with py-spy`)"}
    load = SteadyLoad(target, workload, mode, concurrency)
    load.start()
    try:
        await asyncio.sleep(RAMP_SECONDS)
        with tempfile.TemporaryDirectory() as scratch:
            raw = Path(scratch) / "on.collapsed.txt"
            command = [py_spy, "record", "--pid", str(target.pid), "--duration", str(max(1, round(seconds)))]
            command += ["--rate", "200", "--threads", "--format", "raw", "-o", str(raw)]
            process = await asyncio.create_subprocess_exec(
                *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
            )
            output, _ = await process.communicate()
            if process.returncode != 0 or not raw.exists():
                return {
                    "error": f"py-spy failed ({process.returncode}): {output.decode(errors='replace')[-300:]}"
                }
            return telemetry_share(raw.read_text().splitlines())
    finally:
        await load.stop()


def summarise(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """Pooled and per-pair ratios of CPU per run, on over off."""
    on = [w for w in windows if w["target"] == TelemetryOnTarget.name and w["runs"]]
    off = [w for w in windows if w["target"] == TelemetryOffTarget.name and w["runs"]]
    if not on or not off:
        return {"pooled_ratio": None}
    on_ms = 1000 * sum(w["cpu_s"] for w in on) / sum(w["runs"] for w in on)
    off_ms = 1000 * sum(w["cpu_s"] for w in off) / sum(w["runs"] for w in off)
    pairs = [
        a["cpu_ms_per_run"] / b["cpu_ms_per_run"]
        for a, b in zip(on, off, strict=False)
        if a["cpu_ms_per_run"] and b["cpu_ms_per_run"]
    ]
    return {
        "cpu_ms_per_run_on": on_ms,
        "cpu_ms_per_run_off": off_ms,
        "runs_on": sum(w["runs"] for w in on),
        "runs_off": sum(w["runs"] for w in off),
        "pooled_ratio": on_ms / off_ms if off_ms else None,
        "pair_ratio_median": statistics.median(pairs) if pairs else None,
        "pair_ratio_min": min(pairs, default=None),
        "pair_ratio_max": max(pairs, default=None),
    }


async def measure(
    workload: Workload,
    mode: Mode,
    concurrency: int,
    pairs: int,
    seconds: float,
    profile_seconds: float,
    progress: Any = print,
) -> dict[str, Any]:
    """Both servers up, `pairs` alternating window pairs of `seconds` each, then the py-spy share
    (`profile_seconds` 0: none)."""
    on, off = TelemetryOnTarget(), TelemetryOffTarget()
    windows: list[dict[str, Any]] = []
    async with contextlib.AsyncExitStack() as stack:
        both: tuple[Target, Target] = (off, on)
        for target in both:
            await target.start()
            stack.push_async_callback(target.stop)
            warm = SteadyLoad(target, workload, mode, concurrency)
            warm.start()
            await asyncio.sleep(WARMUP_SECONDS)
            await warm.stop()
        order = both
        for index in range(pairs):
            for target in order:
                window = await _window(target, workload, mode, concurrency, seconds)
                windows.append({"target": target.name, "pair": index, **window})
                progress(
                    f"   telemetry pair {index + 1}/{pairs} {target.name:21} {window['runs']:5} runs  "
                    f"{window['cpu_ms_per_run'] or float('nan'):6.2f} ms CPU/run"
                )
            order = (order[1], order[0])
        profile = (
            await _profile(on, workload, mode, concurrency, profile_seconds) if profile_seconds > 0 else {}
        )
    return {
        "mode": mode,
        "concurrency": concurrency,
        "pairs": pairs,
        "window_seconds": seconds,
        "windows": windows,
        "profile": profile,
        "traffic": on.facts(),
        **summarise(windows),
    }
