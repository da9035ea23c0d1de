"""Key scopes and expiry against a real server: what each scope may do, the exact refusals (403
FORBIDDEN naming the missing scope; 401 UNAUTHENTICATED saying the key expired), in the native
envelope and in the protocols' own shapes. The sweep over every route is test_tenant_sweep."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from noukai.types.errors import ErrorCode
from noukai_server.api.auth import SCOPE_RANKS, authorize, has_scope, require_scope
from noukai_server.api.errors import ApiError
from noukai_server.runtime import RequestRejected
from noukai_server.runtime.key_admin import KeyAdmin, new_key_expiry
from noukai_server.store import ApiKeyRecord, Store
from tests.conftest import ServerProcess

ORG = f"scopes-{uuid.uuid4().hex[:6]}"
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}
TOOLS_LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def flow(slug: str) -> dict[str, Any]:
    return {
        "slug": slug,
        "steps": [{"id": "say", "type": "llm", "model": "builtin:echo", "prompt": "{{ message }}"}],
    }


def cli_key(server: ServerProcess, scope: str) -> str:
    """A key made the operator's way: `noukai keys create --scope`."""
    return server.cli("keys", "create", "--org", ORG, "--project", "web", "--scope", scope).strip()


@pytest.fixture(scope="module")
def keys(server: ServerProcess) -> dict[str, str]:
    made = {scope: cli_key(server, scope) for scope in ("admin", "run", "read")}

    async def expired() -> str:
        store = await Store.connect(f"sqlite+aiosqlite:///{server.data_dir / 'noukai.db'}", migrate=False)
        try:
            when = datetime.now(UTC) - timedelta(seconds=1)
            _, key = await store.create_api_key(ORG, "web", scope="admin", expires_at=when)
            return key
        finally:
            await store.close()

    made["expired"] = asyncio.run(expired())
    return made


@pytest.fixture(scope="module")
def slug(server: ServerProcess, keys: dict[str, str]) -> str:
    name = f"echo-{uuid.uuid4().hex[:6]}"
    server.put_flow(keys["admin"], ORG, "web", flow(name), publish=True)
    return name


def execute(server: ServerProcess, key: str, slug: str) -> httpx.Response:
    url = f"{server.api_url}/seq/{ORG}/web/{slug}/execute"
    return httpx.post(url, json={"message": "hi"}, headers=auth(key), timeout=30)


def detail(response: httpx.Response) -> dict[str, Any]:
    value: dict[str, Any] = response.json()["detail"]
    return value


def test_a_run_key_runs_and_reads_but_cannot_manage_flows(
    server: ServerProcess, keys: dict[str, str], slug: str
) -> None:
    answer = execute(server, keys["run"], slug)
    assert answer.status_code == 200 and answer.json()["result"] == "hi"
    run = httpx.get(f"{server.api_url}/runs/{answer.json()['executionId']}", headers=auth(keys["run"]))
    assert run.status_code == 200
    pushed = httpx.put(f"{server.api_url}/flows/{ORG}/web/{slug}", json=flow(slug), headers=auth(keys["run"]))
    assert pushed.status_code == 403
    assert detail(pushed) == {
        "code": ErrorCode.FORBIDDEN,
        "message": "this API key lacks the 'admin' scope (it has: run)",
    }
    published = httpx.post(f"{server.api_url}/flows/{ORG}/web/{slug}/publish", headers=auth(keys["run"]))
    assert published.status_code == 403
    versions = httpx.get(f"{server.api_url}/flows/{ORG}/web/{slug}/versions", headers=auth(keys["run"]))
    assert [v["version"] for v in versions.json()["versions"]] == [1]  # nothing was published


def test_a_read_key_reads_and_is_refused_every_write(
    server: ServerProcess, keys: dict[str, str], slug: str
) -> None:
    run_id = execute(server, keys["admin"], slug).json()["executionId"]
    read = auth(keys["read"])
    assert httpx.get(f"{server.api_url}/runs/{run_id}", headers=read).status_code == 200
    trace = httpx.get(f"{server.api_url}/seq/{ORG}/web/{slug}/runs/{run_id}/trace", headers=read)
    assert trace.status_code == 200
    assert httpx.get(f"{server.api_url}/flows/{ORG}/web/{slug}", headers=read).status_code == 200
    refused = [
        execute(server, keys["read"], slug),
        httpx.post(f"{server.api_url}/runs/{run_id}/cancel", headers=read),
        httpx.post(f"{server.api_url}/seq/{ORG}/web/{slug}/jobs", json={"message": "hi"}, headers=read),
        httpx.post(f"{server.api_url}/threads", json={}, headers=read),
    ]
    for answer in refused:
        assert answer.status_code == 403, answer.text
        assert detail(answer) == {
            "code": ErrorCode.FORBIDDEN,
            "message": "this API key lacks the 'run' scope (it has: read)",
        }


