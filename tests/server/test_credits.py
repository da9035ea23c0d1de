"""Credits against a real server: the admin API, usage, the 402 before a run starts on every route
that starts runs, and a run stopped at the step boundary where its org's balance ran out.

Steps cost a known amount: an OpenAI-compatible provider (the tests' fake one) priced in the
server's noukai.toml at 0.25 USD per prompt token, and replies that report 4 prompt tokens, so
every model step costs exactly 1 USD. (Concurrency and a killed worker: `test_credits_races.py`.)
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from mcp import ClientSession
from tests.conftest import REPO_ROOT, ServerProcess, _server_env, free_port
from tests.fakeprovider import FakeProvider

STEP_USD = 1


def config_text(fake: FakeProvider) -> str:
    return f"""
[providers.fakeai]
kind = "openai"
base_url = "{fake.openai_base_url}"
api_key_env = "FAKEAI_KEY"

[providers.fakeai.models."priced"]
input_per_million = 250000
output_per_million = 0
"""


def priced_flow(slug: str, steps: int) -> dict[str, Any]:
    """`steps` model steps of 1 USD each (4 prompt words, 0.25 USD a prompt token)."""
    return {
        "slug": slug,
        "steps": [
            {"id": f"s{i}", "type": "llm", "model": "fakeai:priced", "prompt": "a b c d"}
            for i in range(steps)
        ],
    }


def start_priced_server(
    data_dir: Path, fake: FakeProvider, *extra_args: str, env: dict[str, str] | None = None
) -> ServerProcess:
    config = data_dir / "noukai.toml"
    config.write_text(config_text(fake))
    env = {**_server_env(), "NOUKAI_CONFIG": str(config), "FAKEAI_KEY": fake.api_key or "", **(env or {})}
    server = ServerProcess(free_port(), data_dir, env, extra_args)
    server.start()
    return server


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    with FakeProvider() as provider:
        yield provider


@pytest.fixture(scope="module")
def priced(tmp_path_factory: pytest.TempPathFactory, fake: FakeProvider) -> Iterator[ServerProcess]:
    server = start_priced_server(tmp_path_factory.mktemp("credits"), fake)
    try:
        yield server
    finally:
        server.stop()
        if os.environ.get("NOUKAI_KEEP_TEST_DATA") is None:
            shutil.rmtree(server.data_dir, ignore_errors=True)


@dataclass
class Org:
    server: ServerProcess
    name: str
    key: str
    """An admin key of the org."""

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def url(self, path: str) -> str:
        return f"{self.server.api_url}{path}"

    def add(self, usd: Any, **extra: Any) -> httpx.Response:
        return httpx.post(
            self.url(f"/orgs/{self.name}/credits"), json={"usd": usd, **extra}, headers=self.headers
        )

    def credits(self) -> dict[str, Any]:
        response = httpx.get(self.url(f"/orgs/{self.name}/credits"), headers=self.headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def usage(self, **params: str) -> dict[str, Any]:
        response = httpx.get(self.url(f"/orgs/{self.name}/usage"), params=params, headers=self.headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def execute(self, slug: str, message: str = "hi", **extra: Any) -> httpx.Response:
        return httpx.post(
            self.url(f"/seq/{self.name}/main/{slug}/execute"),
            json={"message": message, **extra},
            headers=self.headers,
            timeout=30,
        )

    def count(self, table: str) -> int:
        """Rows of this org in a table of the server's SQLite store."""
        [path] = self.server.data_dir.glob("*.db")
        with sqlite3.connect(path) as conn:
            [(count,)] = conn.execute(f"SELECT count(*) FROM {table} WHERE org_id = ?", (self.name,))
        return int(count)


def new_org(server: ServerProcess, *flows: dict[str, Any]) -> Org:
    name = f"o{uuid.uuid4().hex[:10]}"
    org = Org(server, name, server.create_key(name))
    for document in flows or (priced_flow("two", 2), priced_flow("three", 3)):
        server.put_flow(org.key, name, "main", document)
    return org


# -- the admin API ------------------------------------------------------------------------------------


