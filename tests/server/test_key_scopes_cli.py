"""`noukai keys create --scope/--expires-in/--expires-at` and `noukai keys list [--json]` on real
data dirs, and the parsing and listing they use."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from noukai_server.api.key_info import key_info
from noukai_server.cli import remote_keys
from noukai_server.cli.key_listing import BadExpiry, expiry, key_table, parse_duration
from noukai_server.cli.remote import Remote, RemoteFailure
from noukai_server.store import ApiKeyRecord
from tests.conftest import ServerProcess, _server_env
from tests.server.test_cli import noukai

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    noukai(tmp_path, "migrate")
    return tmp_path


@pytest.fixture(scope="module")
def untouched_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One store for the refusals, which must leave it empty (a process start costs seconds)."""
    path = tmp_path_factory.mktemp("keys")
    noukai(path, "migrate")
    return path


def listed(data_dir: Path, *args: str) -> list[dict[str, Any]]:
    value: list[dict[str, Any]] = json.loads(noukai(data_dir, "keys", "list", "--json", *args).stdout)
    return value


def key_id(key: str) -> str:
    return key.split("_")[1]


def test_a_new_key_is_admin_and_never_expires_by_default(store: Path) -> None:
    key = noukai(store, "keys", "create", "--org", "acme").stdout.strip()
    [item] = listed(store, "--org", "acme")
    assert item["id"] == key_id(key)
    assert (item["scope"], item["expiresAt"], item["state"], item["project"]) == (
        "admin",
        None,
        "active",
        None,
    )


def test_scope_is_kept(store: Path) -> None:
    for scope in ("admin", "run", "read"):
        noukai(store, "keys", "create", "--org", "acme", "--project", "web", "--scope", scope)
    items = listed(store, "--org", "acme")
    assert [(i["scope"], i["org"], i["project"]) for i in items] == [
        ("admin", "acme", "web"),
        ("run", "acme", "web"),
        ("read", "acme", "web"),
    ]


def test_expires_in_sets_the_expiry(store: Path) -> None:
    before = datetime.now(UTC)
    noukai(store, "keys", "create", "--org", "acme", "--expires-in", "30d", "--name", "ci")
    [item] = listed(store, "--org", "acme")
    expires = datetime.fromisoformat(item["expiresAt"])
    assert (
        before + timedelta(days=30) - timedelta(seconds=1)
        <= expires
        <= datetime.now(UTC) + timedelta(days=30)
    )
    assert item["name"] == "ci"


def test_expires_at_sets_the_expiry(store: Path) -> None:
    noukai(store, "keys", "create", "--org", "acme", "--expires-at", "2099-01-31T10:00:00+01:00")
    [item] = listed(store, "--org", "acme")
    assert item["expiresAt"] == "2099-01-31T09:00:00Z"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--scope", "owner"), "--scope 'owner': use one of admin, run, read"),
        (("--expires-in", "30x"), "--expires-in '30x': write a number and a unit"),
        (("--expires-in", "0d"), "--expires-in '0d'"),
        (("--expires-at", "next tuesday"), "--expires-at 'next tuesday': write an ISO 8601 time"),
        (("--expires-at", "2001-01-01T00:00:00Z"), "is not in the future"),
        (("--expires-in", "1d", "--expires-at", "2099-01-01"), "not both"),
    ],
)
def test_bad_options_are_refused_and_nothing_is_created(
    untouched_store: Path, args: tuple[str, ...], message: str
) -> None:
    result = noukai(untouched_store, "keys", "create", "--org", "acme", *args, check=False)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""
    assert listed(untouched_store) == []


def test_list_shows_every_org_without_org_and_the_states(store: Path) -> None:
    noukai(store, "keys", "create", "--org", "acme", "--scope", "read")
    revoked = noukai(store, "keys", "create", "--org", "globex", "--project", "web").stdout.strip()
    noukai(store, "keys", "revoke", key_id(revoked))
    items = listed(store)
    assert [(i["org"], i["scope"], i["state"]) for i in items] == [
        ("acme", "read", "active"),
        ("globex", "admin", "revoked"),
    ]
    assert items[1]["revokedAt"] is not None
    assert all(i["createdAt"].endswith("Z") and i["lastUsedAt"] is None for i in items)


def test_list_as_a_table(store: Path) -> None:
    key = noukai(
        store, "keys", "create", "--org", "acme", "--project", "web", "--scope", "run"
    ).stdout.strip()
    header, row = noukai(store, "keys", "list", "--org", "acme").stdout.splitlines()
    assert header.split() == [
        "ID",
        "NAME",
        "ORG/PROJECT",
        "SCOPE",
        "STATE",
        "CREATED",
        "LAST",
        "USED",
        "EXPIRES",
    ]
    cells = row.split()
    assert cells[:5] == [key_id(key), "-", "acme/web", "run", "active"]
    assert cells[-2:] == ["-", "never"]
    assert key not in row  # the secret is never shown again


def test_the_dev_key_is_an_admin_key_that_never_expires(server: ServerProcess) -> None:
    dev = [i for i in listed(server.data_dir, "--org", "dev") if i["name"] == "dev"]
    assert dev and all(i["scope"] == "admin" and i["expiresAt"] is None for i in dev)


