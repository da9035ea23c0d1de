"""The embedded Noukai server twice: telemetry on and telemetry off, for the cost of observing it.

- `noukai-telemetry-on`: Prometheus metrics on (`[metrics] enabled`, the default) and scraped once
  a second by the harness, and OpenTelemetry traces exported over OTLP/HTTP
  (`OTEL_EXPORTER_OTLP_ENDPOINT`) to a sink the harness starts (`bench.otlp_sink`, a separate
  process, so its CPU is neither the server's nor the load generator's; it answers 200 to every
  `POST /v1/traces` and counts them).
- `noukai-telemetry-off`: `NOUKAI_METRICS_ENABLED=false` and no `OTEL_*` variable at all.

Both run the same levels as the other targets (no long stream, lag or profile: the comparison is
CPU per run and runs/s, `bench.report_telemetry`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from .sse_client import http_get_status
from .targets import BENCH_DIR, HOST, NoukaiTarget, free_port

SCRAPE_SECONDS = 1.0
OTEL_PREFIX = "OTEL_"


def _without_telemetry(env: Mapping[str, str]) -> dict[str, str]:
    return {
        k: v
        for k, v in env.items()
        if not k.startswith(OTEL_PREFIX) and k not in ("PROMETHEUS_MULTIPROC_DIR", "NOUKAI_METRICS_ENABLED")
    }


class TelemetryOffTarget(NoukaiTarget):
    name = "noukai-telemetry-off"

    def server_env(self, workdir: Path) -> Mapping[str, str]:
        env = _without_telemetry(super().server_env(workdir))
        return {**env, "NOUKAI_METRICS_ENABLED": "false"}


class TelemetryOnTarget(NoukaiTarget):
    name = "noukai-telemetry-on"

    def __init__(self, org: str = "dev", project: str = "main") -> None:
        super().__init__(org, project)
        self._sink: subprocess.Popen[bytes] | None = None
        self._sink_port = 0
        self._scraper: asyncio.Task[None] | None = None
        self.scrapes = 0
        self.failed_scrapes = 0
        self.received: dict[str, int] = {}
        """The sink's counts: `exports` (POSTs to /v1/traces) and `bytes`."""

    def server_env(self, workdir: Path) -> Mapping[str, str]:
        env = _without_telemetry(super().server_env(workdir))
        return {
            **env,
            "NOUKAI_METRICS_ENABLED": "true",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{HOST}:{self._sink_port}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_SERVICE_NAME": "noukai-bench",
        }

    async def start(self, timeout: float = 60.0) -> None:
        self._sink_port = free_port()
        self._sink = subprocess.Popen(
            [sys.executable, "-m", "bench.otlp_sink", "--port", str(self._sink_port), "--host", HOST],
            cwd=BENCH_DIR.parent,
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                if await http_get_status(HOST, self._sink_port, "/health") == 200:
                    break
            except (OSError, ValueError, IndexError):
                pass
            if self._sink.poll() is not None or time.monotonic() > deadline:
                self._stop_sink()
                raise RuntimeError("the OTLP sink did not start")
            await asyncio.sleep(0.05)
        try:
            await super().start(timeout)
        except BaseException:
            self._stop_sink()
            raise
        self._scraper = asyncio.create_task(self._scrape())

    async def _scrape(self) -> None:
        """What a Prometheus server does: read /metrics every `SCRAPE_SECONDS`."""
        while True:
            await asyncio.sleep(SCRAPE_SECONDS)
            try:
                ok = await http_get_status(HOST, self.port, "/metrics") == 200
            except (OSError, ValueError, IndexError):
                ok = False
            self.scrapes += ok
            self.failed_scrapes += not ok

    async def stop(self) -> None:
        if self._scraper is not None:
            self._scraper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scraper
            self._scraper = None
        await super().stop()  # the server flushes its spans to the sink on the way out
        if self._sink is not None:
            with contextlib.suppress(OSError, ValueError):
                self.received = _sink_stats(self._sink_port)
        self._stop_sink()

    def _stop_sink(self) -> None:
        if self._sink is None:
            return
        self._sink.terminate()
        try:
            self._sink.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._sink.kill()
            self._sink.wait()
        self._sink = None

    def facts(self) -> dict[str, object]:
        """What the report says about the telemetry traffic (read after `stop`)."""
        return {"scrapes": self.scrapes, "failed_scrapes": self.failed_scrapes, **self.received}


def _sink_stats(port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://{HOST}:{port}/stats", timeout=5) as answer:
        stats: dict[str, int] = json.loads(answer.read())
    return stats


TELEMETRY_TARGETS = {TelemetryOnTarget.name: TelemetryOnTarget, TelemetryOffTarget.name: TelemetryOffTarget}
