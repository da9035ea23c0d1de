"""The flow-management API: drafts, publishing, versions, validation errors, tenancy."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess
from tests.server.test_execute_api import assert_error


def unique_slug() -> str:
    return f"f-{uuid.uuid4().hex[:10]}"


def put(
    server: ServerProcess, slug: str, body: Any, *, yaml: bool = False, key: str | None = None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key or server.dev_key}"}
    url = f"{server.api_url}/flows/dev/main/{slug}"
    if yaml:
        headers["Content-Type"] = "application/yaml"
        return httpx.put(url, content=body.encode(), headers=headers)
    return httpx.put(url, json=body, headers=headers)


def auth(server: ServerProcess) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.dev_key}"}


def test_yaml_draft_publish_and_versions(server: ServerProcess) -> None:
    slug = unique_slug()
    text = f"slug: {slug}\nsteps:\n  - id: a\n    type: template\n    template: one\n"
    first = put(server, slug, text, yaml=True)
    assert first.status_code == 200, first.text
    assert first.json()["draftRevision"] == 1
    assert first.json()["latestVersion"] is None
    base = f"{server.api_url}/flows/dev/main/{slug}"
    published = httpx.post(f"{base}/publish", headers=auth(server))
    assert published.status_code == 201
    assert published.json()["version"] == 1
    second = put(server, slug, {"steps": [{"id": "a", "type": "template", "template": "two"}]})
    assert second.json()["draftRevision"] == 2
    assert httpx.post(f"{base}/publish", headers=auth(server)).json()["version"] == 2
    versions = httpx.get(f"{base}/versions", headers=auth(server)).json()["versions"]
    assert [v["version"] for v in versions] == [1, 2]
    v1 = httpx.get(f"{base}/versions/1", headers=auth(server)).json()
    assert v1["document"]["steps"][0]["template"] == "one"
    flow = httpx.get(base, headers=auth(server)).json()
    assert flow["latestVersion"] == 2 and flow["draft"]["slug"] == slug
    listed = httpx.get(f"{server.api_url}/flows/dev/main", headers=auth(server)).json()["flows"]
    assert slug in {f["slug"] for f in listed}


@pytest.mark.parametrize(
    ("body", "code", "needle"),
    [
        ("slug: x\nsteps: [\n", "INVALID_TREE", "line"),
        ({"steps": []}, "NO_STEPS", "steps"),
        ({"name": "no steps at all"}, "NO_STEPS", "steps"),
        ({"steps": [{"id": "a", "type": "llmx", "prompt": "p"}]}, "INVALID_TREE", "'a'"),
        (
            {
                "steps": [
                    {"id": "a", "type": "template", "template": "1"},
                    {"id": "a", "type": "template", "template": "2"},
                ]
            },
            "INVALID_TREE",
            "duplicate",
        ),
        ({"steps": [{"id": "a", "type": "template", "template": "{{ mesage }}"}]}, "INVALID_TREE", "mesage"),
        ({"steps": [{"id": "a", "type": "python", "function": "os.system"}]}, "INVALID_TREE", "os.system"),
        (
            {"slug": "another-slug", "steps": [{"id": "a", "type": "template", "template": "x"}]},
            "INVALID_TREE",
            "slug",
        ),
    ],
)
def test_invalid_documents_are_refused_with_the_step_and_field(
    server: ServerProcess, body: Any, code: str, needle: str
) -> None:
    slug = unique_slug()
    response = put(server, slug, body, yaml=isinstance(body, str))
    detail = assert_error(response, 400, code)
    assert needle in detail["message"]
    assert detail["issues"], detail
    assert httpx.get(f"{server.api_url}/flows/dev/main/{slug}", headers=auth(server)).status_code == 404


def test_invalid_template_names_the_step_and_field(server: ServerProcess) -> None:
    detail = assert_error(
        put(
            server,
            unique_slug(),
            {
                "steps": [
                    {"id": "first", "type": "template", "template": "ok"},
                    {"id": "second", "type": "llm", "model": "builtin:echo", "prompt": "{{ nope.x }}"},
                ]
            },
        ),
        400,
        "INVALID_TREE",
    )
    issue = detail["issues"][0]
    assert issue["stepId"] == "second" and issue["stepIndex"] == 1 and issue["field"] == "prompt"


def test_publish_and_reads_of_unknown_flows_are_404(server: ServerProcess) -> None:
    base = f"{server.api_url}/flows/dev/main/{unique_slug()}"
    assert_error(httpx.post(f"{base}/publish", headers=auth(server)), 404, "FLOW_NOT_FOUND")
    assert_error(httpx.get(base, headers=auth(server)), 404, "FLOW_NOT_FOUND")
    assert_error(httpx.get(f"{base}/versions", headers=auth(server)), 404, "FLOW_NOT_FOUND")


def test_unknown_version_is_404(server: ServerProcess) -> None:
    slug = unique_slug()
    put(server, slug, {"steps": [{"id": "a", "type": "template", "template": "x"}]})
    base = f"{server.api_url}/flows/dev/main/{slug}"
    assert_error(httpx.get(f"{base}/versions/3", headers=auth(server)), 404, "FLOW_NOT_FOUND")


@pytest.mark.parametrize("version", ["0", "-1", "2147483648", "989614822097724637184"])
def test_a_version_number_no_version_can_have_is_404(server: ServerProcess, version: str) -> None:
    """Found by the contract test: a number wider than the store's column was a 500."""
    base = f"{server.api_url}/flows/dev/main/echo"
    assert_error(httpx.get(f"{base}/versions/{version}", headers=auth(server)), 404, "FLOW_NOT_FOUND")


def test_flow_api_is_tenant_scoped(server: ServerProcess) -> None:
    other = server.create_key("rival")
    assert_error(
        put(server, unique_slug(), {"steps": [{"id": "a", "type": "template", "template": "x"}]}, key=other),
        403,
        "FORBIDDEN",
    )
    headers = {"Authorization": f"Bearer {other}"}
    assert_error(httpx.get(f"{server.api_url}/flows/dev/main", headers=headers), 403, "FORBIDDEN")


def test_a_flow_over_one_mebibyte_is_refused(server: ServerProcess) -> None:
    response = put(server, unique_slug(), "#" * (1024 * 1024 + 10), yaml=True)
    assert_error(response, 413, "BODY_TOO_LARGE")


def test_a_published_version_keeps_running_after_the_draft_changes(server: ServerProcess) -> None:
    slug = unique_slug()
    server.put_flow(
        server.dev_key,
        "dev",
        "main",
        {"slug": slug, "steps": [{"id": "a", "type": "template", "template": "v1"}]},
        publish=True,
    )
    server.put_flow(
        server.dev_key,
        "dev",
        "main",
        {"slug": slug, "steps": [{"id": "a", "type": "template", "template": "{{ 1/0 }}"}]},
    )
    response = httpx.post(f"{server.api_url}/seq/dev/main/{slug}/v1/execute", json={}, headers=auth(server))
    assert response.json()["result"] == "v1"
