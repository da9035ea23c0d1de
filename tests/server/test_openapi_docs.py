"""The API docs work offline and "Try it out" sends the key.

`/docs` (Swagger UI) and `/redoc` load every asset from the server itself (no CDN, no web fonts), and
the OpenAPI document declares the bearer scheme on every route that needs a key, so Swagger's
Authorize button sends `Authorization: Bearer nk_...`.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import jsonschema_rs
import pytest
from pydantic import TypeAdapter

from noukai.types.events import EVENT_PAYLOADS
from noukai.types.wire import ExecuteResponse, PausedResult
from tests.conftest import ServerProcess
from tests.server.test_streams import events_only, read_stream, start_run
from tests.server.test_tools_api import pause

DOC_PAGES = ["/docs", "/redoc"]
PUBLIC_OPERATIONS = {("get", "/api/v1/health")}
# What each kind of asset must be served as, and the least size a real (not stub) one has.
ASSET_KINDS = {
    ".js": ("javascript", 100_000),
    ".css": ("text/css", 10_000),
    ".png": ("image/png", 200),
}


class _References(HTMLParser):
    """Every URL the page makes the browser load: `src`, `href`, ReDoc's `spec-url`."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in {"src", "href", "spec-url"} and value:
                self.urls.append(value)


def _page(server: ServerProcess, path: str) -> str:
    response = httpx.get(f"{server.base_url}{path}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    return response.text


def _references(html: str) -> list[str]:
    parser = _References()
    parser.feed(html)
    # Swagger UI is told its spec in the inline script: `url: '/openapi.json'`.
    parser.urls += re.findall(r"""\burl\s*:\s*['"]([^'"]+)['"]""", html)
    return parser.urls


def _is_own(server: ServerProcess, url: str) -> bool:
    absolute = urljoin(f"{server.base_url}/docs", url)
    parts = urlsplit(absolute)
    return (parts.scheme, parts.netloc) == ("http", f"127.0.0.1:{server.port}")


@pytest.mark.parametrize("path", DOC_PAGES)
def test_doc_pages_reference_nothing_outside_the_server(server: ServerProcess, path: str) -> None:
    html = _page(server, path)
    outside = [u for u in re.findall(r"""(?:https?:)?//[^\s'"<>)]+""", html) if not _is_own(server, u)]
    assert not outside, f"{path} loads from outside the server: {outside}"
    references = _references(html)
    assert references, f"{path} references no asset"
    assert all(_is_own(server, u) for u in references), references


@pytest.mark.parametrize("path", DOC_PAGES)
def test_every_asset_of_a_doc_page_is_served(server: ServerProcess, path: str) -> None:
    html = _page(server, path)
    scripts = 0
    for url in _references(html):
        response = httpx.get(urljoin(f"{server.base_url}{path}", url))
        assert response.status_code == 200, f"{url}: {response.status_code}"
        suffix = next((s for s in ASSET_KINDS if urlsplit(url).path.endswith(s)), None)
        if suffix is None:  # the OpenAPI document itself
            assert urlsplit(url).path == "/openapi.json", url
            assert response.json()["openapi"].startswith("3.")
            continue
        content_type, least = ASSET_KINDS[suffix]
        assert content_type in response.headers["content-type"], (url, response.headers["content-type"])
        assert len(response.content) >= least, (url, len(response.content))
        scripts += suffix == ".js"
    assert scripts >= 1, f"{path} loads no script"


def test_the_scripts_are_the_real_bundles(server: ServerProcess) -> None:
    """The pages call `SwaggerUIBundle(...)` and use `Redoc`; the served files must define them."""
    swagger = [u for u in _references(_page(server, "/docs")) if u.endswith(".js")]
    redoc = [u for u in _references(_page(server, "/redoc")) if u.endswith(".js")]
    assert "SwaggerUIBundle" in "".join(httpx.get(urljoin(server.base_url, u)).text for u in swagger)
    assert "Redoc" in "".join(httpx.get(urljoin(server.base_url, u)).text for u in redoc)


def _spec(server: ServerProcess) -> dict[str, Any]:
    response = httpx.get(f"{server.base_url}/openapi.json")
    assert response.status_code == 200
    spec: dict[str, Any] = response.json()
    return spec


def _bearer_schemes(spec: dict[str, Any]) -> set[str]:
    schemes = spec.get("components", {}).get("securitySchemes", {})
    return {
        name
        for name, scheme in schemes.items()
        if scheme.get("type") == "http" and scheme.get("scheme", "").lower() == "bearer"
    }


def _required_schemes(operation: dict[str, Any]) -> set[str]:
    return {name for requirement in operation.get("security", []) for name in requirement}


def test_the_openapi_document_declares_a_bearer_scheme(server: ServerProcess) -> None:
    spec = _spec(server)
    bearer = _bearer_schemes(spec)
    assert bearer, spec.get("components", {}).get("securitySchemes")
    execute = spec["paths"]["/api/v1/seq/{org}/{project}/{slug}/execute"]["post"]
    assert _required_schemes(execute) & bearer
    health = spec["paths"]["/api/v1/health"]["get"]
    assert not _required_schemes(health)
    assert "security" not in spec  # no document-wide requirement that would cover health too


def test_every_keyed_operation_requires_the_bearer_scheme(server: ServerProcess) -> None:
    spec = _spec(server)
    bearer = _bearer_schemes(spec)
    missing = [
        f"{method.upper()} {path}"
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if (method, path) not in PUBLIC_OPERATIONS and not _required_schemes(operation) & bearer
    ]
    assert not missing, missing
    assert not any(path.startswith(("/docs", "/redoc")) for path in spec["paths"])


def test_a_try_it_out_request_with_the_key_is_accepted(server: ServerProcess) -> None:
    """What Swagger sends once authorized; without the key the 401 envelope is unchanged."""
    url = f"{server.api_url}/seq/dev/main/echo/execute"
    response = httpx.post(url, json={"message": "hi"}, headers={"Authorization": f"Bearer {server.dev_key}"})
    assert response.status_code == 200, response.text
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer nk_wrong"}):
        refused = httpx.post(url, json={"message": "hi"}, headers=headers)
        assert refused.status_code == 401, refused.text
        assert refused.json()["detail"]["code"] == "UNAUTHENTICATED"
        assert refused.headers["www-authenticate"].startswith("Bearer")


# --- The document tells the truth (every answer is documented; test_contract.py checks the server
# against it) --------------------------------------------------------------------------------------


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, item in spec["paths"].items() for method, op in item.items()]


