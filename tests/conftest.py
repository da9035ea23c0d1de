"""Shared fixtures: a real `noukai serve` process on a loopback port with a real SQLite file."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

FIXTURE_FLOWS = Path(__file__).parent / "fixtures" / "flows"
REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """A `noukai serve` child process and what a test needs to talk to it."""

    port: int
    data_dir: Path
    env: dict[str, str]
    extra_args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    dev_key: str = ""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/v1"

    def start(self, timeout: float = 30.0) -> None:
        # The child gets its own copy of the descriptor; ours is closed as soon as it has started.
        with open(self.data_dir / "server.log", "ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "noukai_server",
                    "serve",
                    "--port",
                    str(self.port),
                    "--data-dir",
                    str(self.data_dir),
                    "--flows",
                    str(FIXTURE_FLOWS),
                    "--dev-key",
                    *self.extra_args,
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_text()}")
            try:
                if httpx.get(f"{self.api_url}/health", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        else:
            raise RuntimeError(f"server did not start:\n{self.log_text()}")
        self.dev_key = (self.data_dir / "dev-api-key").read_text().strip()

    def stop(self, *, kill: bool = False) -> None:
        if self.process is None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self, *, kill: bool = False) -> None:
        self.stop(kill=kill)
        self.start()

    def log_text(self) -> str:
        path = self.data_dir / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "noukai_server", *args, "--data-dir", str(self.data_dir)],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO_ROOT,
        )
        return result.stdout

    def create_key(self, org: str, project: str | None = None) -> str:
        args = ["keys", "create", "--org", org] + (["--project", project] if project else [])
        return self.cli(*args).strip()

    def put_flow(
        self, key: str, org: str, project: str, document: dict[str, Any], *, publish: bool = False
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {key}"}
        slug = document["slug"]
        url = f"{self.api_url}/flows/{org}/{project}/{slug}"
        response = httpx.put(url, json=document, headers=headers)
        response.raise_for_status()
        if publish:
            httpx.post(f"{url}/publish", headers=headers).raise_for_status()
        body: dict[str, Any] = response.json()
        return body


def _server_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOUKAI_", "OPENAI_", "ANTHROPIC_"))}
    env["NO_PROXY"] = "127.0.0.1,localhost"
    return env


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the session, with the fixture flows loaded into dev/main."""
    proc = ServerProcess(free_port(), tmp_path_factory.mktemp("server"), _server_env())
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
        if os.environ.get("NOUKAI_KEEP_TEST_DATA") is None:
            shutil.rmtree(proc.data_dir, ignore_errors=True)


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Any]:
    """Start servers of the test's own (for restarts, kills and configuration)."""
    started: list[ServerProcess] = []

    def make(env: dict[str, str] | None = None, extra_args: tuple[str, ...] = ()) -> ServerProcess:
        data_dir = tmp_path / f"data{len(started)}"
        data_dir.mkdir()
        proc = ServerProcess(free_port(), data_dir, {**_server_env(), **(env or {})}, extra_args)
        started.append(proc)
        proc.start()
        return proc

    try:
        yield make
    finally:
        for proc in started:
            proc.stop()
