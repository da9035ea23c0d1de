"""The keys API (`/api/v1/orgs/{org}/keys`) against a real server: admin only, never granting more
than the calling key has (scope, project, lifetime), the plaintext shown once, revocation."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from noukai_server.store import Store
from tests.conftest import ServerProcess

ORG = f"keysapi-{uuid.uuid4().hex[:6]}"


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def url(server: ServerProcess, org: str = ORG) -> str:
    return f"{server.api_url}/orgs/{org}/keys"


def store_key(
    server: ServerProcess, project: str | None, scope: str, expires_at: datetime | None = None
) -> str:
    async def make() -> str:
        store = await Store.connect(f"sqlite+aiosqlite:///{server.data_dir / 'noukai.db'}", migrate=False)
        try:
            _, key = await store.create_api_key(ORG, project, scope=scope, expires_at=expires_at)
            return key
        finally:
            await store.close()

    return asyncio.run(make())


@pytest.fixture(scope="module")
def admin(server: ServerProcess) -> str:
    return store_key(server, None, "admin")


def create(server: ServerProcess, key: str, **body: Any) -> httpx.Response:
    return httpx.post(url(server), json=body, headers=auth(key))


def created(server: ServerProcess, key: str, **body: Any) -> dict[str, Any]:
    response = create(server, key, **body)
    assert response.status_code == 201, response.text
    value: dict[str, Any] = response.json()
    return value


def detail(response: httpx.Response) -> dict[str, Any]:
    value: dict[str, Any] = response.json()["detail"]
    return value


def test_create_answers_the_key_once_and_it_works_with_its_scope(server: ServerProcess, admin: str) -> None:
    new = created(server, admin, scope="read", project="web", name="dashboard")
    assert new["key"].startswith(f"nk_{new['id']}_")
    assert (new["org"], new["project"], new["scope"], new["state"], new["name"]) == (
        ORG,
        "web",
        "read",
        "active",
        "dashboard",
    )
    flows = httpx.get(f"{server.api_url}/flows/{ORG}/web", headers=auth(new["key"]))
    assert flows.status_code == 200
    push = httpx.put(
        f"{server.api_url}/flows/{ORG}/web/x", json={"slug": "x", "steps": []}, headers=auth(new["key"])
    )
    assert push.status_code == 403 and "'admin' scope" in detail(push)["message"]
    listed = httpx.get(url(server), headers=auth(admin))
    assert listed.status_code == 200
    assert new["key"] not in listed.text and "key" not in listed.json()["keys"][0]
    [mine] = [k for k in listed.json()["keys"] if k["id"] == new["id"]]
    assert mine["lastUsedAt"] is not None  # it was used just above
    assert {**mine, "lastUsedAt": None} == {k: v for k, v in new.items() if k != "key"}


def test_lower_scopes_cannot_manage_keys(server: ServerProcess) -> None:
    for scope in ("run", "read"):
        key = store_key(server, None, scope)
        for answer in (create(server, key, scope="read"), httpx.get(url(server), headers=auth(key))):
            assert answer.status_code == 403
            assert detail(answer)["message"] == f"this API key lacks the 'admin' scope (it has: {scope})"


def test_a_project_admin_key_manages_its_project_only(server: ServerProcess, admin: str) -> None:
    project_admin = store_key(server, "shop", "admin")
    own = created(server, project_admin, scope="run")
    assert own["project"] == "shop"  # without `project`: its own
    elsewhere = create(server, project_admin, scope="run", project="web")
    assert elsewhere.status_code == 403
    assert detail(elsewhere)["message"] == f"this API key cannot access project {ORG}/web"
    org_wide = created(server, admin, scope="read")
    listed = httpx.get(url(server), headers=auth(project_admin)).json()["keys"]
    assert {k["project"] for k in listed} == {"shop"} and own["id"] in [k["id"] for k in listed]
    gone = httpx.delete(f"{url(server)}/{org_wide['id']}", headers=auth(project_admin))
    assert gone.status_code == 404  # an org-wide key is not its to see
    assert httpx.get(url(server), headers=auth(org_wide["key"])).status_code == 403  # read key


def test_a_key_that_expires_cannot_create_one_that_outlives_it(server: ServerProcess) -> None:
    until = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    expiring = store_key(server, None, "admin", expires_at=until)
    inherited = created(server, expiring, scope="run")
    assert inherited["expiresAt"] == until.isoformat().replace("+00:00", "Z")
    shorter = created(server, expiring, scope="run", expiresInSeconds=3600)
    assert datetime.fromisoformat(shorter["expiresAt"]) < until
    longer = create(server, expiring, scope="run", expiresInSeconds=3 * 86400)
    assert longer.status_code == 403
    assert "cannot create a key that outlives it" in detail(longer)["message"]


def test_expiry_options(server: ServerProcess, admin: str) -> None:
    before = datetime.now(UTC)
    made = created(server, admin, scope="read", expiresInSeconds=600)
    expires = datetime.fromisoformat(made["expiresAt"])
    assert before + timedelta(seconds=599) <= expires <= datetime.now(UTC) + timedelta(seconds=600)
    at = created(server, admin, scope="read", expiresAt="2099-01-01T00:00:00+02:00")
    assert at["expiresAt"] == "2098-12-31T22:00:00Z"


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"scope": "owner"}, "scope"),
        ({}, "scope"),
        ({"scope": "read", "expiresAt": "2001-01-01T00:00:00Z"}, "expiresAt"),
        ({"scope": "read", "expiresAt": "2099-01-01T00:00:00"}, "expiresAt"),
        ({"scope": "read", "expiresAt": "2099-01-01T00:00:00Z", "expiresInSeconds": 60}, "expiresAt"),
        ({"scope": "read", "expiresInSeconds": 0}, "expiresInSeconds"),
        ({"scope": "read", "project": "p" * 300}, "project"),
        ({"scope": "read", "owner": "me"}, "owner"),
    ],
)
def test_bad_bodies_are_refused_and_nothing_is_created(
    server: ServerProcess, admin: str, body: dict[str, Any], where: str
) -> None:
    before = httpx.get(url(server), headers=auth(admin)).json()["keys"]
    answer = create(server, admin, **body)
    assert answer.status_code == 422, answer.text
    assert detail(answer)["code"] == "VALIDATION_ERROR" and where in detail(answer)["message"]
    assert httpx.get(url(server), headers=auth(admin)).json()["keys"] == before


def test_revoke(server: ServerProcess, admin: str) -> None:
    victim = created(server, admin, scope="run")
    assert httpx.get(f"{server.api_url}/runs/{uuid.uuid4()}", headers=auth(victim["key"])).status_code == 404
    revoked = httpx.delete(f"{url(server)}/{victim['id']}", headers=auth(admin))
    assert revoked.status_code == 200
    assert revoked.json()["state"] == "revoked" and revoked.json()["revokedAt"] is not None
    refused = httpx.get(f"{server.api_url}/runs/{uuid.uuid4()}", headers=auth(victim["key"]))
    assert refused.status_code == 401
    again = httpx.delete(f"{url(server)}/{victim['id']}", headers=auth(admin))
    assert again.status_code == 200 and again.json()["revokedAt"] == revoked.json()["revokedAt"]


@pytest.mark.parametrize("key_id", ["000000000000", "not-a-key-id", "x" * 300])
def test_revoking_an_unknown_key_is_404(server: ServerProcess, admin: str, key_id: str) -> None:
    answer = httpx.delete(f"{url(server)}/{key_id}", headers=auth(admin))
    assert answer.status_code == 404
    assert detail(answer) == {"code": "NOT_FOUND", "message": f"no key {key_id} in org {ORG!r}"}


def test_another_orgs_key_id_is_404_and_stays_active(server: ServerProcess, admin: str) -> None:
    other = server.create_key(f"other-{uuid.uuid4().hex[:6]}")
    other_id = other.split("_")[1]
    answer = httpx.delete(f"{url(server)}/{other_id}", headers=auth(admin))
    assert answer.status_code == 404
    assert httpx.get(f"{server.api_url}/runs/{uuid.uuid4()}", headers=auth(other)).status_code == 404
