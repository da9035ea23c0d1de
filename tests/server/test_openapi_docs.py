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
import pytest

from tests.conftest import ServerProcess

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