def test_an_org_without_credits_is_unlimited_and_its_usage_is_kept(priced: ServerProcess) -> None:
    org = new_org(priced)
    assert org.credits() == {
        "org": org.name,
        "limited": False,
        "balanceUsd": None,
        "updatedAt": None,
        "grants": [],
    }
    response = org.execute("two")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "completed"
    usage = org.usage()
    assert usage["total"]["costUsd"] == "2.000000"
    assert usage["total"]["steps"] == 2 and usage["total"]["runs"] == 1
    assert usage["total"]["tokens"]["prompt"] == 8


def test_grants_corrections_and_the_ledger(priced: ServerProcess) -> None:
    org = new_org(priced)
    added = org.add("10.5", note="welcome")
    assert added.status_code == 200, added.text
    assert added.json()["balanceUsd"] == "10.500000" and added.json()["limited"] is True
    corrected = org.add(-0.5).json()
    assert corrected["balanceUsd"] == "10.000000"
    grants = corrected["grants"]
    assert [(g["amountUsd"], g["balanceUsd"], g["note"]) for g in grants] == [
        ("-0.500000", "10.000000", None),
        ("10.500000", "10.500000", "welcome"),
    ]
    assert org.credits()["balanceUsd"] == "10.000000"


@pytest.mark.parametrize(
    "body",
    [
        {"usd": "abc"},
        {"usd": 0},
        {"usd": "0.0000001"},
        {"usd": "1e12"},
        {},
        {"usd": 1, "extra": 1},
        {"usd": "NaN"},
    ],
)
def test_a_bad_amount_is_a_validation_error(priced: ServerProcess, body: dict[str, Any]) -> None:
    org = new_org(priced)
    response = httpx.post(org.url(f"/orgs/{org.name}/credits"), json=body, headers=org.headers)
    assert response.status_code == 422, response.text
    assert response.json()["detail"]["code"] == "VALIDATION_ERROR"
    assert org.credits()["limited"] is False  # nothing was written


def test_only_the_orgs_admin_keys_manage_its_credits(priced: ServerProcess) -> None:
    org = new_org(priced)
    other = new_org(priced)
    runner = priced.cli("keys", "create", "--org", org.name, "--scope", "run").strip()
    project_admin = priced.cli("keys", "create", "--org", org.name, "--project", "main").strip()
    for key in (runner, project_admin, other.key):
        headers = {"Authorization": f"Bearer {key}"}
        for method, path in (
            ("POST", "credits"),
            ("GET", "credits"),
            ("GET", "usage"),
        ):
            response = httpx.request(
                method, org.url(f"/orgs/{org.name}/{path}"), json={"usd": 5}, headers=headers
            )
            assert response.status_code == 403, response.text
            assert response.json()["detail"]["code"] == "FORBIDDEN"
    missing = httpx.post(org.url(f"/orgs/{org.name}/credits"), json={"usd": 5})
    assert missing.status_code == 401
    assert org.credits()["limited"] is False


def test_usage_by_group_and_time_range(priced: ServerProcess) -> None:
    org = new_org(priced)
    other_key = priced.cli("keys", "create", "--org", org.name, "--name", "second").strip()
    assert org.execute("two").status_code == 200
    second = httpx.post(
        org.url(f"/seq/{org.name}/main/three/execute"),
        json={"message": "hi"},
        headers={"Authorization": f"Bearer {other_key}"},
        timeout=30,
    )
    assert second.status_code == 200, second.text
    by_flow = {row["group"]: row["costUsd"] for row in org.usage(group_by="flow")["usage"]}
    assert by_flow == {"main/three": "3.000000", "main/two": "2.000000"}
    by_project = org.usage(group_by="project")["usage"]
    assert [(row["group"], row["costUsd"], row["runs"]) for row in by_project] == [("main", "5.000000", 2)]
    by_key = org.usage(group_by="key")
    assert sorted(row["costUsd"] for row in by_key["usage"]) == ["2.000000", "3.000000"]
    assert by_key["total"]["costUsd"] == "5.000000"
    # A range before the runs holds nothing; the bounds are echoed back in UTC.
    early = org.usage(**{"from": "2020-01-01T00:00:00Z", "to": "2020-01-02T00:00:00+00:00"})
    assert early["usage"] == [] and early["total"]["costUsd"] == "0.000000"
    assert early["from"] == "2020-01-01T00:00:00+00:00"