def test_the_openai_routes_refuse_a_read_key_in_openais_shape(
    server: ServerProcess, keys: dict[str, str], slug: str
) -> None:
    models = httpx.get(f"{server.base_url}/openai/v1/models", headers=auth(keys["read"]))
    assert models.status_code == 200
    assert f"{ORG}/web/{slug}" in [m["id"] for m in models.json()["data"]]
    body = {"model": f"{ORG}/web/{slug}", "messages": [{"role": "user", "content": "hi"}]}
    chat = httpx.post(f"{server.base_url}/openai/v1/chat/completions", json=body, headers=auth(keys["read"]))
    assert chat.status_code == 403
    error = chat.json()["error"]
    assert (error["code"], error["message"]) == (
        "FORBIDDEN",
        "this API key lacks the 'run' scope (it has: read)",
    )


def test_mcp_needs_the_run_scope(server: ServerProcess, keys: dict[str, str]) -> None:
    refused = httpx.post(
        f"{server.base_url}/mcp", json=TOOLS_LIST, headers={**MCP_HEADERS, **auth(keys["read"])}
    )
    assert refused.status_code == 403
    assert detail(refused)["message"] == "this API key lacks the 'run' scope (it has: read)"
    allowed = httpx.post(
        f"{server.base_url}/mcp", json=TOOLS_LIST, headers={**MCP_HEADERS, **auth(keys["run"])}
    )
    assert allowed.status_code == 200


def test_an_expired_key_is_told_it_expired(server: ServerProcess, keys: dict[str, str], slug: str) -> None:
    native = execute(server, keys["expired"], slug)
    assert native.status_code == 401
    assert detail(native)["code"] == ErrorCode.UNAUTHENTICATED
    assert detail(native)["message"].startswith("this API key expired at ")
    assert native.headers["www-authenticate"].startswith("Bearer")
    models = httpx.get(f"{server.base_url}/openai/v1/models", headers=auth(keys["expired"]))
    assert models.status_code == 401 and "expired at" in models.json()["error"]["message"]
    mcp = httpx.post(
        f"{server.base_url}/mcp", json=TOOLS_LIST, headers={**MCP_HEADERS, **auth(keys["expired"])}
    )
    assert mcp.status_code == 401 and "expired at" in detail(mcp)["message"]
    assert mcp.headers["www-authenticate"].startswith("Bearer")


def test_a_guess_at_an_expired_key_is_not_told_anything(server: ServerProcess, keys: dict[str, str]) -> None:
    key_id = keys["expired"].split("_")[1]
    answer = httpx.get(f"{server.api_url}/runs/{uuid.uuid4()}", headers=auth(f"nk_{key_id}_{'A' * 43}"))
    assert answer.status_code == 401
    assert detail(answer)["message"] == "invalid or revoked API key"


def test_the_dev_key_can_do_everything(server: ServerProcess) -> None:
    name = f"dev-{uuid.uuid4().hex[:6]}"
    server.put_flow(server.dev_key, "dev", "main", flow(name), publish=True)
    answer = httpx.post(
        f"{server.api_url}/seq/dev/main/{name}/execute", json={"message": "yo"}, headers=auth(server.dev_key)
    )
    assert answer.status_code == 200 and answer.json()["result"] == "yo"


# -- the checks themselves ------------------------------------------------------------------------


def _key(scopes: str, project: str | None = None) -> ApiKeyRecord:
    now = datetime.now(UTC)
    return ApiKeyRecord(
        "0123456789ab", "acme", project and "p-id", project, None, now, None, None, scopes=scopes
    )


