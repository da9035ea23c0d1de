"""The server's log (stderr): levels, text and JSON lines, request and run ids, and no secrets."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from starlette.types import Receive, Scope, Send

from noukai_server.api.request_id import RequestIdMiddleware
from noukai_server.logs import ContextFilter, JsonFormatter
from tests.conftest import FIXTURE_FLOWS, REPO_ROOT, _server_env, free_port
from tests.fakeprovider import FakeProvider, Reply


@dataclass
class Served:
    """A `noukai serve` whose banner (stdout) and log (stderr) are kept apart."""

    process: subprocess.Popen[bytes]
    port: int
    data_dir: Path

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    @property
    def dev_key(self) -> str:
        return (self.data_dir / "dev-api-key").read_text().strip()

    def log(self) -> str:
        return (self.data_dir / "stderr.txt").read_text(errors="replace")

    def banner(self) -> str:
        return (self.data_dir / "stdout.txt").read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def serve(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> Served:
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [sys.executable, "-m", "noukai_server", "serve", "--port", str(port)]
    command += ["--data-dir", str(data_dir), "--flows", str(FIXTURE_FLOWS), "--dev-key", *args]
    with open(data_dir / "stdout.txt", "wb") as out, open(data_dir / "stderr.txt", "wb") as err:
        process = subprocess.Popen(
            command, env={**_server_env(), **(env or {})}, stdout=out, stderr=err, cwd=REPO_ROOT
        )
    served = Served(process, port, data_dir)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{served.log()}")
        try:
            if httpx.get(f"{served.api_url}/health", timeout=0.5).status_code == 200:
                return served
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    served.stop()
    raise RuntimeError(f"server did not start:\n{served.log()}")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[list[Served]]:
    started: list[Served] = []
    try:
        yield started
    finally:
        for one in started:
            one.stop()


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of the log, each of which must be one JSON object."""
    lines = [orjson.loads(line) for line in text.splitlines() if line.strip()]
    assert all(isinstance(line, dict) for line in lines)
    return lines


def execute(server: Served, slug: str, message: str, key: str | None = None) -> httpx.Response:
    return httpx.post(
        f"{server.api_url}/seq/dev/main/{slug}/execute",
        json={"message": message},
        headers={"Authorization": f"Bearer {key or server.dev_key}"},
        timeout=30,
    )


def wait_for(predicate: Any, server: Served) -> None:
    """Lines are written as things happen: wait (briefly) for the one a test looks for."""
    deadline = time.monotonic() + 5
    while not predicate(server.log()):
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)


def test_json_lines_carry_the_request_id_and_the_run_id(tmp_path: Path, served: list[Served]) -> None:
    server = serve(tmp_path / "data", "--log-format", "json")
    served.append(server)
    answer = execute(server, "echo", "hello")
    assert answer.status_code == 200
    request_id = answer.headers["x-request-id"]
    run_id = answer.json()["executionId"]
    wait_for(lambda log: '"path":"/api/v1/seq/dev/main/echo/execute"' in log, server)
    lines = json_lines(server.log())
    for line in lines:
        assert {"time", "level", "logger", "message"} <= set(line)

    access = [
        line
        for line in lines
        if line["logger"] == "noukai_server.access" and line.get("request_id") == request_id
    ]
    assert len(access) == 1
    assert access[0]["method"] == "POST"
    assert access[0]["path"] == "/api/v1/seq/dev/main/echo/execute"
    assert access[0]["status"] == 200
    assert isinstance(access[0]["duration_ms"], float)
    assert access[0]["level"] == "info"

    of_run = [line for line in lines if line.get("run_id") == run_id]
    messages = " | ".join(line["message"] for line in of_run)
    assert "started" in messages and "completed" in messages, messages
    # The run was handed to the worker by this request: its lines carry both ids.
    assert all(line.get("request_id") == request_id for line in of_run)


def test_text_lines_and_levels(tmp_path: Path, served: list[Served]) -> None:
    server = serve(tmp_path / "info")
    served.append(server)
    answer = httpx.get(f"{server.api_url}/no-such-thing")
    assert answer.status_code == 404
    request_id = answer.headers["x-request-id"]
    wait_for(lambda log: request_id in log, server)
    line = next(line for line in server.log().splitlines() if request_id in line)
    assert " INFO noukai_server.access: GET /api/v1/no-such-thing 404 " in line
    assert f"request_id={request_id}" in line

    quiet = serve(tmp_path / "warning", "--log-level", "warning")
    served.append(quiet)
    assert execute(quiet, "echo", "hi").status_code == 200
    quiet.stop()
    assert "noukai_server.access" not in quiet.log()
    assert " INFO " not in quiet.log()


def test_the_level_and_format_come_from_the_environment(tmp_path: Path, served: list[Served]) -> None:
    server = serve(tmp_path / "data", env={"NOUKAI_LOG_FORMAT": "JSON", "NOUKAI_LOG_LEVEL": "warning"})
    served.append(server)
    assert execute(server, "echo", "hi").status_code == 200
    assert httpx.get(f"{server.api_url}/nope").status_code == 404
    server.stop()
    lines = json_lines(server.log())
    assert all(line["level"] in ("warning", "error") for line in lines)


