"""An operator's project through a real `noukai serve --config`: its function, its tool and a
named OpenAI-compatible provider (the official openai SDK against the fake provider), whose key
comes from an environment variable and appears nowhere else; and the `config` and `init` commands."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO_ROOT, _server_env, free_port
from tests.fakeprovider import FakeProvider, FakeToolCall, Reply

OPERATOR = REPO_ROOT / "tests" / "fixtures" / "operator_project"
SECRET = "sk-operator-secret-7Q2"


@dataclass
class Serving:
    process: subprocess.Popen[bytes]
    api_url: str
    workdir: Path
    """Holds the banner (stdout.txt) and the log (stderr.txt)."""
    data_dir: Path

    @property
    def dev_key(self) -> str:
        return (self.data_dir / "dev-api-key").read_text().strip()

    def output(self) -> str:
        out = (self.workdir / "stdout.txt").read_text(errors="replace")
        return out + (self.workdir / "stderr.txt").read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(
    workdir: Path, env: dict[str, str], *args: str, cwd: Path = REPO_ROOT, data_dir: Path | None = None
) -> Serving:
    """`noukai serve ARGS` with its banner and log in workdir; `data_dir` where the ARGS or the
    config put it (default workdir/data)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [sys.executable, "-m", "noukai_server", "serve", "--port", str(port), *args]
    with open(workdir / "stdout.txt", "wb") as out, open(workdir / "stderr.txt", "wb") as err:
        process = subprocess.Popen(command, env={**_server_env(), **env}, stdout=out, stderr=err, cwd=cwd)
    serving = Serving(process, f"http://127.0.0.1:{port}/api/v1", workdir, data_dir or workdir / "data")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{serving.output()}")
        try:
            if httpx.get(f"{serving.api_url}/health", timeout=0.5).status_code == 200:
                return serving
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    serving.stop()
    raise RuntimeError(f"server did not start:\n{serving.output()}")


def noukai(
    *args: str, env: dict[str, str] | None = None, cwd: Path = REPO_ROOT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "noukai_server", *args],
        env={**_server_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    with FakeProvider(api_key=SECRET) as provider:
        yield provider


def operator_env(fake: FakeProvider) -> dict[str, str]:
    return {"FAKE_OPENAI_BASE_URL": fake.openai_base_url, "FAKEAI_TEAM": "blue", "FAKEAI_KEY": SECRET}


@pytest.fixture
def operator_server(tmp_path: Path, fake: FakeProvider) -> Iterator[Serving]:
    # From the repository root, not the project's folder: the config's folder is importable anyway.
    config = str(OPERATOR / "noukai.toml")
    serving = start(tmp_path, operator_env(fake), "--config", config, "--data-dir", str(tmp_path / "data"))
    try:
        yield serving
    finally:
        serving.stop()


def execute(serving: Serving, slug: str, message: str) -> dict[str, Any]:
    response = httpx.post(
        f"{serving.api_url}/seq/dev/main/{slug}/execute",
        json={"message": message},
        headers={"Authorization": f"Bearer {serving.dev_key}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_the_operator_function_provider_and_tool_run_a_flow(
    operator_server: Serving, fake: FakeProvider
) -> None:
    fake.requests.clear()
    fake.script(
        Reply.text("A sturdy widget.", usage=(100, 20)),
        Reply(tool_calls=[FakeToolCall("stock_level", {"sku": "ABC-1"})]),
        Reply.text("7 in stock."),
    )
    body = execute(operator_server, "operator", "abc 1")
    assert body["result"] == "7 in stock."
    describe, call, answer = fake.requests
    assert describe.body["model"] == "gpt-test"
    assert "Describe ABC-1 in one line." in json.dumps(describe.body)  # the python step's output
    assert describe.headers["authorization"] == f"Bearer {SECRET}"
    assert (describe.headers["x-team"], describe.headers["x-client"]) == ("blue", "noukai-tests")
    assert "openai" in describe.headers["user-agent"].lower()  # the official SDK underneath
    [tool] = call.body["tools"]
    assert tool["function"]["name"] == "stock_level"
    assert tool["function"]["description"] == "How many items of a SKU are in stock."
    tool_message = next(m for m in answer.body["messages"] if m["role"] == "tool")
    assert json.loads(tool_message["content"]) == {"sku": "ABC-1", "in_stock": 7}

    headers = {"Authorization": f"Bearer {operator_server.dev_key}"}
    run = f"{operator_server.api_url}/seq/dev/main/operator/runs/{body['executionId']}"
    trace = httpx.get(f"{run}/trace", headers=headers).text
    # 100 prompt and 20 completion tokens at 1.5 and 6 USD per million, from the config.
    assert '"costUsd":"0.000270"' in trace.replace(" ", "")
    for step in ("normalise", "describe", "stock"):
        trace += httpx.get(f"{run}/steps/{step}/trace", headers=headers).text
    log = operator_server.output()
    assert " DEBUG " in log  # [logging] level = "debug" from the file
    assert SECRET not in log
    assert SECRET not in trace


def test_a_rejected_named_provider_key_never_shows(tmp_path: Path, fake: FakeProvider) -> None:
    env = {**operator_env(fake), "FAKEAI_KEY": "sk-wrong-key-Z9"}
    serving = start(
        tmp_path, env, "--config", str(OPERATOR / "noukai.toml"), "--data-dir", str(tmp_path / "data")
    )
    try:
        response = httpx.post(
            f"{serving.api_url}/seq/dev/main/operator/execute",
            json={"message": "abc 1"},
            headers={"Authorization": f"Bearer {serving.dev_key}"},
            timeout=30,
        )
    finally:
        serving.stop()
    assert response.json()["detail"]["code"] == "BYOK_KEY_REJECTED", response.text
    assert "sk-wrong-key-Z9" not in response.text
    assert "sk-wrong-key-Z9" not in serving.output()


def test_a_missing_key_variable_stops_serve_naming_provider_and_variable(
    tmp_path: Path, fake: FakeProvider
) -> None:
    env = {k: v for k, v in operator_env(fake).items() if k != "FAKEAI_KEY"}
    result = noukai("serve", "--config", str(OPERATOR / "noukai.toml"), "--data-dir", str(tmp_path), env=env)
    assert result.returncode == 1
    error = result.stderr.strip()
    assert error.startswith("error: ") and "\n" not in error
    assert "provider 'fakeai'" in error and "FAKEAI_KEY" in error and "noukai.toml:19" in error
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"NOUKAI_HEARTBEAT_SECONDS": "15s"}, "NOUKAI_HEARTBEAT_SECONDS='15s' is not allowed"),
        ({"NOUKAI_HEARTBEAT_SECONDS": "-1"}, "NOUKAI_HEARTBEAT_SECONDS='-1' is not allowed"),
        ({"NOUKAI_WORKER_CONCURRENCY": "0"}, "NOUKAI_WORKER_CONCURRENCY='0' is not allowed"),
    ],
)
def test_serve_refuses_a_bad_environment_variable(tmp_path: Path, env: dict[str, str], needle: str) -> None:
    result = noukai("serve", "--port", "0", "--data-dir", str(tmp_path), env=env)
    assert result.returncode == 1
    assert needle in result.stderr and result.stdout == ""


