"""What is benchmarked: a `Target` starts and stops one server, and knows how to start a streamed run
of a `Workload` on it and read that run's events.

A streamed run can be read two ways (`Mode`):
- `step`: the request that starts the run streams it to the end (Noukai's `/step`);
- `native`: the run is started by one request, which is closed after its first event (the run goes
  on), and its events are then read from the target's own resumable stream from the beginning
  (Noukai's `GET /runs/{id}/events?since_id=0`).

A new target (LangGraph's dev server, say) subclasses `Target`, and maps a `Workload` to its own
requests in `run_request` / `events_request`; the load generator needs nothing else.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .sse_client import HttpRequest, SseEvent, http_get_status

Mode = Literal["step", "native"]
BENCH_DIR = Path(__file__).resolve().parent
FLOWS_DIR = BENCH_DIR / "flows"
HOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    flow: str
    """Flow slug (a file in bench/flows)."""
    message: str
    tokens: int
    """`step_output` events a correct run streams."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class Target(ABC):
    """One server under test. `start()` leaves it healthy on `self.port`; `stop()` ends it."""

    name: str
    modes: tuple[Mode, ...] = ("step", "native")

    def __init__(self) -> None:
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._log_path: Path | None = None

    # -- server lifecycle -------------------------------------------------------------------

    @abstractmethod
    def command(self, workdir: Path, port: int) -> list[str]:
        """The server's command line (its first process is the one measured)."""

    health_path = "/health"

    @property
    def pid(self) -> int:
        assert self._process is not None, "not started"
        return self._process.pid

    @property
    def workdir(self) -> Path:
        assert self._workdir is not None, "not started"
        return Path(self._workdir.name)

    async def start(self, timeout: float = 60.0) -> None:
        self._workdir = tempfile.TemporaryDirectory(prefix=f"bench-{self.name}-")
        self.port = free_port()
        self._log_path = self.workdir / "server.log"
        with self._log_path.open("wb") as log:
            self._process = subprocess.Popen(
                self.command(self.workdir, self.port),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=BENCH_DIR.parent,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"{self.name} server exited at start:\n{self.log_tail()}")
            try:
                if await http_get_status(HOST, self.port, self.health_path) == 200:
                    await self.after_healthy()
                    return
            except (OSError, ValueError, IndexError):
                pass
            await asyncio.sleep(0.1)
        await self.stop()
        raise RuntimeError(f"{self.name} server not healthy after {timeout}s:\n{self.log_tail()}")

    async def after_healthy(self) -> None:  # noqa: B027 - an optional hook
        """Read credentials and the like once the server answers."""

    async def stop(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            for _ in range(100):
                if process.poll() is not None:
                    break
                await asyncio.sleep(0.1)
            else:
                process.kill()
                process.wait()
        self._process = None
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def log_tail(self, lines: int = 40) -> str:
        if self._log_path is None or not self._log_path.exists():
            return ""
        return "\n".join(self._log_path.read_text(errors="replace").splitlines()[-lines:])

    # -- streamed runs ----------------------------------------------------------------------

    @abstractmethod
    def run_request(self, workload: Workload) -> HttpRequest:
        """The request that starts a run of `workload` and streams it."""

    @abstractmethod
    def run_id(self, first: SseEvent) -> str:
        """The run's id, from the first event of `run_request`'s stream."""

    @abstractmethod
    def events_request(self, run_id: str) -> HttpRequest:
        """The target's own stream of a run's events, from its first event."""

    terminal_events: frozenset[str] = frozenset()
    failure_events: frozenset[str] = frozenset()
    token_event = "step_output"


STEP_BODY = {
    "stepIndex": 0,
    "accumulatedOutputs": {},
    "parameters": {},
    "inputOverrides": {},
    "runRemaining": True,
    "iterationsUsed": 0,
    "trace": False,
}


class NoukaiTarget(Target):
    """`noukai serve` with its embedded SQLite store and in-process workers."""

    name = "noukai"
    health_path = "/api/v1/health"
    terminal_events = frozenset({"flow_completed", "run_failed", "run_cancelled"})
    failure_events = frozenset({"run_failed", "run_cancelled", "error"})

    def __init__(self, org: str = "dev", project: str = "main") -> None:
        super().__init__()
        self.org = org
        self.project = project
        self._auth: dict[str, str] = {}

    def command(self, workdir: Path, port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "noukai",
            "serve",
            "--data-dir",
            str(workdir / "data"),
            "--flows",
            str(FLOWS_DIR),
            "--port",
            str(port),
            "--host",
            HOST,
        ]

    async def after_healthy(self) -> None:
        key = (self.workdir / "data" / "dev-api-key").read_text().strip()
        self._auth = {"Authorization": f"Bearer {key}"}

    def run_request(self, workload: Workload) -> HttpRequest:
        body = json.dumps({**STEP_BODY, "message": workload.message}).encode()
        return HttpRequest(
            "POST",
            f"/api/v1/seq/{self.org}/{self.project}/{workload.flow}/step",
            {**self._auth, "Content-Type": "application/json", "Accept": "text/event-stream"},
            body,
        )

    def run_id(self, first: SseEvent) -> str:
        return str(json.loads(first.data)["executionId"])

    def events_request(self, run_id: str) -> HttpRequest:
        return HttpRequest(
            "GET", f"/api/v1/runs/{run_id}/events?since_id=0", {**self._auth, "Accept": "text/event-stream"}
        )


class FloorTarget(NoukaiTarget):
    """A bare Starlette app on the same uvicorn settings that streams the same frames, pre-encoded:
    what streaming these events costs with no engine, store or bus (see `bench.floor`).

    It speaks Noukai's paths, so only the command line differs."""

    name = "floor"

    def command(self, workdir: Path, port: int) -> list[str]:
        return [sys.executable, "-m", "bench.floor", "--port", str(port), "--host", HOST]

    async def after_healthy(self) -> None:
        self._auth = {"Authorization": "Bearer floor"}


TARGETS: dict[str, type[Target]] = {"noukai": NoukaiTarget, "floor": FloorTarget}