@pytest.mark.parametrize(("held", "needed"), [(h, n) for h in SCOPE_RANKS for n in SCOPE_RANKS])
def test_each_scope_grants_the_ones_below_it(held: str, needed: str) -> None:
    assert has_scope(_key(held), needed) is (SCOPE_RANKS[held] >= SCOPE_RANKS[needed])


def test_unknown_scopes_grant_nothing() -> None:
    assert not has_scope(_key("owner"), "read")
    with pytest.raises(ApiError) as caught:
        require_scope(_key(""), "read")
    assert caught.value.code == ErrorCode.FORBIDDEN


def test_authorize_checks_the_tenant_before_the_scope() -> None:
    with pytest.raises(ApiError, match="cannot access org 'globex'"):
        authorize(_key("read"), "globex", "web", scope="admin")
    with pytest.raises(ApiError, match="cannot access project acme/other"):
        authorize(_key("read", "web"), "acme", "other", scope="admin")
    with pytest.raises(ApiError, match="lacks the 'admin' scope"):
        authorize(_key("read", "web"), "acme", "web", scope="admin")
    authorize(_key("admin", "web"), "acme", "web", scope="admin")
    authorize(_key("read"), "acme", "web")  # reading is the default need


def test_a_project_key_is_refused_what_belongs_to_the_whole_org() -> None:
    with pytest.raises(ApiError) as caught:
        authorize(_key("admin", "web"), "acme", scope="admin")
    assert caught.value.code == ErrorCode.FORBIDDEN
    assert caught.value.message == (
        "this API key is limited to project acme/web: what belongs to the whole org needs an org-wide key"
    )
    authorize(_key("admin"), "acme", scope="admin")  # an org-wide key may


# -- the keys API's rules, in process (the routes are driven over HTTP in test_key_scopes_api) -----


def test_a_new_keys_expiry_never_outlives_its_creator() -> None:
    now = datetime.now(UTC)
    forever, until = _key("admin"), replace(_key("admin"), expires_at=now + timedelta(hours=1))
    assert new_key_expiry(None, forever, now) is None
    assert new_key_expiry(now + timedelta(days=9), forever, now) == now + timedelta(days=9)
    assert new_key_expiry(None, until, now) == until.expires_at
    assert new_key_expiry(now + timedelta(minutes=5), until, now) == now + timedelta(minutes=5)
    with pytest.raises(RequestRejected, match="cannot create a key that outlives it") as caught:
        new_key_expiry(now + timedelta(hours=2), until, now)
    assert caught.value.code == ErrorCode.FORBIDDEN
    for bad in (now, now.replace(tzinfo=None) + timedelta(hours=1)):
        with pytest.raises(RequestRejected) as refused:
            new_key_expiry(bad, forever, now)
        assert refused.value.code == ErrorCode.VALIDATION_ERROR


def test_key_admin_sees_creates_and_revokes_within_the_callers_reach(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = await Store.connect(f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}")
        try:
            admin = KeyAdmin(store)
            org_key, _ = await store.create_api_key("acme")
            shop_key, _ = await store.create_api_key("acme", "shop")
            web, _ = await admin.create(
                org_key, "acme", project="web", name=None, scope="read", expires_at=None
            )
            assert [k.id for k in await admin.visible(shop_key, "acme")] == [shop_key.id]
            assert {k.id for k in await admin.visible(org_key, "acme")} == {org_key.id, shop_key.id, web.id}
            with pytest.raises(RequestRejected) as hidden:
                await admin.revoke(shop_key, "acme", web.id)  # not its project's
            assert hidden.value.code == ErrorCode.NOT_FOUND
            for unknown in ("000000000000", "NOT-AN-ID", web.id.upper()):
                with pytest.raises(RequestRejected):
                    await admin.revoke(org_key, "acme", unknown)
            with pytest.raises(RequestRejected):
                await admin.revoke(org_key, "globex", web.id)  # another org's address
            revoked = await admin.revoke(org_key, "acme", web.id)
            assert revoked.revoked
            assert (await admin.revoke(org_key, "acme", web.id)).revoked_at == revoked.revoked_at
            with pytest.raises(RequestRejected) as too_long:
                await admin.create(
                    org_key, "acme", project="p" * 300, name=None, scope="read", expires_at=None
                )
            assert too_long.value.code == ErrorCode.VALIDATION_ERROR
        finally:
            await store.close()

    asyncio.run(scenario())