@pytest.mark.parametrize(
    "params",
    [
        {"group_by": "colour"},
        {"from": "yesterday"},
        {"from": "2026-01-01T00:00:00"},  # no timezone
        {"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
    ],
)
def test_a_bad_usage_query_is_a_validation_error(priced: ServerProcess, params: dict[str, str]) -> None:
    org = new_org(priced)
    response = httpx.get(org.url(f"/orgs/{org.name}/usage"), params=params, headers=org.headers)
    assert response.status_code == 422, response.text
    assert response.json()["detail"]["code"] == "VALIDATION_ERROR"


# -- refused before a run starts --------------------------------------------------------------------


def empty(org: Org) -> None:
    """Give the org a balance of exactly zero."""
    assert org.add(1).status_code == 200
    assert org.add(-1).json()["balanceUsd"] == "0.000000"


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 402, response.text
    detail = response.json()["detail"]
    assert detail["code"] == "INSUFFICIENT_CREDITS"
    assert detail["balanceUsd"] == "0.000000"


def test_every_route_that_starts_a_run_refuses_without_credit(priced: ServerProcess) -> None:
    org = new_org(priced)
    empty(org)
    flow = f"/seq/{org.name}/main/two"
    body = {"message": "hi"}
    assert_refused(org.execute("two"))
    assert_refused(httpx.post(org.url(f"{flow}/v0/execute"), json=body, headers=org.headers))
    assert_refused(httpx.post(org.url(f"{flow}/jobs"), json=body, headers=org.headers))
    assert_refused(httpx.post(org.url(f"{flow}/step"), json=body, headers=org.headers))
    thread = httpx.post(org.url("/threads"), json={"project": "main"}, headers=org.headers)
    assert thread.status_code == 201, thread.text
    thread_id = thread.json()["threadId"]
    assert_refused(org.execute("two", threadId=thread_id))
    agui = {
        "threadId": str(uuid.uuid4()),  # a UUID: the server would create this thread
        "runId": "r1",
        "messages": [{"id": "m1", "role": "user", "content": "hi"}],
        "tools": [],
        "state": {},
        "context": [],
        "forwardedProps": {},
    }
    assert_refused(httpx.post(org.url(f"{flow}/agui"), json=agui, headers=org.headers))
    with pytest.raises(openai.APIStatusError) as caught:
        openai.OpenAI(
            api_key=org.key, base_url=f"{priced.base_url}/openai/v1", max_retries=0
        ).chat.completions.create(model=f"{org.name}/main/two", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 402 and caught.value.code == "INSUFFICIENT_CREDITS"
    # Nothing was written: no run, and no thread for the AG-UI request.
    assert org.count("runs") == 0
    assert org.count("threads") == 1  # the one made above, with POST /threads
    assert org.usage()["usage"] == []


@pytest.mark.anyio
async def test_an_mcp_call_is_refused_without_credit(priced: ServerProcess) -> None:
    org = new_org(priced)
    empty(org)
    async with (
        create_mcp_http_client(headers=org.headers) as client,
        streamable_http_client(f"{priced.base_url}/mcp", http_client=client) as (read, write),
        ClientSession(read, write) as mcp,
    ):
        await mcp.initialize()
        result = await mcp.call_tool(f"{org.name}__main__two", {"message": "hi"})
    assert result.is_error
    text = getattr(result.content[0], "text", "")
    assert text.startswith("INSUFFICIENT_CREDITS"), text
    assert org.count("runs") == 0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_credit_added_back_lets_runs_start_again(priced: ServerProcess) -> None:
    org = new_org(priced)
    empty(org)
    assert_refused(org.execute("two"))
    org.add("5")
    response = org.execute("two")
    assert response.status_code == 200, response.text
    assert org.credits()["balanceUsd"] == "3.000000"


# -- running out mid-run ------------------------------------------------------------------------------


def test_a_run_stops_at_the_boundary_where_credit_ran_out(priced: ServerProcess) -> None:
    org = new_org(priced, priced_flow("three", 3))
    org.add("1.5")
    response = org.execute("three")
    # s0 leaves 0.50 USD, so s1 starts; it leaves -0.50 USD, so s2 never starts.
    assert response.status_code == 402, response.text
    detail = response.json()["detail"]
    assert detail["code"] == "CREDITS_EXHAUSTED"
    assert "s2" in detail["message"]
    run_id = detail.get("executionId")
    assert org.credits()["balanceUsd"] == "-0.500000"
    usage = org.usage()["total"]
    assert (usage["costUsd"], usage["steps"], usage["runs"]) == ("2.000000", 2, 1)
    if run_id is None:
        [(run_id,)] = _runs(org)
    trace = httpx.get(org.url(f"/seq/{org.name}/main/three/runs/{run_id}/trace"), headers=org.headers).json()
    assert trace["flowRun"]["status"] == "failed"
    assert [(s["stepId"], s["status"]) for s in trace["steps"]] == [("s0", "completed"), ("s1", "completed")]
    events = httpx.get(org.url(f"/runs/{run_id}/events"), headers=org.headers, timeout=10).text
    assert '"eventType":"run_failed"' in events.replace(" ", "")
    assert "CREDITS_EXHAUSTED" in events
    # The next run is refused before it starts.
    assert org.execute("three").json()["detail"]["code"] == "INSUFFICIENT_CREDITS"


def test_the_last_step_may_spend_the_last_credit(priced: ServerProcess) -> None:
    org = new_org(priced)
    org.add("1.5")
    response = org.execute("two")  # s0 leaves 0.50, s1 leaves -0.50: no step boundary after it
    assert response.status_code == 200, response.text
    assert org.credits()["balanceUsd"] == "-0.500000"


def _runs(org: Org) -> list[tuple[str]]:
    [path] = org.server.data_dir.glob("*.db")
    with sqlite3.connect(path) as conn:
        return list(conn.execute("SELECT id FROM runs WHERE org_id = ?", (org.name,)))


# -- the CLI ----------------------------------------------------------------------------------------


def noukai(
    server: ServerProcess, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "noukai_server", *args],
        env={**server.env, **(env or {})},
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
    )


def test_the_cli_on_the_local_store(priced: ServerProcess) -> None:
    org = new_org(priced)
    store = ("--data-dir", str(priced.data_dir))
    shown = noukai(priced, "credits", "show", "--org", org.name, *store)
    assert shown.returncode == 0, shown.stderr
    assert "no balance: its runs are unlimited" in shown.stdout
    added = noukai(priced, "credits", "add", "--org", org.name, "--usd", "5", "--note", "trial", *store)
    assert added.returncode == 0, added.stderr
    assert f"added +5 USD to {org.name}" in added.stdout and "balance 5.000000 USD" in added.stdout
    assert "trial" in added.stdout
    corrected = noukai(priced, "credits", "add", "--org", org.name, "--usd", "-0.25", *store)
    assert "balance 4.750000 USD" in corrected.stdout
    assert org.credits()["balanceUsd"] == "4.750000"  # the server sees what the CLI wrote
    assert org.execute("two").status_code == 200
    usage = noukai(priced, "credits", "usage", "--org", org.name, "--group-by", "flow", *store)
    assert usage.returncode == 0, usage.stderr
    lines = usage.stdout.splitlines()
    assert lines[0].split("\t")[:2] == ["group", "cost_usd"]
    assert lines[1].split("\t") == ["main/two", "2.000000", "8", "8", "2", "1"]
    assert lines[-1].split("\t")[:2] == ["TOTAL", "2.000000"]
    later = noukai(priced, "credits", "usage", "--org", org.name, "--from", "2999-01-01", *store)
    assert later.stdout.splitlines()[1].split("\t")[:2] == ["TOTAL", "0.000000"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("add", "--usd", "abc"), 2, "--usd"),
        (("add", "--usd", "0"), 2, "must not be zero"),
        (("usage", "--group-by", "colour"), 2, "--group-by"),
        (("usage", "--from", "2026-01-02", "--to", "2026-01-01"), 2, "before"),
    ],
)
def test_cli_refusals(priced: ServerProcess, args: tuple[str, ...], code: int, message: str) -> None:
    result = noukai(priced, "credits", *args, "--org", "dev", "--data-dir", str(priced.data_dir))
    assert result.returncode == code, result.stdout
    assert message in result.stderr


