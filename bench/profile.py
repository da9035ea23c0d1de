"""Where the server spends its time under load.

py-spy attaches to the running server (it needs ptrace) twice while a steady closed-loop load runs:
once for the flame graph (`profile-c50.svg`), once for the raw collapsed stacks that are summarised
here (self time by package and by function, inclusive time of Noukai's own functions). Both sample
only the thread holding the GIL (`--gil`): the server's Python work is serialised on the GIL, so
that is where its one usable core goes; threads blocked in a queue or a lock would otherwise fill
the profile with waiting. What runs outside the GIL (SQLite's C code in aiosqlite's threads) is
shown instead by the per-thread CPU split taken from /proc over the same window. Without py-spy,
the server is restarted under cProfile and the same summary comes from pstats.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pstats
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

from . import procstat
from .load import SteadyLoad
from .targets import Mode, Target, Workload

TOP = 12
OWN = ("noukai/", "noukai_server/")
"""Noukai's own code (the server is the `noukai_server` package since the workspace split)."""
ENTRY_POINTS = (  # on every stack: no information
    "noukai/__main__.py",
    "noukai/cli.py",
    "noukai_server/__main__.py",
    "noukai_server/cli/",
)


async def _py_spy(args: list[str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await process.communicate()
    return process.returncode or 0, output.decode(errors="replace")


def _package(location: str) -> str:
    """`noukai_server/runtime/worker.py:12` -> `noukai_server.runtime`;
    `sqlalchemy/engine/base.py` -> `sqlalchemy`; `threading.py` -> `threading`."""
    path = location.rsplit(":", 1)[0]
    if path == "~":  # cProfile's name for functions written in C
        return "(C functions)"
    parts = [p for p in path.split("/") if p]
    if not parts:
        return "?"
    if parts[0] in ("noukai", "noukai_server") and len(parts) > 2:
        return f"{parts[0]}.{parts[1]}"
    return parts[0].removesuffix(".py")


def _split_frame(frame: str) -> tuple[str, str]:
    """`name (file.py:12)` -> (`name`, `file.py:12`)."""
    if frame.endswith(")") and " (" in frame:
        name, location = frame[:-1].rsplit(" (", 1)
        return name, location
    return frame, ""


def summarise_collapsed(lines: list[str]) -> dict[str, Any]:
    """Self time by package and function, inclusive time of noukai functions, from collapsed stacks."""
    by_package: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    noukai_inclusive: Counter[str] = Counter()
    total = 0
    for line in lines:
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        name, location = _split_frame(frames[-1])
        by_package[_package(location)] += count
        by_function[f"{name} ({location.rsplit(':', 1)[0]})"] += count
        seen = set()
        for frame in frames:
            name, location = _split_frame(frame)
            if location.startswith(OWN) and not location.startswith(ENTRY_POINTS):
                key = f"{name} ({location.rsplit(':', 1)[0]})"
                if key not in seen:
                    seen.add(key)
                    noukai_inclusive[key] += count
    return _shares(total, by_package, by_function, noukai_inclusive)


def _shares(
    total: int, by_package: Counter[str], by_function: Counter[str], inclusive: Counter[str]
) -> dict[str, Any]:
    def top(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"name": key, "samples": value, "share": value / total if total else 0.0}
            for key, value in counter.most_common(TOP)
        ]

    return {
        "samples": total,
        "self_by_package": top(by_package),
        "self_by_function": top(by_function),
        "noukai_inclusive": top(inclusive),
    }


def summarise_pstats(path: Path) -> dict[str, Any]:
    """The same summary from a cProfile dump (times in microseconds instead of samples)."""
    stats = pstats.Stats(str(path))
    by_package: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for (filename, _line, name), (_cc, _nc, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        short = filename.split("site-packages/")[-1].split("/src/")[-1].split("/lib/python3.11/")[-1]
        own = int(tottime * 1e6)
        total += own
        by_package[_package(short)] += own
        by_function[f"{name} ({short})"] += own
        if short.startswith(OWN) and not short.startswith(ENTRY_POINTS):
            inclusive[f"{name} ({short})"] += int(cumtime * 1e6)
    return _shares(total, by_package, by_function, inclusive)


async def profile_with_py_spy(
    target: Target,
    workload: Workload,
    mode: Mode,
    concurrency: int,
    seconds: int,
    out_dir: Path,
    pid: int | None = None,
    label: str = "",
) -> dict[str, Any]:
    """Profile `target` (already started) under a steady load: its server process, or `pid` (one
    process of a deployment of several, named `label` in the file names). Raises RuntimeError
    without py-spy."""
    pid = target.pid if pid is None else pid
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        raise RuntimeError("py-spy is not installed (make bench runs with `uv run --with py-spy`)")
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"profile-{label}-c{concurrency}" if label else f"profile-c{concurrency}"
    svg = out_dir / f"{stem}.svg"
    raw = out_dir / f"{stem}.collapsed.txt"
    load = SteadyLoad(target, workload, mode, concurrency)
    load.start()
    try:
        await asyncio.sleep(1.0)  # ramp up
        started = time.perf_counter()
        threads0 = thread_cpu(pid)
        common = ["--pid", str(pid), "--duration", str(seconds), "--rate", "100", "--gil"]
        code, output = await _py_spy([py_spy, "record", "-o", str(svg), *common])
        if code != 0:
            raise RuntimeError(f"py-spy failed ({code}): {output.strip()[-500:]}")
        code, output = await _py_spy([py_spy, "record", "--format", "raw", "-o", str(raw), *common])
        if code != 0:
            raise RuntimeError(f"py-spy failed ({code}): {output.strip()[-500:]}")
        elapsed = time.perf_counter() - started
        threads1 = thread_cpu(pid)
    finally:
        await load.stop()
    summary = summarise_collapsed(raw.read_text().splitlines())
    raw.unlink()  # the summary is kept in the JSON; the svg is the artefact
    return {
        "tool": "py-spy",
        "process": label or target.name,
        "flamegraph": str(svg.relative_to(out_dir.parent.parent)),
        "concurrency": concurrency,
        "mode": mode,
        "seconds": elapsed,
        "runs_during_profile": load.completed,
        "failed_during_profile": load.failed,
        "thread_cpu_util": {
            "main": (threads1[0] - threads0[0]) / elapsed,
            "other_threads": (threads1[1] - threads0[1]) / elapsed,
            "threads_alive": threads1[2],
        },
        **summary,
    }


def thread_cpu(pid: int) -> tuple[float, float, int]:
    """CPU seconds of the main thread, of all other threads (live ones), and the live thread count."""
    main = other = 0.0
    count = 0
    for entry in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = Path(f"/proc/{pid}/task/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds = (int(fields[11]) + int(fields[12])) / procstat.CLOCK_TICKS
        count += 1
        if int(entry) == pid:
            main += seconds
        else:
            other += seconds
    return main, other, count


async def profile_with_cprofile(
    target_type: type[Target], workload: Workload, mode: Mode, concurrency: int, seconds: int, out_dir: Path
) -> dict[str, Any]:
    """Fallback: restart the server under cProfile, load it for `seconds`, summarise the dump."""
    out_dir.mkdir(parents=True, exist_ok=True)
    dump = out_dir / f"profile-c{concurrency}.pstats"

    class Profiled(target_type):  # type: ignore[valid-type,misc]
        def command(self, workdir: Path, port: int) -> list[str]:
            command = super().command(workdir, port)
            return [command[0], "-m", "cProfile", "-o", str(dump), *command[1:]]

    target = Profiled()
    await target.start()
    load = SteadyLoad(target, workload, mode, concurrency)
    try:
        load.start()
        await asyncio.sleep(seconds)
        await load.stop()
    finally:
        await target.stop()
    with contextlib.suppress(FileNotFoundError):
        summary = summarise_pstats(dump)
        return {
            "tool": "cProfile",
            "dump": str(dump.relative_to(out_dir.parent.parent)),
            "concurrency": concurrency,
            "mode": mode,
            "seconds": seconds,
            "runs_during_profile": load.completed,
            "failed_during_profile": load.failed,
            **summary,
        }
    raise RuntimeError("cProfile wrote no dump (did the server exit cleanly?)")
