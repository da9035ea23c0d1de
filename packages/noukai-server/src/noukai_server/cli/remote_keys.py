"""Remote mode of `noukai keys`: create, list and revoke through a running server's keys API
(`/api/v1/orgs/{org}/keys`, an `admin` key), as `noukai flows push` pushes through its flows API.

The server applies its own rules (a key never grants more than the calling key has); failures come
back as `RemoteFailure` with the server's code and message.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx2

from noukai_server.cli.remote import REQUEST_TIMEOUT, Remote, RemoteFailure


def create_key(
    remote: Remote,
    org: str,
    *,
    project: str | None,
    name: str | None,
    scope: str,
    expires_at: datetime | None,
) -> str:
    """The new key's plaintext."""
    body: dict[str, Any] = {"scope": scope, "project": project, "name": name}
    if expires_at is not None:
        body["expiresAt"] = expires_at.isoformat()
    answer = _request(remote, "POST", f"/orgs/{org}/keys", body)
    key: str = answer["key"]
    return key


def list_keys(remote: Remote, org: str) -> list[dict[str, Any]]:
    keys: list[dict[str, Any]] = _request(remote, "GET", f"/orgs/{org}/keys")["keys"]
    return keys


def revoke_key(remote: Remote, org: str, key_id: str) -> dict[str, Any]:
    return _request(remote, "DELETE", f"/orgs/{org}/keys/{key_id}")


def _request(remote: Remote, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {remote.api_key}", "Accept": "application/json"}
    try:
        with httpx2.Client(timeout=REQUEST_TIMEOUT) as client:
            response = client.request(method, f"{remote.root}{path}", headers=headers, json=body)
    except httpx2.TimeoutException as exc:
        raise RemoteFailure(f"the Noukai server at {remote.root} timed out ({exc})") from exc
    except httpx2.TransportError as exc:
        raise RemoteFailure(
            f"cannot connect to the Noukai server at {remote.root} ({exc}); is `noukai serve` running? "
            "(set --url or NOUKAI_BASE_URL)"
        ) from exc
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if response.is_success and isinstance(answer, dict):
        return answer
    detail = answer.get("detail") if isinstance(answer, dict) else None
    if isinstance(detail, dict) and "code" in detail:
        raise RemoteFailure(f"{detail['code']}: {detail.get('message', '')} (on {remote.root})")
    snippet = " ".join(response.text.split())[:200]
    raise RemoteFailure(f"the server at {remote.root} answered HTTP {response.status_code}: {snippet}")