@pytest.mark.parametrize(
    ("env", "needles"),
    [
        ({"NOUKAI_LOG_LEVEL": "loud"}, ["NOUKAI_LOG_LEVEL", "'loud'", "debug, info, warning, error"]),
        ({"NOUKAI_LOG_FORMAT": "xml"}, ["NOUKAI_LOG_FORMAT", "'xml'", "text, json"]),
    ],
)
def test_a_bad_log_setting_in_the_environment_is_one_clear_error(
    tmp_path: Path, env: dict[str, str], needles: list[str]
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "noukai_server", "serve", "--port", "0", "--data-dir", str(tmp_path)],
        env={**_server_env(), **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 1
    error = result.stderr.strip()
    assert error.startswith("error: ") and "\n" not in error, error
    for needle in needles:
        assert needle in error
    assert result.stdout == ""  # no banner, no key


def test_a_bad_log_option_is_refused(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "noukai_server", "serve", "--log-level", "loud", "--data-dir", str(tmp_path)],
        env={**_server_env(), "COLUMNS": "200"},  # typer draws the error in a box: no wrapping
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 2
    assert "--log-level" in result.stderr and "debug, info, warning, error" in result.stderr


def test_no_secret_reaches_the_log(tmp_path: Path, served: list[Served]) -> None:
    """The dev key, a wrong key, a key in a query string and the provider key: none in the log,
    even at debug level; a provider failure is logged (without its key)."""
    provider_key = f"sk-provider-{uuid.uuid4().hex}"
    with FakeProvider(api_key=provider_key) as fake:
        server = serve(
            tmp_path / "data",
            "--log-level",
            "debug",
            "--log-format",
            "json",
            env={"OPENAI_BASE_URL": fake.openai_base_url, "OPENAI_API_KEY": provider_key},
        )
        served.append(server)
        key = server.dev_key
        wrong = f"nk_000000000000_{uuid.uuid4().hex}"
        pasted = f"pasted{uuid.uuid4().hex}"
        assert execute(server, "echo", "hello").status_code == 200
        assert execute(server, "echo", "hello", key=wrong).status_code == 401
        assert httpx.get(f"{server.api_url}/health?api_key={key}&token={pasted}&{key}").status_code == 200
        flow = {
            "slug": "ask",
            "steps": [{"id": "ask", "type": "llm", "model": "openai:gpt-4o-mini", "prompt": "{{ message }}"}],
        }
        headers = {"Authorization": f"Bearer {key}"}
        httpx.put(f"{server.api_url}/flows/dev/main/ask", json=flow, headers=headers).raise_for_status()
        fake.script(Reply(status=400, error_message=f"model refused for key {provider_key}"))
        failed = execute(server, "ask", "hello")
        detail = failed.json()["detail"]
        assert detail["code"] == "PROVIDER_BAD_REQUEST", detail
        run_id = detail["executionId"]
        wait_for(lambda log: "PROVIDER_BAD_REQUEST" in log, server)
        server.stop()
    log = server.log()
    assert key in server.banner()  # the banner (stdout) shows it on purpose; the log does not
    for secret in (key, key.split("_")[-1], wrong, pasted, provider_key):
        assert secret not in log
    assert "api_key=*&token=*&*" in log
    provider = [line for line in json_lines(log) if "PROVIDER_BAD_REQUEST" in line["message"]]
    warning = [line for line in provider if line["level"] == "warning"]
    assert len(warning) == 1 and warning[0]["run_id"] == run_id
    assert "step ask" in warning[0]["message"]


class Capture(logging.Handler):
    """Formats records as the JSON log does, with the context filter the log's handler has."""

    def __init__(self) -> None:
        super().__init__()
        self.addFilter(ContextFilter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(orjson.loads(JsonFormatter().format(record)))


def test_an_internal_error_is_logged_with_its_traceback_and_request_id() -> None:
    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("the handler broke")

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=RequestIdMiddleware(broken))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/api/v1/x?token=secret-value")

    capture = Capture()
    parent = logging.getLogger("noukai_server")
    parent.addHandler(capture)
    level = parent.level
    parent.setLevel(logging.INFO)
    try:
        answer = asyncio.run(call())
    finally:
        parent.removeHandler(capture)
        parent.setLevel(level)
    assert answer.status_code == 500
    request_id = answer.headers["x-request-id"]
    assert all(line["request_id"] == request_id for line in capture.lines)
    errors = [line for line in capture.lines if line["level"] == "error"]
    assert len(errors) == 1
    assert "Traceback" in errors[0]["exc"] and "RuntimeError: the handler broke" in errors[0]["exc"]
    access = [line for line in capture.lines if line["logger"] == "noukai_server.access"]
    assert len(access) == 1
    assert access[0]["status"] == 500 and access[0]["path"] == "/api/v1/x?token=*"
    assert "secret-value" not in orjson.dumps(capture.lines).decode()