def _schema_of(answer: dict[str, Any], media_type: str = "application/json") -> dict[str, Any]:
    schema: dict[str, Any] = answer["content"][media_type]["schema"]
    return schema


def test_every_error_answer_is_the_envelope_and_fastapis_own_422_is_gone(server: ServerProcess) -> None:
    spec = _spec(server)
    assert "HTTPValidationError" not in str(spec) and "ValidationError" not in spec["components"]["schemas"]
    for method, path, operation in _operations(spec):
        errors = {s: a for s, a in operation["responses"].items() if int(s) >= 400}
        if (method, path) not in PUBLIC_OPERATIONS:
            assert {"401", "500"} <= set(errors), (method, path)
        for status, answer in errors.items():
            assert list(answer["content"]) == ["application/json"], (method, path, status)
            assert _schema_of(answer) == {"$ref": "#/components/schemas/ErrorEnvelope"}
            assert "`" in answer["description"], answer  # names the codes sent with that status
    body = spec["components"]["schemas"]["ErrorBody"]
    assert body["required"] == ["code", "message"] and body["additionalProperties"] is True


def test_every_success_answer_has_a_schema(server: ServerProcess) -> None:
    spec = _spec(server)
    for method, path, operation in _operations(spec):
        successes = {s: a for s, a in operation["responses"].items() if int(s) < 300}
        assert len(successes) == 1, (method, path, list(operation["responses"]))
        ((status, answer),) = successes.items()
        if path.endswith(("/step", "/events", "/trace/stream")):
            assert list(answer["content"]) == ["text/event-stream"], (method, path)
            event = _schema_of(answer, "text/event-stream")
            assert event["properties"]["data"]["contentMediaType"] == "application/json"
            continue
        assert list(answer["content"]) == ["application/json"], (method, path)
        schema = _schema_of(answer)
        assert schema.get("$ref") or schema.get("oneOf") or schema.get("anyOf"), (method, path, schema)
    submit = spec["paths"]["/api/v1/seq/{org}/{project}/{slug}/jobs"]["post"]["responses"]
    publish = spec["paths"]["/api/v1/flows/{org}/{project}/{slug}/publish"]["post"]["responses"]
    assert "202" in submit and "201" in publish


