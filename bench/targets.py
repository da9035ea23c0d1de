"""What is benchmarked: a `Target` starts and stops one server, and knows how to start a streamed run
of a `Workload` on it and read that run's events.

A streamed run can be read two ways (`Mode`):
- `step`: the request that starts the run streams it to the end (Noukai's `/step`);
- `native`: the run is started by one request, which is closed after its first event (the run goes
  on), and its events are then read from the target's own resumable stream from the beginning
  (Noukai's `GET /runs/{id}/events?since_id=0`).

A target subclasses `Target`, and maps a `Workload` to its own requests in `run_request` /
`events_request`; the load generator needs nothing else. A target whose two modes start runs
differently, or whose run's stream cannot be named by the run id alone, overrides `start_request` /
`follow_request` instead (LangGraph's dev server, `LangGraphTarget`).
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
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from . import services
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

    def server_cwd(self, workdir: Path) -> Path:
        """The server's working directory."""
        return BENCH_DIR.parent

    def server_env(self, workdir: Path) -> Mapping[str, str]:
        """The server's environment."""
        return {**os.environ, "PYTHONUNBUFFERED": "1"}

    @property
    def pid(self) -> int:
        assert self._process is not None, "not started"
        return self._process.pid

    server_roles: tuple[str, ...] = ("server",)
    """The roles of `processes()` that are the target's own server: their CPU and RSS are summed
    into the server columns. Other roles (a database, a broker) are measured and shown apart."""

    def processes(self) -> dict[str, list[int]]:
        """The processes to measure, by role, each pid counted with its live descendants."""
        return {"server": [self.pid]}

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
                cwd=self.server_cwd(self.workdir),
                env=self.server_env(self.workdir),
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

    def start_request(self, workload: Workload, mode: Mode) -> HttpRequest:
        """The request that starts a run of `workload` read in `mode`: `run_request` for both modes
        unless a target says otherwise."""
        return self.run_request(workload)

    def follow_request(self, start: HttpRequest, first: SseEvent) -> HttpRequest:
        """For `native`: the stream of the run that `start` started, whose first event was `first`."""
        return self.events_request(self.run_id(first))

    terminal_events: frozenset[str] = frozenset()
    failure_events: frozenset[str] = frozenset()
    token_event = "step_output"
    terminal_on_close = False
    """True for a server that sends nothing at a stream's end: then a clean end of the response,
    after at least one event, is the terminal event (`sse_client.CLOSE`)."""


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
            "noukai_server",
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

    def run_times(self, run_id: str) -> services.RunTimes:
        """When a run was created, started and each of its events emitted (see `bench.lag`)."""
        return services.sqlite_run_times(self.workdir / "data" / "noukai.db", run_id)


class FloorTarget(NoukaiTarget):
    """A bare Starlette app on the same uvicorn settings that streams the same frames, pre-encoded:
    what streaming these events costs with no engine, store or bus (see `bench.floor`).

    It speaks Noukai's paths, so only the command line differs."""

    name = "floor"

    def command(self, workdir: Path, port: int) -> list[str]:
        return [sys.executable, "-m", "bench.floor", "--port", str(port), "--host", HOST]

    async def after_healthy(self) -> None:
        self._auth = {"Authorization": "Bearer floor"}


LANGGRAPH_DIR = BENCH_DIR / "langgraph"
"""LangGraph's side: its own uv project (`uv sync --frozen --project bench/langgraph`), the graphs
(`bench_graphs.py`) and `langgraph.json`."""
LANGGRAPH_GRAPHS = {"bench-3step": "three_steps", "bench-long": "long"}
"""Noukai's bench flow -> the LangGraph graph that does the same work."""

# The dev server, left to itself, reaches the network: `langgraph dev` reports the command to the
# CLI's analytics, langgraph-api looks its newest release up on the package index, and a LangSmith
# key (or tracing) turns on traces, the Studio organisation look-up and the metadata loop. All off:
LANGGRAPH_OFFLINE_ENV = {
    "LANGGRAPH_CLI_NO_ANALYTICS": "1",
    "LANGGRAPH_NO_VERSION_CHECK": "true",
    "LANGSMITH_TRACING": "false",
    "LANGCHAIN_TRACING_V2": "false",
    "LANGCHAIN_TRACING": "false",
}
LANGGRAPH_UNSET_ENV = (
    "LANGSMITH_API_KEY",
    "LANGCHAIN_API_KEY",
    "LANGSMITH_CONTROL_PLANE_API_KEY",
    "LANGGRAPH_CLOUD_LICENSE_KEY",
    "LANGSMITH_ENDPOINT",
    "LANGCHAIN_ENDPOINT",
    "VIRTUAL_ENV",
    "PYTHONPATH",
)