def test_config_check(tmp_path: Path, fake: FakeProvider) -> None:
    ok = noukai("config", "check", "--config", str(OPERATOR / "noukai.toml"), env=operator_env(fake))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(
        f"ok: {OPERATOR / 'noukai.toml'}: 1 named provider(s), 1 function(s), 1 tool(s)"
    )
    bad = tmp_path / "noukai.toml"
    bad.write_text("[workers]\nconcurrency = 0\n")
    refused = noukai("config", "check", cwd=tmp_path)  # ./noukai.toml
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        f"error: {bad}:2: [workers] concurrency = 0 is not allowed: expected an integer >= 1"
    )


def test_config_show_masks_secrets_and_never_shows_keys(tmp_path: Path, fake: FakeProvider) -> None:
    env = {
        **operator_env(fake),
        "NOUKAI_DATABASE_URL": "postgresql+psycopg://app:db-pass-123@db.internal/noukai",
        "NOUKAI_REDIS_URL": "redis://:redis-pass-456@cache:6379/0",
        "OPENAI_API_KEY": "sk-openai-should-not-show",
    }
    config = str(OPERATOR / "noukai.toml")
    text = noukai("config", "show", "--config", config, env=env)
    assert text.returncode == 0, text.stderr
    as_json = noukai("config", "show", "--json", "--config", config, env=env)
    for output in (text.stdout, as_json.stdout):
        for secret in (SECRET, "db-pass-123", "redis-pass-456", "sk-openai-should-not-show"):
            assert secret not in output
    assert (
        'database_url = "postgresql+psycopg://app:***@db.internal/noukai"  # environment NOUKAI_DATABASE_URL'
        in text.stdout
    )
    assert "[providers.fakeai]  # key: FAKEAI_KEY (set)" in text.stdout
    data = json.loads(as_json.stdout)
    assert data["settings"]["bus"]["redis_url"]["value"] == "redis://:***@cache:6379/0"
    assert data["settings"]["logging"]["level"] == {"value": "debug", "source": f"{config}:14"}
    fakeai = data["providers"]["fakeai"]
    assert (fakeai["api_key_env"], fakeai["api_key_set"]) == ("FAKEAI_KEY", True)
    assert fakeai["headers"]["X-Team"] == "${FAKEAI_TEAM}"  # as written, never the value
    assert data["providers"]["openai"] == {
        "kind": "built-in",
        "api_key_env": "OPENAI_API_KEY",
        "api_key_set": True,
    }
    assert data["tools"] == {"stock_level": "operator_tools:stock_level"}


