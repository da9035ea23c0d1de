"""The tenant sweep: every route a real server answers, called with every kind of key that must be
refused, on ids that belong to tenant A.

Routes come from the server's own OpenAPI document (`GET /openapi.json`), so a new route is swept
the day it is added; the routes the document leaves out on purpose (the protocol endpoints:
OpenAI, AG-UI, MCP) come from the app's route table, and each must be listed in `HIDDEN` with
what to send it: a route in neither fails the sweep. Only `PUBLIC` routes answer without a key.

Each route is called with: another org's key, another project's key (same org), a read-only key
(on everything that is not a GET), a `run` key (on flow management), an expired key and no key.
Every call must be refused (401, 403 or 404; never 2xx, never 5xx) without a byte of A's data in
the answer. A's own admin key must NOT be refused, which proves the ids are real, and A's read
key may read everything that is not admin-only.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from noukai.types import API_PREFIX
from noukai_server.api.app import create_app
from noukai_server.config import ServerConfig
from noukai_server.runtime.protocols.mcp_tools import tool_name
from noukai_server.store import Store
from tests.conftest import ServerProcess

ORG, PROJECT, OTHER_PROJECT, OTHER_ORG = f"sweep-{uuid.uuid4().hex[:6]}", "alpha", "beta", "intruder"
MARKER = f"secret-{uuid.uuid4().hex}"
"""In A's flow, run input, thread metadata and messages: never in an answer to anyone else."""

