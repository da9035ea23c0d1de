"""`noukai flows push` and `noukai keys` outside the server's data dir: the remote mode through the
HTTP API (`--url` / `NOUKAI_BASE_URL`), and the refusal to create a store implicitly.

Every command runs with the test's own empty folder as its working directory, where the old
command silently created `.noukai/noukai.db`, a store the server never sees."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerProcess, _server_env, free_port


def noukai(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The command run from `cwd`, with no NOUKAI_* variables but those of `env`."""
    return subprocess.run(
        [sys.executable, "-m", "noukai_server", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        env={**_server_env(), **(env or {})},
    )


def _slug() -> str:
    return f"cli-{uuid.uuid4().hex[:10]}"


def _flow_file(folder: Path, slug: str, suffix: str = ".yaml") -> Path:
    file = folder / f"flow{suffix}"
    if suffix == ".json":
        document = {"slug": slug, "steps": [{"id": "a", "type": "template", "template": "hi {{ message }}"}]}
        file.write_text(json.dumps(document))
    else:
        file.write_text(
            f"slug: {slug}\nsteps:\n  - id: a\n    type: template\n    template: 'hi {{{{ message }}}}'\n"
        )
    return file


def _get_flow(server: ServerProcess, slug: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {server.dev_key}"}
    return httpx.get(f"{server.api_url}/flows/dev/main/{slug}", headers=headers)


def _nothing_created(folder: Path, *allowed: str) -> None:
    assert sorted(p.name for p in folder.iterdir()) == sorted(allowed)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_push_with_url_reaches_the_server_from_another_directory(
    server: ServerProcess, tmp_path: Path, suffix: str
) -> None:
    slug = _slug()
    file = _flow_file(tmp_path, slug, suffix)
    result = noukai(
        tmp_path,
        "flows", "push", str(file), "--org", "dev", "--project", "main",
        "--url", server.base_url, "--api-key", server.dev_key,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"dev/main/{slug}: draft revision 1" in result.stdout
    answer = _get_flow(server, slug)
    assert answer.status_code == 200
    assert answer.json()["draftRevision"] == 1
    assert answer.json()["draft"]["steps"][0]["id"] == "a"
    _nothing_created(tmp_path, file.name)  # no .noukai/ store here


def test_push_reads_the_environment_and_publishes(server: ServerProcess, tmp_path: Path) -> None:
    slug = _slug()
    file = _flow_file(tmp_path, slug)
    env = {"NOUKAI_BASE_URL": server.api_url, "NOUKAI_API_KEY": server.dev_key}  # the /api/v1 URL works too
    args = ("flows", "push", str(file), "--org", "dev", "--project", "main")
    assert noukai(tmp_path, *args, env=env).returncode == 0
    result = noukai(tmp_path, *args, "--publish", env=env)
    assert result.returncode == 0, result.stderr
    assert f"dev/main/{slug}: draft revision 2, published as version 1" in result.stdout
    flow = _get_flow(server, slug).json()
    assert (flow["draftRevision"], flow["latestVersion"]) == (2, 1)
    _nothing_created(tmp_path, file.name)


def test_push_of_an_invalid_flow_prints_the_servers_error(server: ServerProcess, tmp_path: Path) -> None:
    slug = _slug()
    file = tmp_path / "bad.yaml"
    file.write_text(f"slug: {slug}\nsteps:\n  - id: a\n    type: nope\n")
    result = noukai(
        tmp_path,
        "flows", "push", str(file), "--org", "dev", "--project", "main",
        "--url", server.base_url, "--api-key", server.dev_key,
    )  # fmt: skip
    assert result.returncode == 1
    assert "INVALID_TREE" in result.stderr
    assert "'a'" in result.stderr  # the issue, naming the step
    assert result.stdout == ""
    assert _get_flow(server, slug).status_code == 404
    _nothing_created(tmp_path, file.name)


def test_push_with_a_wrong_key_prints_the_code(server: ServerProcess, tmp_path: Path) -> None:
    file = _flow_file(tmp_path, _slug())
    env = {"NOUKAI_BASE_URL": server.base_url, "NOUKAI_API_KEY": "nk_000000000000_wrong"}
    result = noukai(tmp_path, "flows", "push", str(file), "--org", "dev", "--project", "main", env=env)
    assert result.returncode == 1
    assert "UNAUTHENTICATED" in result.stderr


def test_push_to_no_server_says_it_cannot_connect(tmp_path: Path) -> None:
    file = _flow_file(tmp_path, _slug())
    url = f"http://127.0.0.1:{free_port()}"
    env = {"NOUKAI_BASE_URL": url, "NOUKAI_API_KEY": "nk_x"}
    result = noukai(tmp_path, "flows", "push", str(file), "--org", "dev", "--project", "main", env=env)
    assert result.returncode == 1
    assert f"cannot connect to the Noukai server at {url}" in result.stderr
    assert "noukai serve" in result.stderr
    _nothing_created(tmp_path, file.name)


def test_push_with_url_needs_a_key(tmp_path: Path) -> None:
    file = _flow_file(tmp_path, _slug())
    result = noukai(
        tmp_path, "flows", "push", str(file), "--org", "o", "--project", "p", "--url", "http://127.0.0.1:1"
    )
    assert result.returncode == 2
    assert "NOUKAI_API_KEY" in result.stderr


LOCAL_COMMANDS = [
    ("keys", "create", "--org", "acme"),
    ("keys", "list", "--org", "acme"),
    ("keys", "revoke", "000000000000"),
    ("flows", "push", "FLOW", "--org", "acme", "--project", "p"),
]


@pytest.mark.parametrize("command", LOCAL_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_local_mode_without_a_store_is_refused(tmp_path: Path, command: tuple[str, ...]) -> None:
    file = _flow_file(tmp_path, "greet")
    args = [str(file) if arg == "FLOW" else arg for arg in command]
    result = noukai(tmp_path, *args)
    assert result.returncode == 1
    looked_at = tmp_path.resolve() / ".noukai" / "noukai.db"
    assert f"{looked_at} does not exist" in result.stderr
    assert "noukai serve" in result.stderr and "--data-dir" in result.stderr
    _nothing_created(tmp_path, file.name)
    # a --data-dir that does not exist is not created either
    result = noukai(tmp_path, *args, "--data-dir", str(tmp_path / "elsewhere"))
    assert result.returncode == 1
    _nothing_created(tmp_path, file.name)


def test_flows_push_refusal_points_at_the_remote_mode(tmp_path: Path) -> None:
    file = _flow_file(tmp_path, "greet")
    result = noukai(tmp_path, "flows", "push", str(file), "--org", "o", "--project", "p")
    assert result.returncode == 1
    assert "--url" in result.stderr


def test_a_database_without_the_schema_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    url = f"sqlite+aiosqlite:///{empty}"
    result = noukai(tmp_path, "keys", "create", "--org", "acme", "--database-url", url)
    assert result.returncode == 1
    assert "has no Noukai schema" in result.stderr and str(empty) in result.stderr
    with sqlite3.connect(empty) as db:  # no tables were created in it
        assert db.execute("SELECT name FROM sqlite_master").fetchall() == []


@pytest.mark.parametrize("command", LOCAL_COMMANDS[:3], ids=lambda c: " ".join(c[:2]))
@pytest.mark.parametrize("how", ["flag", "environment"])
def test_keys_with_a_url_configured_and_no_key_are_refused(
    server: ServerProcess, tmp_path: Path, command: tuple[str, ...], how: str
) -> None:
    """With a URL, `keys` goes through the server's keys API: without an admin key, exit 2."""
    if how == "flag":
        result = noukai(tmp_path, *command, "--url", server.base_url)
    else:
        result = noukai(tmp_path, *command, env={"NOUKAI_BASE_URL": server.base_url})
    assert result.returncode == 2
    assert "no API key" in result.stderr and "needs an admin key" in result.stderr
    assert "--data-dir" in result.stderr and "--local" in result.stderr
    assert result.stdout == ""
    _nothing_created(tmp_path)


def test_local_overrides_the_environments_url(server: ServerProcess, tmp_path: Path) -> None:
    env = {"NOUKAI_BASE_URL": server.base_url}
    listed = noukai(
        tmp_path, "keys", "list", "--org", "dev", "--local", "--data-dir", str(server.data_dir), env=env
    )
    assert listed.returncode == 0, listed.stderr
    assert "dev/main" in listed.stdout
    # without --local, a --data-dir next to a configured URL is ambiguous: refused, not guessed
    ambiguous = noukai(tmp_path, "keys", "list", "--org", "dev", "--data-dir", str(server.data_dir), env=env)
    assert ambiguous.returncode == 2
    assert "--local" in ambiguous.stderr
    _nothing_created(tmp_path)
