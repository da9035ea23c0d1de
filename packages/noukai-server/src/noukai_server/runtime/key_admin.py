"""Managing an org's API keys on behalf of another key (the keys API): what the calling key may
see, the key it may create, and revocation.

The caller's tenant and scope are checked by the API layer first (`api.auth.authorize`); this
adds what the store cannot know: a key limited to a project manages that project's keys only, and
a key that expires never creates one that outlives it.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Final

from noukai.types.errors import ErrorCode
from noukai_server.runtime.errors import RequestRejected
from noukai_server.store import ApiKeyRecord, InvalidIdentifier, Store

_KEY_ID: Final = re.compile(r"[0-9a-f]{12}")


def _invalid(field: str, message: str) -> RequestRejected:
    return RequestRejected(
        ErrorCode.VALIDATION_ERROR,
        f"invalid request: {field}: {message}",
        errors=[{"loc": ["body", field], "message": message}],
    )


def new_key_expiry(requested: datetime | None, creator: ApiKeyRecord, now: datetime) -> datetime | None:
    """When a key `creator` makes should expire: as asked (in the future), else never, but never
    after `creator` itself (inherited when not asked; 403 FORBIDDEN when asked for later)."""
    if requested is not None and requested.tzinfo is None:
        raise _invalid("expiresAt", "a time with its zone, like 2027-01-31T00:00:00Z")
    if requested is not None and requested <= now:
        raise _invalid("expiresAt", "not in the future")
    if creator.expires_at is None:
        return requested
    if requested is None:
        return creator.expires_at
    if requested > creator.expires_at:
        raise RequestRejected(
            ErrorCode.FORBIDDEN,
            f"this API key expires at {creator.expires_at.isoformat()}:"
            " it cannot create a key that outlives it",
        )
    return requested


class KeyAdmin:
    """The keys of an org as one of its keys may manage them."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def now(self) -> datetime:
        return self._store.now()

    async def visible(self, caller: ApiKeyRecord, org: str) -> list[ApiKeyRecord]:
        """The org's keys, oldest first; only its project's for a key limited to one."""
        records = await self._store.list_api_keys(org)
        return [r for r in records if caller.project_slug is None or r.project_slug == caller.project_slug]

    async def create(
        self,
        caller: ApiKeyRecord,
        org: str,
        *,
        project: str | None,
        name: str | None,
        scope: str,
        expires_at: datetime | None,
    ) -> tuple[ApiKeyRecord, str]:
        """`(record, plaintext)`; `project` is already the caller's (or any, for an org-wide key)."""
        expires = new_key_expiry(expires_at, caller, self.now())
        try:
            return await self._store.create_api_key(org, project, name=name, scope=scope, expires_at=expires)
        except InvalidIdentifier as exc:
            raise _invalid("project", str(exc)) from None

    async def revoke(self, caller: ApiKeyRecord, org: str, key_id: str) -> ApiKeyRecord:
        """The key, revoked (revoking a revoked key changes nothing). 404 NOT_FOUND for a key the
        caller cannot see, as for one that does not exist."""
        target = await self._store.get_api_key(key_id) if _KEY_ID.fullmatch(key_id) else None
        if (
            target is None
            or target.org_id != org
            or (caller.project_slug is not None and target.project_slug != caller.project_slug)
        ):
            raise RequestRejected(ErrorCode.NOT_FOUND, f"no key {key_id} in org {org!r}")
        await self._store.revoke_api_key(key_id)
        revoked = await self._store.get_api_key(key_id)
        assert revoked is not None, "keys are never deleted"
        return revoked
