"""`python -m bench`: every target in turn, every mode, every concurrency level, the long stream, then a
profile of the Noukai server under the highest level; prints the table and the issue's targets, and
writes the results."""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

from . import procstat, report, report_scaled, report_telemetry, telemetry_pair
from .lag import measure_lag
from .load import long_stream, run_level, wait_for_quiet
from .profile import profile_with_cprofile, profile_with_py_spy
from .services import ServiceUnavailable
from .targets import BENCH_DIR, Mode, NoukaiTarget, Target, Workload
from .targets_scaled import ALL_TARGETS, ScaledNoukaiTarget
from .targets_telemetry import TelemetryOffTarget, TelemetryOnTarget

TELEMETRY_TARGET_TYPES = (TelemetryOnTarget, TelemetryOffTarget)

ROOT = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results"

# bench-3step renders 13 words of its own plus the message in each of its three steps: 7 words of
# message make 20 streamed words per step, 60 in all.
MESSAGE = "the quick brown fox jumps over it"
THREE_STEPS = Workload("three-steps", "bench-3step", MESSAGE, tokens=60)
EVENTS_PER_RUN = 1 + 3 * 3 + 60 + 1  # run_started, step_started/input/completed x3, tokens, flow_completed


def long_workload(words: int) -> Workload:
    return Workload("long", "bench-long", " ".join(f"word{i}" for i in range(words)), tokens=words)