class LangGraphTarget(Target):
    """LangGraph's in-memory dev server (`langgraph dev`, from langgraph-cli[inmem]) running the graphs
    of `bench/langgraph/bench_graphs.py`, as it comes (its file persistence and blocking-call checks
    on), but offline and without reloading or a browser.

    - `step`: `POST /runs/stream`, a stateless run streamed to its end (nothing kept afterwards:
      LangGraph's cheapest way to stream a run).
    - `native`: `POST /threads/{new id}/runs/stream` with `if_not_exists: create` and
      `stream_resumable: true`, closed after its first event (`metadata`, with the run id; the run
      goes on), then `GET /threads/{id}/runs/{run id}/stream` with `Last-Event-ID: -1`, which replays
      the stored events from the first (the ids are "<ms>-<n>", compared as strings) and follows on.

    The streams use `stream_mode: ["messages-tuple", "updates"]`: one `messages` event per streamed
    word, one `updates` event per node. They say nothing at the end (the server closes), so a clean
    end of the response is the terminal event; an `error` event is a failure.

    The first event comes when a worker takes the run up, and the in-memory runtime's queue looks for
    pending runs every 0.5 s when idle, taking only runs created before it looked (langgraph-runtime-
    inmem's `Runs.next`): a run started on an idle server waits 0.5 to 1 s for its first event.
    """

    name = "langgraph"
    health_path = "/ok"
    token_event = "messages"
    terminal_events = frozenset({"error"})
    failure_events = frozenset({"error"})
    terminal_on_close = True
    stream_mode = ("messages-tuple", "updates")
    jobs_per_worker = 10

    def command(self, workdir: Path, port: int) -> list[str]:
        langgraph = LANGGRAPH_DIR / ".venv" / "bin" / "langgraph"
        if not langgraph.exists():
            raise RuntimeError(
                f"{langgraph} is missing: run `uv sync --frozen --project bench/langgraph` (make bench does)"
            )
        return [
            str(langgraph),
            "dev",
            "--host",
            HOST,
            "--port",
            str(port),
            "--no-browser",
            "--no-reload",
            "--n-jobs-per-worker",
            str(self.jobs_per_worker),
            "--config",
            str(LANGGRAPH_DIR / "langgraph.json"),
        ]

    def server_cwd(self, workdir: Path) -> Path:
        # The dev server keeps its state in ./.langgraph_api: the throw-away workdir, not the repo.
        return workdir

    def server_env(self, workdir: Path) -> Mapping[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in LANGGRAPH_UNSET_ENV}
        # The graphs are named as a module ("bench_graphs:three_steps"), found on PYTHONPATH.
        return {**env, **LANGGRAPH_OFFLINE_ENV, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(LANGGRAPH_DIR)}

    def _body(self, workload: Workload, **extra: object) -> bytes:
        return json.dumps(
            {
                "assistant_id": LANGGRAPH_GRAPHS[workload.flow],
                "input": {"message": workload.message},
                "stream_mode": list(self.stream_mode),
                **extra,
            }
        ).encode()

    _HEADERS = {"Content-Type": "application/json", "Accept": "text/event-stream"}

    def run_request(self, workload: Workload) -> HttpRequest:
        return HttpRequest("POST", "/runs/stream", self._HEADERS, self._body(workload))

    def start_request(self, workload: Workload, mode: Mode) -> HttpRequest:
        if mode == "step":
            return self.run_request(workload)
        body = self._body(workload, if_not_exists="create", stream_resumable=True)
        return HttpRequest("POST", f"/threads/{uuid.uuid4()}/runs/stream", self._HEADERS, body)

    def run_id(self, first: SseEvent) -> str:
        return str(json.loads(first.data)["run_id"])

    def follow_request(self, start: HttpRequest, first: SseEvent) -> HttpRequest:
        thread_id = start.path.removeprefix("/threads/").removesuffix("/runs/stream")
        return self.events_request(f"{thread_id}/{self.run_id(first)}")

    def events_request(self, run_id: str) -> HttpRequest:
        """`run_id` is "THREAD_ID/RUN_ID": LangGraph names a run's stream by both."""
        thread_id, _, run = run_id.partition("/")
        return HttpRequest(
            "GET",
            f"/threads/{thread_id}/runs/{run}/stream",
            {"Accept": "text/event-stream", "Last-Event-ID": "-1"},
        )


TARGETS: dict[str, type[Target]] = {
    "noukai": NoukaiTarget,
    "langgraph": LangGraphTarget,
    "floor": FloorTarget,
}
