"""Remote mode of `noukai flows push`: the flow goes to a running server through its HTTP API.

`PUT /api/v1/flows/{org}/{project}/{slug}` with the file's bytes (`application/yaml` for YAML
files, `application/json` for `.json`), then `POST .../publish` with `--publish`. The server
validates the flow against its own functions, tools and providers, so nothing is validated here
beyond reading the slug the address needs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import yaml

from noukai_server.cli.run import UsageError, api_root

REQUEST_TIMEOUT = 30.0


class RemoteFailure(Exception):
    """The push failed (the server refused it or could not be reached): exit 1 with the message."""


@dataclass(frozen=True)
class Remote:
    """A server to talk to: its API root (`.../api/v1`) and the key to send."""

    root: str
    api_key: str

    @classmethod
    def of(cls, url: str, api_key: str | None) -> Remote:
        """Raise `UsageError` (exit 2) for an empty URL or a missing key."""
        root = api_root(url)
        if not root.startswith(("http://", "https://")):
            raise UsageError(f"bad server URL {url!r}: it must start with http:// or https://")
        if not (api_key or "").strip():
            raise UsageError("no API key: pass --api-key or set NOUKAI_API_KEY")
        assert api_key is not None
        return cls(root, api_key.strip())


def content_type(file: Path) -> str:
    return "application/json" if file.suffix.lower() == ".json" else "application/yaml"


def read_slug(file: Path, raw: bytes) -> str:
    """The flow's slug, read from the file (the address needs it); `RemoteFailure` if it has none."""
    try:
        data = json.loads(raw) if file.suffix.lower() == ".json" else yaml.safe_load(raw)
    except (ValueError, yaml.YAMLError) as exc:
        kind = "JSON" if file.suffix.lower() == ".json" else "YAML"
        raise RemoteFailure(f"{file}: not valid {kind}: {exc}") from exc
    slug = data.get("slug") if isinstance(data, dict) else None
    if not isinstance(slug, str) or not slug.strip():
        raise RemoteFailure(f"{file}: the flow has no 'slug' (it names the flow on the server)")
    return slug.strip()


def push_flow(remote: Remote, file: Path, org: str, project: str, *, publish: bool) -> str:
    """Save the file as the flow's draft on the server (and publish it); the line to print."""
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise RemoteFailure(f"{file}: cannot be read: {exc}") from exc
    slug = read_slug(file, raw)
    url = f"{remote.root}/flows/{org}/{project}/{slug}"
    headers = {"Authorization": f"Bearer {remote.api_key}", "Accept": "application/json"}
    with httpx2.Client(timeout=REQUEST_TIMEOUT) as client:
        flow = _call(
            client,
            "PUT",
            url,
            remote.root,
            file,
            headers={**headers, "Content-Type": content_type(file)},
            body=raw,
        )
        text = f"{org}/{project}/{flow.get('slug', slug)}: draft revision {flow.get('draftRevision')}"
        if publish:
            try:
                version = _call(client, "POST", f"{url}/publish", remote.root, file, headers=headers)
            except RemoteFailure as exc:
                raise RemoteFailure(f"{text} saved, but publishing failed: {exc}") from exc
            text += f", published as version {version.get('version')}"
    return f"{text} (on {remote.root})"


def _call(
    client: httpx2.Client,
    method: str,
    url: str,
    root: str,
    file: Path,
    *,
    headers: dict[str, str],
    body: bytes | None = None,
) -> dict[str, Any]:
    response, answer = exchange(client, method, url, root, headers=headers, content=body)
    if response.is_success and isinstance(answer, dict):
        return answer
    raise RemoteFailure(describe_error(response.status_code, answer, response.text, root, file))


def exchange(
    client: httpx2.Client,
    method: str,
    url: str,
    root: str,
    *,
    headers: dict[str, str],
    content: bytes | None = None,
    json_body: Any = None,
    params: dict[str, str] | None = None,
) -> tuple[httpx2.Response, Any]:
    """Send one request to the server at `root`: its response and its JSON body (None when the
    body is not JSON); `RemoteFailure` when the server cannot be reached or times out."""
    try:
        response = client.request(
            method, url, headers=headers, content=content, json=json_body, params=params
        )
    except httpx2.TimeoutException as exc:
        raise RemoteFailure(f"the Noukai server at {root} timed out ({exc})") from exc
    except httpx2.TransportError as exc:
        raise RemoteFailure(
            f"cannot connect to the Noukai server at {root} ({exc}); is `noukai serve` running? "
            "(set --url or NOUKAI_BASE_URL)"
        ) from exc
    try:
        answer = response.json()
    except ValueError:
        answer = None
    return response, answer


def admin_call(
    remote: Remote,
    method: str,
    path: str,
    *,
    body: dict[str, Any] | None = None,
    params: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One call of the server's admin API (keys, credits) at `path` under the API root; the JSON
    object it answers, or `RemoteFailure` with the server's code and message."""
    headers = {"Authorization": f"Bearer {remote.api_key}", "Accept": "application/json"}
    with httpx2.Client(timeout=REQUEST_TIMEOUT) as client:
        response, answer = exchange(
            client,
            method,
            f"{remote.root}{path}",
            remote.root,
            headers=headers,
            json_body=body,
            params=params,
        )
    if response.is_success and isinstance(answer, dict):
        return answer
    detail = answer.get("detail") if isinstance(answer, dict) else None
    if isinstance(detail, dict) and "code" in detail:
        raise RemoteFailure(
            f"{detail['code']}: {detail.get('message', '')} (HTTP {response.status_code}, on {remote.root})"
        )
    snippet = " ".join(response.text.split())[:200]
    raise RemoteFailure(f"the server at {remote.root} answered HTTP {response.status_code}: {snippet}")


def describe_error(status: int, answer: Any, text: str, root: str, file: Path) -> str:
    """The server's error (code, message, one line per issue), or what it answered instead."""
    detail = answer.get("detail") if isinstance(answer, dict) else None
    if not isinstance(detail, dict) or "code" not in detail:
        snippet = " ".join(text.split())[:200]
        return f"the server at {root} answered HTTP {status}" + (f": {snippet}" if snippet else "")
    # The server names the document flow.yaml / flow.json; the file's own name is said instead.
    message = str(detail.get("message", "")).removeprefix("flow.yaml: ").removeprefix("flow.json: ")
    lines = [f"{file}: {detail['code']}: {message}"]
    for issue in detail.get("issues") or []:
        if isinstance(issue, dict) and issue.get("message"):
            lines.append(f"  - {issue['message']}")
    return "\n".join(lines)