def test_execute_documents_completed_failed_and_paused_answers(server: ServerProcess) -> None:
    spec = _spec(server)
    answer = spec["paths"]["/api/v1/seq/{org}/{project}/{slug}/execute"]["post"]["responses"]["200"]
    schema = _schema_of(answer)
    assert schema["discriminator"]["propertyName"] == "status"
    mapping = schema["discriminator"]["mapping"]
    assert set(mapping) == {"completed", "failed", "tool_calls_required"}
    schemas = spec["components"]["schemas"]
    paused = schemas[mapping["tool_calls_required"].rsplit("/", 1)[-1]]
    assert {"executionId", "pausedAtStep", "iterationsUsed", "toolCallMessages", "toolCalls"} <= set(
        paused["required"]
    )
    failed = schemas[mapping["failed"].rsplit("/", 1)[-1]]
    assert "error" in failed["required"]
    body = spec["paths"]["/api/v1/seq/{org}/{project}/{slug}/execute"]["post"]["requestBody"]
    assert "toolCallMessages" in _schema_of(body)["properties"]


def test_a_real_paused_answer_validates_against_the_document(server: ServerProcess) -> None:
    """The union is not decoration: the server's paused body is what the schema says."""
    paused = TypeAdapter(ExecuteResponse).validate_python(pause(server))
    assert isinstance(paused, PausedResult)


def _event_validator(spec: dict[str, Any], path: str) -> jsonschema_rs.Validator:
    answer = spec["paths"][path]["get"]["responses"]["200"]
    data = _schema_of(answer, "text/event-stream")["properties"]["data"]["contentSchema"]
    # The refs point into the document's components: validate against the document's root.
    return jsonschema_rs.Draft202012Validator({**data, "components": spec["components"]})


def test_stream_events_are_described_by_their_payload_schemas(server: ServerProcess) -> None:
    spec = _spec(server)
    answer = spec["paths"]["/api/v1/runs/{execution_id}/events"]["get"]["responses"]["200"]
    data = _schema_of(answer, "text/event-stream")["properties"]["data"]["contentSchema"]
    assert data["discriminator"]["propertyName"] == "eventType"
    assert set(data["discriminator"]["mapping"]) == set(EVENT_PAYLOADS)
    schemas = spec["components"]["schemas"]
    for payload in EVENT_PAYLOADS.values():
        assert payload.__name__ in schemas
    # Field descriptions come from the TypedDicts' docstrings, inherited keys included.
    step_output = schemas["StepOutputPayload"]["properties"]
    assert step_output["stepId"]["description"] and step_output["outputData"]["description"]


def test_real_stream_events_validate_against_the_document(server: ServerProcess) -> None:
    spec = _spec(server)
    validator = _event_validator(spec, "/api/v1/runs/{execution_id}/events")
    seen: set[str] = set()
    for slug, params in (
        ("three-steps", {}),
        ("shout-all", {"items": ["a", "b"]}),
        ("broken", {"config": {}}),
    ):
        run_id = start_run(server, slug, runRemaining=True, parameters=params)
        for frame in events_only(read_stream(server, run_id)):
            errors = [e.message for e in validator.iter_errors(frame.json)]
            assert errors == [], (frame.event, frame.json)
            seen.add(str(frame.event))
    assert {
        "run_started",
        "step_output",
        "step_progress",
        "step_completed",
        "step_error",
        "run_failed",
    } <= seen
    assert not validator.is_valid({"eventType": "step_output", "seq": 3, "stepId": "s", "outputData": 7})
    assert not validator.is_valid({"eventType": "no_such_event", "seq": 3})
