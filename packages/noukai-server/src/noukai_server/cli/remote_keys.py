"""Remote mode of `noukai keys`: create, list and revoke through a running server's keys API
(`/api/v1/orgs/{org}/keys`, an `admin` key), as `noukai flows push` pushes through its flows API.

The server applies its own rules (a key never grants more than the calling key has); failures come
back as `RemoteFailure` with the server's code and message.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from noukai_server.cli.remote import Remote, admin_call


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
    answer = admin_call(remote, "POST", f"/orgs/{org}/keys", body=body)
    key: str = answer["key"]
    return key


def list_keys(remote: Remote, org: str) -> list[dict[str, Any]]:
    keys: list[dict[str, Any]] = admin_call(remote, "GET", f"/orgs/{org}/keys")["keys"]
    return keys


def revoke_key(remote: Remote, org: str, key_id: str) -> dict[str, Any]:
    return admin_call(remote, "DELETE", f"/orgs/{org}/keys/{key_id}")