def test_the_cli_refuses_an_unknown_org_or_a_missing_store(priced: ServerProcess, tmp_path: Path) -> None:
    unknown = noukai(
        priced, "credits", "add", "--org", "nobody", "--usd", "1", "--data-dir", str(priced.data_dir)
    )
    assert unknown.returncode == 1 and "no org 'nobody'" in unknown.stderr
    missing = noukai(priced, "credits", "show", "--org", "dev", "--data-dir", str(tmp_path / "none"))
    assert missing.returncode == 1 and "nothing was created" in missing.stderr
    assert not (tmp_path / "none").exists()


def test_the_cli_through_the_admin_api(priced: ServerProcess) -> None:
    org = new_org(priced)
    remote = {"NOUKAI_BASE_URL": priced.base_url, "NOUKAI_API_KEY": org.key}
    added = noukai(priced, "credits", "add", "--org", org.name, "--usd", "3", env=remote)
    assert added.returncode == 0, added.stderr
    assert "balance 3.000000 USD" in added.stdout
    assert org.credits()["balanceUsd"] == "3.000000"
    shown = noukai(priced, "credits", "show", "--org", org.name, env=remote)
    assert "balance 3.000000 USD" in shown.stdout
    usage = noukai(priced, "credits", "usage", "--org", org.name, "--group-by", "key", env=remote)
    assert usage.returncode == 0 and usage.stdout.splitlines()[-1].startswith("TOTAL\t0.000000")
    runner = priced.cli("keys", "create", "--org", org.name, "--scope", "run").strip()
    refused = noukai(
        priced, "credits", "add", "--org", org.name, "--usd", "3", env={**remote, "NOUKAI_API_KEY": runner}
    )
    assert refused.returncode == 1 and "FORBIDDEN" in refused.stderr
    assert org.credits()["balanceUsd"] == "3.000000"
    keyless = noukai(priced, "credits", "show", "--org", org.name, env={"NOUKAI_BASE_URL": priced.base_url})
    assert keyless.returncode == 2 and "API key" in keyless.stderr