PUBLIC = {
    ("GET", f"{API_PREFIX}/health"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/redoc"),
    ("GET", "/docs-assets"),  # the mounted static files of the offline docs
    # The web console: its HTML shell and static files hold no data; it reads the API with the
    # key the user signs in with (console/__init__.py).
    ("GET", "/"),
    ("GET", "/console/static"),
    # Prometheus: no tenant's data, only deployment-wide counts; guarded by its own token or, with
    # none set, answered to loopback clients only (api/metrics_endpoint.py, test_metrics.py).
    ("GET", "/metrics"),
}
"""Answer without a key, on purpose."""

MCP = ("POST", "/mcp")
HIDDEN = {
    ("GET", "/openai/v1/models"),
    ("GET", "/openai/v1/models/{model}"),
    ("POST", "/openai/v1/chat/completions"),
    ("POST", f"{API_PREFIX}/seq/{{org}}/{{project}}/{{slug}}/agui"),
    ("POST", f"{API_PREFIX}/seq/{{org}}/{{project}}/{{slug}}/{{version}}/agui"),
    MCP,
}
"""Served but left out of the OpenAPI document (their contracts are the protocols')."""

KEY_SCOPED = {
    ("GET", "/openai/v1/models"),
    ("POST", f"{API_PREFIX}/threads"),
    ("GET", f"{API_PREFIX}/keys/me"),  # the calling key itself (the console's sign-in)
    ("GET", f"{API_PREFIX}/runs"),  # the key's own org's (project's) runs; `?org=` another: 403
}
"""Act on the calling key's own tenant (no tenant, no id in the address): another org's key lists
its own flows or creates its own thread, a 2xx that must hold nothing of A's."""

KEY_SCOPED_IN_ORG = {("GET", f"{API_PREFIX}/orgs/{{org}}/keys")}
"""List what the calling key may manage in the org: another project's admin key gets its own
project's keys, which must not include any of A's."""

ADMIN_ONLY = {
    ("PUT", f"{API_PREFIX}/flows/{{org}}/{{project}}/{{slug}}"),
    ("POST", f"{API_PREFIX}/flows/{{org}}/{{project}}/{{slug}}/publish"),
    ("GET", f"{API_PREFIX}/orgs/{{org}}/keys"),
    ("POST", f"{API_PREFIX}/orgs/{{org}}/keys"),
    ("DELETE", f"{API_PREFIX}/orgs/{{org}}/keys/{{key_id}}"),
    ("GET", f"{API_PREFIX}/orgs/{{org}}/credits"),
    ("POST", f"{API_PREFIX}/orgs/{{org}}/credits"),
    ("GET", f"{API_PREFIX}/orgs/{{org}}/usage"),
}
"""Routes `read` and `run` keys must be refused on (flows, keys, credits and usage management)."""


@dataclass
class TenantA:
    server: ServerProcess
    slug: str
    keys: dict[str, str]
    ids: dict[str, str] = field(default_factory=dict)

    @property
    def key_ids(self) -> list[str]:
        """The ids of A's own keys (not the other tenants')."""
        mine = [key for role, key in self.keys.items() if role not in ("other org", "other project")]
        return [key.split("_")[1] for key in mine]

    def path(self, template: str) -> str:
        def fill(match: re.Match[str]) -> str:
            name = match.group(1)
            assert name in self.ids, f"the sweep has no value for path parameter {{{name}}}: add one"
            if name == "version" and "/versions/" in template:
                return "1"  # flow management numbers versions; the run routes take `v1`
            return self.ids[name]

        return re.sub(r"\{([a-z_]+)(?::[a-z]+)?\}", fill, template)


def _flow(slug: str) -> dict[str, Any]:
    return {
        "slug": slug,
        "steps": [
            {"id": "say", "type": "llm", "model": "builtin:echo", "prompt": f"{MARKER} {{{{ message }}}}"}
        ],
    }


async def _make_keys(server: ServerProcess) -> dict[str, str]:
    """The keys, made in the server's own store (the CLI's path is tested in test_key_scopes)."""
    store = await Store.connect(f"sqlite+aiosqlite:///{server.data_dir / 'noukai.db'}", migrate=False)
    try:
        made = {
            "admin": await store.create_api_key(ORG, name="sweep owner"),
            # Each differs from the owner's in one thing only: its scope, project, org or expiry.
            "read": await store.create_api_key(ORG, scope="read"),
            "run": await store.create_api_key(ORG, scope="run"),
            "other project": await store.create_api_key(ORG, OTHER_PROJECT),
            "other org": await store.create_api_key(OTHER_ORG),
            # born expired: the store takes any time; only the CLI refuses a past one
            "expired": await store.create_api_key(ORG, expires_at=datetime.now(UTC) - timedelta(minutes=1)),
            "victim": await store.create_api_key(ORG, PROJECT, name="revoked by the owner, last"),
        }
    finally:
        await store.close()
    return {role: plaintext for role, (_, plaintext) in made.items()}


def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.is_success, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture(scope="module")
def tenant(server: ServerProcess) -> TenantA:
    keys = asyncio.run(_make_keys(server))
    slug = f"sweep-{uuid.uuid4().hex[:6]}"
    a = TenantA(server, slug, keys)
    owner = {"Authorization": f"Bearer {keys['admin']}"}
    server.put_flow(keys["admin"], ORG, PROJECT, _flow(slug), publish=True)
    thread = _ok(
        httpx.post(
            f"{server.api_url}/threads", json={"project": PROJECT, "metadata": {"m": MARKER}}, headers=owner
        )
    )
    session_id = f"session-{uuid.uuid4().hex}"
    run = _ok(
        httpx.post(
            f"{server.api_url}/seq/{ORG}/{PROJECT}/{slug}/execute",
            json={"message": MARKER, "threadId": thread["threadId"]},
            headers={**owner, "X-Session-Id": session_id},
            timeout=30,
        )
    )
    assert run["status"] == "completed", run
    a.ids = {
        "org": ORG,
        "project": PROJECT,
        "slug": slug,
        "version": "v1",
        "execution_id": run["executionId"],
        "step_id": "say",
        "session_id": session_id,
        "thread_id": thread["threadId"],
        "model": f"{ORG}/{PROJECT}/{slug}",
        "key_id": keys["victim"].split("_")[1],
    }
    return a


def _served_routes() -> set[tuple[str, str]]:
    """Every (method, path) the app serves, from its route table (FastAPI includes routers lazily:
    their routes are read from each included router's effective contexts)."""
    routes: set[tuple[str, str]] = set()
    for route in create_app(ServerConfig()).routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is not None:
            entries = [(c.path, c.original_route.methods) for c in contexts()]
        else:
            path = getattr(route, "path", None)
            assert isinstance(path, str), f"a route of a kind the sweep does not know: {route!r}"
            # An ASGI app mounted without methods (/mcp, the docs' static files) takes any method
            # through one gate; it is swept with the method it serves (POST; GET for the files).
            default = {"GET"} if ("GET", path) in PUBLIC else {"POST"}
            entries = [(path, getattr(route, "methods", None) or default)]
        for path, methods in entries:
            path = re.sub(r"\{([a-z_]+):[a-z]+\}", r"{\1}", path)
            routes |= {(method, path) for method in methods if method != "HEAD"}
    return routes


def _documented_routes(server: ServerProcess) -> set[tuple[str, str]]:
    document = _ok(httpx.get(f"{server.base_url}/openapi.json"))
    return {(method.upper(), path) for path, item in document["paths"].items() for method in item}


@pytest.fixture(scope="module")
def swept(tenant: TenantA) -> list[tuple[str, str]]:
    """The routes to sweep: the documented ones and the hidden ones, minus the public ones."""
    documented = _documented_routes(tenant.server)
    served = _served_routes()
    unknown = served - documented - HIDDEN - PUBLIC
    assert not unknown, f"served but neither documented, swept (HIDDEN) nor PUBLIC: {sorted(unknown)}"
    missing = HIDDEN - served
    assert not missing, f"HIDDEN lists routes the app no longer serves: {sorted(missing)}"
    gone = ADMIN_ONLY - documented
    assert not gone, f"ADMIN_ONLY lists routes the app no longer serves: {sorted(gone)}"
    routes = sorted((documented | HIDDEN) - PUBLIC)
    # Erasure last, so the owner's own call does not remove what the others are checked against.
    return sorted(routes, key=lambda route: route[0] == "DELETE")


def _body(tenant: TenantA, method: str, template: str) -> dict[str, Any] | None:
    """A body the route accepts from its owner; `{}` where the sweep does not know one (see
    `_knows_body`): authorization comes first, so the refusals are checked all the same."""
    if method not in ("POST", "PUT", "PATCH"):
        return None
    if not _knows_body(template):
        return {}
    if template.endswith("/threads"):
        return {"project": PROJECT}
    if template.endswith("/keys"):
        return {"scope": "read", "project": PROJECT}
    if template.endswith(("/fork", "/publish", "/cancel")):
        return {}
    if template.startswith(f"{API_PREFIX}/flows/"):
        return _flow(tenant.slug)
    if template == "/openai/v1/chat/completions":
        return {"model": tenant.ids["model"], "messages": [{"role": "user", "content": "hi"}]}
    if template.endswith("/agui"):
        message = {"id": "u1", "role": "user", "content": "hi"}
        return {"threadId": "t1", "runId": str(uuid.uuid4()), "messages": [message]}
    if (method, template) == MCP:
        name = tool_name(ORG, PROJECT, tenant.slug)
        params = {"name": name, "arguments": {"message": "hi"}}
        return {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}
    return {"message": "hi"}


def _knows_body(template: str) -> bool:
    known = (
        "/keys",
        "/threads",
        "/fork",
        "/publish",
        "/cancel",
        "/execute",
        "/jobs",
        "/step",
        "/agui",
        "/completions",
    )
    return template.endswith(known) or template.startswith(f"{API_PREFIX}/flows/") or template == "/mcp"


@dataclass(frozen=True)
class Answer:
    status: int
    text: str
    """The body, or its first bytes for a stream (a stream is never read to its end)."""

    @property
    def code(self) -> str | None:
        match = re.search(r'"code"\s*:\s*"([A-Z_]+)"', self.text)
        return match.group(1) if match else None


def _call(tenant: TenantA, method: str, template: str, key: str | None) -> Answer:
    headers = {"Accept": "application/json, text/event-stream"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    url = f"{tenant.server.base_url}{tenant.path(template)}"
    body = _body(tenant, method, template)
    with httpx.stream(method, url, json=body, headers=headers, timeout=30) as response:
        streamed = response.headers.get("content-type", "").startswith("text/event-stream")
        if streamed and (method, template) != MCP:
            # A stream is never a refusal (those are JSON) and some never end: not read. An
            # answer from /mcp is one message, then the stream ends.
            return Answer(response.status_code, "")
        return Answer(response.status_code, response.read().decode(errors="replace"))


REFUSERS = ("other org", "other project", "expired", None)


def _refusals(tenant: TenantA, route: tuple[str, str]) -> Iterator[tuple[str, Answer]]:
    method, template = route
    roles: list[str | None] = list(REFUSERS)
    if method != "GET" or route in ADMIN_ONLY:
        roles.append("read")
    if route in ADMIN_ONLY:
        roles.append("run")
    for role in roles:
        yield str(role), _call(tenant, method, template, None if role is None else tenant.keys[role])


def test_every_route_refuses_every_other_key(tenant: TenantA, swept: list[tuple[str, str]]) -> None:
    failures = []
    for route in swept:
        for role, answer in _refusals(tenant, route):
            where = f"{route[0]} {route[1]} with {role} key: {answer.status} {answer.text[:300]}"
            if MARKER in answer.text:
                failures.append(f"LEAK {where}")
            elif route == MCP and role in ("other org", "other project") and answer.status == 200:
                if '"isError":true' not in answer.text.replace(" ", "") and '"error"' not in answer.text:
                    failures.append(f"not refused: {where}")  # A's tool must not be callable
            elif route in KEY_SCOPED and role in ("other org", "other project") and answer.status < 300:
                if tenant.slug in answer.text:
                    failures.append(f"shows A's flows: {where}")
            elif route in KEY_SCOPED_IN_ORG and role == "other project" and answer.status < 300:
                if any(key_id in answer.text for key_id in tenant.key_ids):
                    failures.append(f"shows A's keys: {where}")
            elif answer.status not in (401, 403, 404):
                failures.append(f"not refused: {where}")
            elif role == "None" and answer.status != 401:
                failures.append(f"no key, not 401: {where}")
            elif role == "expired" and (answer.status != 401 or "expired" not in answer.text):
                failures.append(f"expired key not told so: {where}")
            elif role in ("read", "run") and (answer.status != 403 or answer.code != "FORBIDDEN"):
                failures.append(f"missing scope not a 403 FORBIDDEN: {where}")
            elif role in ("read", "run") and "scope" not in answer.text:
                failures.append(f"a 403 that does not name the scope: {where}")
    assert not failures, "\n".join(failures)


def test_ids_in_bodies_and_headers_are_refused_too(tenant: TenantA) -> None:
    """Ids that travel in a body or a header (a thread, a run to continue) rather than in the path:
    another project's key, on a flow of its own project, cannot reach A's."""
    server, other = tenant.server, tenant.keys["other project"]
    server.put_flow(other, ORG, OTHER_PROJECT, _flow(tenant.slug))  # same slug, its own project
    own = f"{server.api_url}/seq/{ORG}/{OTHER_PROJECT}/{tenant.slug}"
    headers = {"Authorization": f"Bearer {other}"}
    thread, run = tenant.ids["thread_id"], tenant.ids["execution_id"]
    attempts = {
        "execute on A's thread": httpx.post(
            f"{own}/execute", json={"message": "hi", "threadId": thread}, headers=headers, timeout=30
        ),
        "job on A's thread": httpx.post(
            f"{own}/jobs", json={"message": "hi", "threadId": thread}, headers=headers
        ),
        "step continuing A's run": httpx.post(
            f"{own}/step", json={"executionId": run, "stepIndex": 1}, headers=headers, timeout=30
        ),
        "chat on A's thread": httpx.post(
            f"{server.base_url}/openai/v1/chat/completions",
            json={
                "model": f"{ORG}/{OTHER_PROJECT}/{tenant.slug}",
                "messages": [{"role": "user", "content": "hi"}],
            },
            headers={**headers, "X-Noukai-Thread-Id": thread},
            timeout=30,
        ),
    }
    for what, answer in attempts.items():
        assert answer.status_code in (403, 404), f"{what}: {answer.status_code} {answer.text[:300]}"
        assert MARKER not in answer.text, what


def test_the_owner_is_not_refused_anywhere(tenant: TenantA, swept: list[tuple[str, str]]) -> None:
    """The ids are real: A's admin key gets a success on every swept route, and A's read key on
    every read that is not admin-only."""
    failures = []
    for method, template in swept:
        if method == "GET":
            answer = _call(tenant, method, template, tenant.keys["read"])
            admin_only = answer.status == 403 and "'admin' scope" in answer.text
            if not (200 <= answer.status < 300 or admin_only):
                failures.append(f"read key refused: GET {template}: {answer.status} {answer.text[:300]}")
    for method, template in swept:  # erasure (DELETE) last, see `swept`
        answer = _call(tenant, method, template, tenant.keys["admin"])
        unknown_body = method != "GET" and not _knows_body(template)
        if unknown_body and answer.status == 422 and answer.code == "VALIDATION_ERROR":
            continue  # authorized, then its (unknown to the sweep) body was refused
        if not 200 <= answer.status < 300:
            failures.append(f"owner refused: {method} {template}: {answer.status} {answer.text[:300]}")
    assert not failures, "\n".join(failures)


def test_the_sweep_covers_the_routes_that_matter(swept: list[tuple[str, str]]) -> None:
    """A guard on the guard: the enumeration found the run, thread, flow and protocol routes."""
    paths = {path for _, path in swept}
    for needle in ("/runs/{execution_id}", "/threads/{thread_id}", "/flows/", "/mcp", "/openai/", "/agui"):
        assert any(needle in path for path in paths), needle
    assert len(swept) >= 30
