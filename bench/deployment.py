"""A scaled-out Noukai deployment on this machine: one API process (`noukai serve --no-workers`) and
any number of worker processes (`noukai worker`, none for the idle-stream benchmark), all on a fresh
PostgreSQL database of their own and the shared Redis (see `services`).

Each process starts with its open-file limit raised to the hard limit (`preexec_fn`): an API
process holding thousands of streams needs a descriptor per connection, and the soft limit is
often 1,024.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import services
from .sse_client import http_get_status

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
WORKER_STARTED = " started: "
"""What `noukai worker` logs once it claims runs (cli/worker.py)."""


def raise_nofile_limit() -> tuple[int, int]:
    """Raise this process's soft open-file limit to its hard limit; the (soft, hard) now in force."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def _child_limits() -> None:
    raise_nofile_limit()


def nofile_limit(pid: int) -> str:
    """The `Max open files` line of a process, as the kernel reports it."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return f"{soft} (hard {hard})"
    return "unknown"


@dataclass
class Process:
    role: str
    log: Path
    popen: subprocess.Popen[bytes]

    def log_tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.role}\n" + "\n".join(text.splitlines()[-lines:])


@dataclass
class ScaledDeployment:
    workers: int = 1
    worker_concurrency: int = 64
    flows_dir: Path = ROOT / "bench" / "flows"
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    database_url: str = ""
    api_key: str = ""
    processes: list[Process] = field(default_factory=list)
    _workdir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def api(self) -> Process:
        return self.processes[0]

    @property
    def worker_processes(self) -> list[Process]:
        return self.processes[1:]

    def _spawn(self, role: str, args: list[str]) -> Process:
        assert self._workdir is not None
        log = Path(self._workdir.name) / f"{role}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", "noukai_server", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env=self.env,
                preexec_fn=_child_limits,  # before exec: the server starts with the raised limit
            )
        process = Process(role, log, popen)
        self.processes.append(process)
        return process

    async def start(self, port: int, timeout: float = 60.0) -> None:
        """Create the database, start the API (which migrates it), then the workers; raises
        `services.ServiceUnavailable` when PostgreSQL or Redis is not there."""
        services.require_services()
        self._workdir = tempfile.TemporaryDirectory(prefix="bench-scaled-")
        workdir = Path(self._workdir.name)
        self.port = port
        self.env = self.env or {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.database_url = services.create_database()
        store = ["--database-url", self.database_url, "--redis-url", services.REDIS_URL]
        try:
            self._spawn(
                "api",
                [
                    "serve",
                    "--no-workers",
                    *store,
                    "--dev-key",
                    "--data-dir",
                    str(workdir / "api"),
                    "--flows",
                    str(self.flows_dir),
                    "--host",
                    HOST,
                    "--port",
                    str(port),
                ],
            )
            await self._until(self._healthy, timeout, "the API process is not healthy")
            self.api_key = (workdir / "api" / "dev-api-key").read_text().strip()
            for n in range(self.workers):
                self._spawn(
                    f"worker{n}" if self.workers > 1 else "worker",
                    [
                        "worker",
                        *store,
                        "--data-dir",
                        str(workdir / f"worker{n}"),
                        "--concurrency",
                        str(self.worker_concurrency),
                    ],
                )
            for worker in self.worker_processes:
                await self._until(_started(worker), timeout, f"{worker.role} did not start")
        except BaseException:
            await self.stop()
            raise

    async def _healthy(self) -> bool:
        try:
            return await http_get_status(HOST, self.port, "/api/v1/health") == 200
        except (OSError, ValueError, IndexError):
            return False

    async def _until(self, check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for process in self.processes:
                if process.popen.poll() is not None:
                    raise RuntimeError(f"{process.role} exited at start:\n{self.log_tails()}")
            if await check():
                return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"{what} after {timeout:.0f}s:\n{self.log_tails()}")

    def log_tails(self) -> str:
        return "\n".join(p.log_tail() for p in self.processes)

    async def stop(self) -> None:
        """SIGINT everything (the workers drain), wait, kill what lingers, drop the database."""
        for process in reversed(self.processes):
            if process.popen.poll() is None:
                process.popen.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 15.0
        for process in self.processes:
            while process.popen.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            if process.popen.poll() is None:
                process.popen.kill()
                process.popen.wait()
        self.processes = []
        if self.database_url:
            services.drop_database(self.database_url)
            self.database_url = ""
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None


def _started(worker: Process) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return WORKER_STARTED in (worker.log.read_text(errors="replace") if worker.log.exists() else "")

    return check