def test_init_writes_a_project_that_serves_as_is(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    made = noukai("init", str(project))
    assert made.returncode == 0, made.stderr
    assert sorted(p.relative_to(project).as_posix() for p in project.rglob("*") if p.is_file()) == [
        "flows/hello.yaml",
        "noukai.toml",
        "project_tools.py",
    ]
    checked = noukai("config", "check", cwd=project)
    assert checked.returncode == 0 and checked.stdout.startswith(f"ok: {project.resolve() / 'noukai.toml'}: ")
    again = noukai("init", str(project))
    assert again.returncode == 1 and "never overwrites" in again.stderr
    assert "noukai.toml" in again.stderr

    # ./noukai.toml, as is
    serving = start(tmp_path / "run", {}, "--dev-key", cwd=project, data_dir=project / ".noukai")
    try:
        body = execute(serving, "hello", "Hello, France!")
        trace = httpx.get(
            f"{serving.api_url}/seq/dev/main/hello/runs/{body['executionId']}/steps/slug/trace",
            headers={"Authorization": f"Bearer {serving.dev_key}"},
        ).json()
    finally:
        serving.stop()
    # builtin:test calls the project's tool with made-up arguments; the function slugified the message.
    assert body["result"] == "tool results: capital_of=no capital known for 'a'"
    assert "hello-france" in json.dumps(trace["outputContext"]), trace


def wait_for(check: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_serve_reload_saves_changed_flow_files_and_skips_bad_ones(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    assert noukai("init", str(project)).returncode == 0
    serving = start(tmp_path / "run", {}, "--dev-key", "--reload", cwd=project, data_dir=project / ".noukai")
    headers = {"Authorization": f"Bearer {serving.dev_key}"}

    def draft(slug: str) -> dict[str, Any] | None:
        response = httpx.get(f"{serving.api_url}/flows/dev/main/{slug}", headers=headers)
        return response.json() if response.status_code == 200 else None

    try:
        assert draft("hello") is not None
        wait_for(lambda: "watching" in serving.output())
        shout = (
            "slug: shout\nsteps:\n"
            "  - {id: up, type: python, function: text.upper, args: {text: '{{ message }}'}}\n"
        )

        def saved() -> dict[str, Any] | None:
            # The watcher thread logs "watching" just before it subscribes to the folder: a write
            # in between goes unseen, so the file is written again until a save shows it.
            (project / "flows" / "shout.yaml").write_text(shout)
            return draft("shout")

        assert wait_for(saved)
        (project / "flows" / "broken.yaml").write_text("slug: broken\nsteps: []\n")
        wait_for(lambda: "skipped flow file" in serving.output())
        hello = project / "flows" / "hello.yaml"
        hello.write_text(hello.read_text().replace("name: A python step", "name: Renamed, a python step"))
        renamed = wait_for(lambda: (d := draft("hello")) and d["name"].startswith("Renamed") and d)
        assert renamed["draftRevision"] == 2
        assert execute(serving, "shout", "hi there")["result"] == "HI THERE"
    finally:
        serving.stop()
    log = serving.output()
    assert "watching" in log and "flow file" in log and "changed" in log
    assert "broken.yaml" in log and "the flow has no steps" in log


def test_serve_reload_needs_a_flow_folder(tmp_path: Path) -> None:
    result = noukai("serve", "--reload", "--port", "0", "--data-dir", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip() == (
        "error: --reload watches the flow folders, and none is configured (--flows or [flows] dirs)"
    )


def test_a_flow_folder_from_the_file_that_does_not_exist_stops_serve(tmp_path: Path) -> None:
    (tmp_path / "noukai.toml").write_text('[flows]\ndirs = ["missing"]\n')
    result = noukai("serve", "--port", "0", "--data-dir", str(tmp_path / "data"), cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert f"flow folder {tmp_path / 'missing'} (--flows or [flows] dirs) is not a folder" in result.stderr


def test_migrate_keys_and_flows_push_read_the_same_file(tmp_path: Path) -> None:
    """A project's noukai.toml puts the store in its folder: every command finds it there, and a
    local push knows the project's functions and tools."""
    project = tmp_path / "proj"
    assert noukai("init", str(project)).returncode == 0
    migrated = noukai("migrate", cwd=project)
    assert migrated.returncode == 0, migrated.stderr
    assert (project / ".noukai" / "noukai.db").is_file()
    key = noukai("keys", "create", "--org", "dev", cwd=project)
    assert key.returncode == 0 and key.stdout.startswith("nk_"), key.stderr
    pushed = noukai("flows", "push", "flows/hello.yaml", "--org", "dev", "--project", "main", cwd=project)
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout.strip() == "dev/main/hello: draft revision 1"
    elsewhere = noukai(
        "flows",
        "push",
        str(project / "flows" / "hello.yaml"),
        "--org",
        "dev",
        "--project",
        "main",
        "--local",
        "--data-dir",
        str(project / ".noukai"),
    )  # from the repository root, without the project's file: its function is unknown
    assert elsewhere.returncode == 1 and "project.slugify" in elsewhere.stderr