# -- the parsing and listing, without a process ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30d", 30 * 86400), ("12h", 43200), ("90m", 5400), ("3600s", 3600), ("2w", 1209600)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "d", "30", "-1d", "1.5h", "30 days", "99999999d"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(BadExpiry, match="write a number and a unit"):
        parse_duration(text)


def test_expiry_rules() -> None:
    assert expiry(None, None, NOW) is None
    assert expiry("1h", None, NOW) == NOW + timedelta(hours=1)
    assert expiry(None, "2027-01-01T00:00:00", NOW) == datetime(2027, 1, 1, tzinfo=UTC)  # no zone: UTC
    with pytest.raises(BadExpiry, match="not in the future"):
        expiry(None, NOW.isoformat(), NOW)
    with pytest.raises(BadExpiry, match="after the year 9999"):
        expiry("9999999w", None, NOW)


def _record(**fields: Any) -> ApiKeyRecord:
    values: dict[str, Any] = {
        "id": "0123456789ab",
        "org_id": "acme",
        "project_id": None,
        "project_slug": None,
        "name": None,
        "created_at": NOW - timedelta(days=1),
        "last_used_at": None,
        "revoked_at": None,
    }
    return ApiKeyRecord(**{**values, **fields})


def test_states() -> None:
    assert key_info(_record(), NOW)["state"] == "active"
    assert key_info(_record(expires_at=NOW), NOW)["state"] == "expired"
    assert key_info(_record(expires_at=NOW, revoked_at=NOW), NOW)["state"] == "revoked"


def test_table_columns_line_up() -> None:
    records = [
        _record(name="a much longer name", scopes="read"),
        _record(id="ba9876543210", project_slug="web"),
    ]
    lines = key_table([key_info(record, NOW) for record in records]).splitlines()
    starts = {line.index(word) for line, word in zip(lines, ["SCOPE", "read", "admin"], strict=True)}
    assert len(starts) == 1


# -- remote mode: the same commands through a server's keys API -----------------------------------


def remote(server: ServerProcess, tmp_path: Path, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`noukai keys ...` with NOUKAI_BASE_URL and NOUKAI_API_KEY set (remote mode), from an empty dir."""
    env = {**_server_env(), "NOUKAI_BASE_URL": server.base_url, "NOUKAI_API_KEY": key}
    return subprocess.run(
        [sys.executable, "-m", "noukai_server", "keys", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env=env,
    )


def test_remote_mode_creates_lists_and_revokes(server: ServerProcess, tmp_path: Path) -> None:
    org = f"remote-{uuid.uuid4().hex[:6]}"
    admin = server.create_key(org)
    made = remote(server, tmp_path, admin, "create", "--org", org, "--project", "web", "--scope", "read")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("nk_") and made.stdout.count("\n") == 1
    assert httpx.get(
        f"{server.api_url}/flows/{org}/web", headers={"Authorization": f"Bearer {key}"}
    ).is_success
    listed = remote(server, tmp_path, admin, "list", "--org", org, "--json")
    assert listed.returncode == 0, listed.stderr
    [item] = [i for i in json.loads(listed.stdout) if i["id"] == key_id(key)]
    assert (item["scope"], item["project"], item["state"]) == ("read", "web", "active")
    table = remote(server, tmp_path, admin, "list", "--org", org).stdout
    assert f"{org}/web" in table and key not in table
    revoked = remote(server, tmp_path, admin, "revoke", key_id(key), "--org", org)
    assert revoked.returncode == 0, revoked.stderr
    refused = httpx.get(f"{server.api_url}/flows/{org}/web", headers={"Authorization": f"Bearer {key}"})
    assert refused.status_code == 401
    assert not (tmp_path / ".noukai").exists()  # nothing local was created


def test_remote_mode_refusals(server: ServerProcess, tmp_path: Path) -> None:
    org = f"remote-{uuid.uuid4().hex[:6]}"
    reader = server.cli("keys", "create", "--org", org, "--scope", "read").strip()
    refused = remote(server, tmp_path, reader, "create", "--org", org)
    assert refused.returncode == 1
    assert "FORBIDDEN: this API key lacks the 'admin' scope (it has: read)" in refused.stderr
    assert refused.stdout == ""
    for args in (("list",), ("revoke", "000000000000")):
        unnamed = remote(server, tmp_path, reader, *args)
        assert unnamed.returncode == 2
        assert "give --org ORG" in unnamed.stderr


def test_remote_failures_say_what_went_wrong(server: ServerProcess) -> None:
    """In process: the server's refusal, an answer that is not the API's, no server at all."""
    reader = server.cli("keys", "create", "--org", "remote-x", "--scope", "read").strip()
    with pytest.raises(RemoteFailure, match=r"^FORBIDDEN: this API key lacks the 'admin' scope"):
        remote_keys.list_keys(Remote(server.api_url, reader), "remote-x")
    with pytest.raises(RemoteFailure, match=r"answered HTTP 200: <!"):  # an HTML page, not the API
        remote_keys.list_keys(Remote(f"{server.base_url}/redoc?at=", reader), "remote-x")
    with pytest.raises(RemoteFailure, match="cannot connect to the Noukai server at http://127.0.0.1:1"):
        remote_keys.revoke_key(Remote("http://127.0.0.1:1/api/v1", reader), "remote-x", "000000000000")