def _levels(text: str) -> list[tuple[int, int]]:
    """`1:40,10:200` -> [(1, 40), (10, 200)] (concurrency:runs)."""
    levels = []
    for part in text.split(","):
        concurrency, runs = part.split(":")
        levels.append((int(concurrency), int(runs)))
    return levels


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--targets",
        default="noukai,noukai-scaled,langgraph,floor,noukai-telemetry-off,noukai-telemetry-on",
        help="comma-separated: " + ",".join(ALL_TARGETS),
    )
    parser.add_argument("--modes", default="step,native", help="comma-separated: step,native")
    parser.add_argument("--levels", default="1:30,10:150,50:300", help="concurrency:runs,...")
    parser.add_argument(
        "--min-seconds", type=float, default=3.0, help="a level goes on at least this long (fast targets)"
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=30.0,
        help="no run starts after this long in a level (slow targets; its runs are then fewer)",
    )
    parser.add_argument("--warmup", type=int, default=40, help="warm-up runs per target and mode (c=10)")
    parser.add_argument("--long-words", type=int, default=5000, help="words (events) in the long stream")
    parser.add_argument("--long-repeats", type=int, default=5)
    parser.add_argument("--profile-seconds", type=int, default=10, help="0: no profile")
    parser.add_argument(
        "--lag-runs",
        type=int,
        default=10,
        help="paced runs per event-lag measurement (Noukai targets; 0: none)",
    )
    parser.add_argument(
        "--lag-load", type=int, default=10, help="concurrency of the load beside the second lag measurement"
    )
    parser.add_argument(
        "--quiet-wait", type=float, default=30, help="seconds to wait for other processes to go quiet"
    )
    parser.add_argument(
        "--telemetry-pairs",
        type=int,
        default=8,
        help="alternating off/on windows when both telemetry targets run (bench.telemetry_pair)",
    )
    parser.add_argument("--telemetry-seconds", type=float, default=8.0, help="seconds per telemetry window")
    parser.add_argument(
        "--telemetry-concurrency", type=int, default=10, help="closed-loop runners per window"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md", help="'-': none")
    parser.add_argument("--command", default="make bench", help="the command recorded in the results")
    return parser.parse_args(argv)


async def bench_target(
    target: Target, modes: list[Mode], args: argparse.Namespace, results: dict[str, Any]
) -> None:
    levels = _levels(args.levels)
    long = long_workload(args.long_words)
    other = await wait_for_quiet(args.quiet_wait)
    results["background"].append(
        {"target": target.name, "other_cpu_util": other, "load_average": procstat.load_average()}
    )
    started = time.perf_counter()
    try:
        await target.start()
    except ServiceUnavailable as exc:
        results["skipped"][target.name] = str(exc)
        report.progress(f"== {target.name}: SKIPPED, {exc} (the scaled target needs PostgreSQL and Redis)")
        return
    took = time.perf_counter() - started
    report.progress(
        f"== {target.name}: healthy on port {target.port} after {took:.1f}s "
        f"(other processes were using {100 * other:.0f}% of a CPU)"
    )
    try:
        for mode in modes:
            if mode not in target.modes:
                continue
            warm = await run_level(target, THREE_STEPS, mode, 10, args.warmup, max_seconds=args.max_seconds)
            if warm["errors"]:
                raise RuntimeError(f"{target.name} {mode} warm-up failed: {warm['error_samples']}")
        for mode in modes:
            if mode not in target.modes:
                continue
            for concurrency, runs in levels:
                level = await run_level(
                    target, THREE_STEPS, mode, concurrency, runs, args.min_seconds, args.max_seconds
                )
                results["levels"].append(level)
                report.progress(
                    f"   {mode:6} c={concurrency:<3} {level['runs']:5} runs{'*' if level['capped'] else ' '} "
                    f"{level['runs_per_s']:7.1f} runs/s  "
                    f"TTFE p50 {level['ttfe_ms']['p50']:7.2f} ms  "
                    f"total p50 {level['total_ms']['p50']:7.2f} ms  "
                    f"CPU% server {100 * level['server_cpu_util']:3.0f} "
                    f"client {100 * level['client_cpu_util']:3.0f} "
                    f"others {100 * level['other_cpu_util']:3.0f}  errors {level['errors']}"
                )
        for mode in modes:
            if mode not in target.modes or isinstance(target, TELEMETRY_TARGET_TYPES):
                continue  # the telemetry pair compares CPU per run only
            result = await long_stream(target, long, mode, args.long_repeats)
            results["long_streams"].append(result)
            report.progress(
                f"   {mode:6} long  {result['events_per_s']:9.0f} events/s  errors {result['errors']}"
            )
        telemetry_pair = isinstance(target, TELEMETRY_TARGET_TYPES)  # compared by CPU per run only
        if (
            isinstance(target, NoukaiTarget)
            and target.name != "floor"
            and args.lag_runs > 0
            and not telemetry_pair
        ):
            await _lags(target, args, results)
        if isinstance(target, ScaledNoukaiTarget) and args.profile_seconds > 0:
            await _profile_scaled(target, modes[0], max(c for c, _ in levels), args, results)
        if isinstance(target, ScaledNoukaiTarget):
            results["scaled"] = target.facts()
        if target.name == "noukai" and args.profile_seconds > 0:
            concurrency = max(c for c, _ in levels)
            try:
                results["profile"] = await profile_with_py_spy(
                    target, THREE_STEPS, modes[0], concurrency, args.profile_seconds, RESULTS
                )
            except RuntimeError as exc:
                report.progress(f"   py-spy: {exc}; falling back to cProfile")
                results["profile"] = {"error": str(exc)}
    finally:
        await target.stop()
        if isinstance(target, TelemetryOnTarget):
            results["telemetry"] = target.facts()
        results["durations_s"][target.name] = round(time.perf_counter() - started, 1)
        report.progress(f"== {target.name}: done in {results['durations_s'][target.name]:.0f}s")
    if results.get("profile", {}).get("error") and target.name == "noukai":
        try:
            results["profile"] = await profile_with_cprofile(
                type(target), THREE_STEPS, modes[0], max(c for c, _ in levels), args.profile_seconds, RESULTS
            )
        except RuntimeError as exc:
            results["profile"] = {"error": f"{results['profile']['error']}; cProfile: {exc}"}


async def _lags(target: NoukaiTarget, args: argparse.Namespace, results: dict[str, Any]) -> None:
    """The event lag, alone and beside a closed-loop load (see `bench.lag`)."""
    for concurrency in (0, args.lag_load):
        lag = await measure_lag(target, args.lag_runs, THREE_STEPS, concurrency)
        results["lag"].append(lag)
        spread = lag["lag_ms"]
        report.progress(
            f"   lag {lag['scenario']:>28}: p50 {spread.get('p50', float('nan')):6.2f} ms  "
            f"p95 {spread.get('p95', float('nan')):6.2f} ms  max {spread.get('max', float('nan')):6.2f} ms  "
            f"({lag['events']} events, errors {lag['errors']})"
        )


async def _profile_scaled(
    target: ScaledNoukaiTarget,
    mode: Mode,
    concurrency: int,
    args: argparse.Namespace,
    results: dict[str, Any],
) -> None:
    """py-spy on the API process, then on the worker, each under the same steady load."""
    for role, pids in target.processes().items():
        if role not in target.server_roles:
            continue
        try:
            results["profile_scaled"][role] = await profile_with_py_spy(
                target,
                THREE_STEPS,
                mode,
                concurrency,
                args.profile_seconds,
                RESULTS,
                pids[0],
                f"scaled-{role}",
            )
        except RuntimeError as exc:
            report.progress(f"   py-spy on the {role} process: {exc}")
            results["profile_scaled"][role] = {"error": str(exc)}


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    modes: list[Mode] = [m for m in ("step", "native") if m in args.modes.split(",")]
    long = long_workload(args.long_words)
    results: dict[str, Any] = {
        "date": report.now(),
        "machine": report.machine(),
        "config": {
            "command": args.command,
            "levels": _levels(args.levels),
            "min_seconds_per_level": args.min_seconds,
            "max_seconds_per_level": args.max_seconds,
            "modes": modes,
            "warmup_runs": args.warmup,
            "workload": {"flow": THREE_STEPS.flow, "tokens": THREE_STEPS.tokens, "events": EVENTS_PER_RUN},
            "long": {"flow": long.flow, "tokens": long.tokens},
            "long_repeats": args.long_repeats,
        },
        "background": [],
        "durations_s": {},
        "levels": [],
        "long_streams": [],
        "lag": [],
        "skipped": {},
        "profile_scaled": {},
    }
    names = args.targets.split(",")
    # Both telemetry targets: measured side by side in alternating windows, not level by level.
    paired = TelemetryOnTarget.name in names and TelemetryOffTarget.name in names
    for name in names:
        if paired and name in (TelemetryOnTarget.name, TelemetryOffTarget.name):
            continue
        await bench_target(ALL_TARGETS[name](), modes, args, results)
    if paired:
        report.progress("== telemetry on vs off: both servers up, alternating windows")
        results["telemetry_pair"] = await telemetry_pair.measure(
            THREE_STEPS,
            modes[0],
            args.telemetry_concurrency,
            args.telemetry_pairs,
            args.telemetry_seconds,
            args.profile_seconds,
            report.progress,
        )
    return results


def _event_loop_runner() -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    results = _event_loop_runner()(amain(args))
    results["duration_s"] = round(time.perf_counter() - started, 1)
    results["targets"] = report.targets(results)
    print(report.console(results))
    if any(r["target"] == ScaledNoukaiTarget.name for r in results["levels"]):
        print(report_scaled.console(results))
    if report_telemetry.ran(results):
        print(report_telemetry.console(results))
    report.write_json(results, args.out)
    if str(args.docs) != "-":
        # A run of the scaled target alone leaves the main comparison as it was, and vice versa.
        if any(r["target"] in report.MAIN_TARGETS for r in results["levels"]):
            report.write_docs(results, args.docs)
        if any(r["target"] == ScaledNoukaiTarget.name for r in results["levels"]):
            report_scaled.write_docs(results, args.docs)
        if report_telemetry.ran(results):
            report_telemetry.write_docs(results, args.docs)
    report.progress(f"wrote {args.out} in {results['duration_s']:.0f}s")
    # A wrong run from Noukai or the floor fails the bench. The peer's are its own defects: they
    # are counted in its rows and listed here, not a reason to throw the comparison away.
    samples = results["levels"] + results["long_streams"]
    for row in samples:
        if row["errors"] and row["target"] == "langgraph":
            report.progress(
                f"   note: langgraph {row['mode']} errors {row['errors']}: {row.get('error_samples')}"
            )
    for name, why in results["skipped"].items():
        report.progress(f"   note: {name} was SKIPPED: {why}")
    errors = sum(r["errors"] for r in samples + results["lag"] if r["target"] != "langgraph")
    return 1 if errors else 0
