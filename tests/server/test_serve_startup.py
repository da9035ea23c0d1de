"""How `noukai serve` starts: a taken port, a bad flow file, the versions."""

from __future__ import annotations

import http.client
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest

from tests.conftest import FIXTURE_FLOWS, REPO_ROOT, ServerProcess, _server_env, free_port
from tests.server.test_logging import Served, serve


@pytest.fixture
def served() -> Iterator[list[Served]]:
    started: list[Served] = []
    try:
        yield started
    finally:
        for one in started:
            one.stop()


def noukai(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "noukai_server", *args],
        env=_server_env(),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )


def test_a_taken_port_is_one_error_line_before_any_banner_or_key(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = noukai("serve", "--port", str(port), "--data-dir", str(tmp_path), "--dev-key")
    assert result.returncode == 1
    assert result.stdout == ""  # no banner, no dev key
    assert result.stderr.strip() == f"error: cannot listen on 127.0.0.1:{port}: address already in use"
    assert not (tmp_path / "dev-api-key").exists()


def test_port_zero_serves_on_the_port_it_got(tmp_path: Path) -> None:
    """`serve` binds the socket itself and hands it to uvicorn: the banner names the bound port."""
    command = [sys.executable, "-m", "noukai_server", "serve", "--port", "0", "--data-dir", str(tmp_path)]
    process = subprocess.Popen(
        command, env=_server_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=REPO_ROOT
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline().decode()
        match = re.search(r"serving on http://127\.0\.0\.1:(\d+) ", first)
        assert match is not None, first
        port = int(match.group(1))
        assert port != 0
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=0.5)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert health.status_code == 200
    finally:
        process.terminate()
        process.communicate(timeout=15)


def test_a_bad_flow_file_is_reported_and_the_others_load(tmp_path: Path, served: list[Served]) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    shutil.copy(FIXTURE_FLOWS / "echo.yaml", flows / "echo.yaml")
    (flows / "bad.yaml").write_text("slug: bad\nsteps: []\n")
    (flows / "worse.json").write_bytes(b"\xff\xfe not text")
    (flows / "unknown-provider.yaml").write_text(
        "slug: up\nsteps:\n  - {id: a, type: llm, model: 'mistral:large', prompt: hi}\n"
    )
    server = serve(tmp_path / "data", "--flows", str(flows))
    served.append(server)
    answer = httpx.post(
        f"{server.api_url}/seq/dev/main/echo/execute",
        json={"message": "still here"},
        headers={"Authorization": f"Bearer {server.dev_key}"},
    )
    assert answer.json()["result"] == "still here"
    banner = server.banner()
    assert "skipped 3 flow file(s)" in banner
    assert "  unknown-provider.yaml: " in banner and "'mistral'" in banner
    assert "  bad.yaml: line 2: field 'steps': the flow has no steps" in banner
    assert "  worse.json: " in banner
    warnings = [line for line in server.log().splitlines() if " WARNING " in line]
    assert any(str(flows / "bad.yaml") in line and "no steps" in line for line in warnings), warnings
    assert any(str(flows / "worse.json") in line for line in warnings), warnings


def test_flows_that_is_not_a_folder_stops_the_server(tmp_path: Path) -> None:
    port = free_port()
    result = noukai(
        "serve", "--port", str(port), "--data-dir", str(tmp_path), "--flows", str(tmp_path / "no")
    )
    assert result.returncode == 1
    assert "is not a folder" in result.stderr
    assert result.stdout == ""


def test_version_option_names_the_server_and_the_sdk() -> None:
    result = noukai("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"noukai-server {version('noukai-server')}",
        f"noukai (SDK) {version('noukai')}",
    ]


def test_an_idle_connection_outlives_the_clients_keep_alive(server: ServerProcess) -> None:
    """A connection left idle for longer than httpx keeps one (5 s) is still served, on the same
    socket: the server keeps idle connections longer than its clients do, so it never closes one
    under a request."""
    url = httpx.URL(server.api_url)
    connection = http.client.HTTPConnection(url.host, url.port, timeout=10)
    try:
        connection.request("GET", "/api/v1/health")
        assert connection.getresponse().read() and connection.sock is not None
        first = connection.sock
        time.sleep(6)  # past httpx's keepalive_expiry and uvicorn's default timeout_keep_alive
        connection.request("GET", "/api/v1/health")
        answer = connection.getresponse()
        assert answer.status == 200 and answer.read()
        assert connection.sock is first  # not a new connection behind the test's back
    finally:
        connection.close()