def test_the_cli_says_when_the_server_cannot_be_reached(priced: ServerProcess) -> None:
    env = {"NOUKAI_BASE_URL": f"http://127.0.0.1:{free_port()}", "NOUKAI_API_KEY": "nk_x_y"}
    result = noukai(priced, "credits", "show", "--org", "dev", env=env)
    assert result.returncode == 1 and "cannot connect" in result.stderr


def test_a_retried_request_gets_its_run_back_when_credit_is_gone(priced: ServerProcess) -> None:
    org = new_org(priced)
    assert org.add(1).status_code == 200
    url = org.url(f"/seq/{org.name}/main/three/jobs")

    def submit(idempotency_key: str) -> httpx.Response:
        headers = {**org.headers, "Idempotency-Key": idempotency_key}
        return httpx.post(url, json={"message": "hi"}, headers=headers, timeout=30)

    first = submit("order-1")
    assert first.status_code == 202, first.text
    assert org.add(-5).status_code == 200  # the balance is negative whatever the run spent
    # A retry of the request that made the run is no new run: it gets its run, credit or not.
    again = submit("order-1")
    assert again.status_code == 202, again.text
    assert again.json()["executionId"] == first.json()["executionId"]
    refused = submit("order-2")
    assert (refused.status_code, refused.json()["detail"]["code"]) == (402, "INSUFFICIENT_CREDITS")
    assert org.count("runs") == 1
