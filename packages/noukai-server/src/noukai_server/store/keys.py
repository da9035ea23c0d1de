"""API keys: `nk_<id>_<secret>`, stored as a SHA-256 hash, never as plaintext.

`id` is 12 lowercase hex characters, the row's primary key, so authentication is one indexed
lookup; `secret` is `secrets.token_urlsafe(32)` (43 characters, 256 bits).

Why a plain SHA-256 and not a slow password hash (bcrypt, argon2): slow hashes exist to make
guessing *low-entropy* secrets (passwords) expensive. Our secrets are 256 random bits; nobody can
enumerate them whatever the hash costs, so a fast hash loses nothing, and it keeps authentication
cheap on every request.

A key has scopes (`SCOPES`, space-separated in `api_keys.scopes`) and may expire (`expires_at`).
Expiry is checked only after the hash comparison, so an expired key costs the same as any other
and only its holder (who presented the matching secret) learns that it expired.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from . import validate
from .db import dialect_insert
from .errors import StoreError
from .records import ApiKeyRecord
from .schema import api_keys, projects
from .tenancy import ensure_org, ensure_project

KEY_PREFIX = "nk_"
LAST_USED_RESOLUTION = timedelta(minutes=1)
"""`last_used_at` is written at most this often per key, so authentication stays a pure read."""

SCOPES = ("admin", "run", "read")
"""From most to least: `admin` manages flows, keys and credits; `run` starts and steers runs;
`read` reads. `api.auth.SCOPE_RANKS` says what each grants."""
DEFAULT_SCOPE = "admin"
"""What a key made without naming a scope gets: keys made before scopes existed were all-powerful
in their org, and the SDKs, the docs and the dev key push flows with such keys."""

_ID_ATTEMPTS = 5
_MAX_KEY_LENGTH = 256
_KEY_RE = re.compile(r"nk_([0-9a-f]{12})_([A-Za-z0-9_-]{32,})")
# Compared against when the key id is unknown, so that a miss costs the same hash-and-compare as a
# hit and response timing does not tell which key ids exist.
_DUMMY_HASH = hashlib.sha256(b"noukai-dummy-key").hexdigest()


class ApiKeyExpired(StoreError):
    """The key is genuine and not revoked, but its `expires_at` has passed."""

    def __init__(self, key_id: str, expires_at: datetime) -> None:
        super().__init__(f"API key {key_id} expired at {expires_at.isoformat()}")
        self.key_id = key_id
        self.expires_at = expires_at


def validate_scope(scope: str) -> str:
    """`scope` if it is one of `SCOPES`, else ValueError naming them."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}: use one of {', '.join(SCOPES)}")
    return scope


def is_expired(record: ApiKeyRecord, now: datetime) -> bool:
    return record.expires_at is not None and record.expires_at <= now


def check_not_expired(record: ApiKeyRecord, now: datetime) -> ApiKeyRecord:
    """`record`, or ApiKeyExpired."""
    if record.expires_at is not None and is_expired(record, now):
        raise ApiKeyExpired(record.id, record.expires_at)
    return record


def generate_api_key() -> tuple[str, str]:
    """A fresh `(key_id, plaintext_key)`."""
    key_id = secrets.token_hex(6)
    return key_id, f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def parse_api_key(key: object) -> str | None:
    """The key id embedded in `key`, or None if `key` is not shaped like one of our keys."""
    if not isinstance(key, str) or len(key) > _MAX_KEY_LENGTH:
        return None
    match = _KEY_RE.fullmatch(key)
    return None if match is None else match.group(1)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _select() -> sa.Select[tuple[object, ...]]:
    return sa.select(*api_keys.c, projects.c.slug.label("project_slug")).select_from(
        api_keys.outerjoin(projects, projects.c.id == api_keys.c.project_id)
    )


def _record(row: sa.Row[tuple[object, ...]]) -> ApiKeyRecord:
    m = row._mapping
    return ApiKeyRecord(
        id=m["id"],
        org_id=m["org_id"],
        project_id=m["project_id"],
        project_slug=m["project_slug"],
        name=m["name"],
        created_at=m["created_at"],
        last_used_at=m["last_used_at"],
        revoked_at=m["revoked_at"],
        scopes=m["scopes"],
        expires_at=m["expires_at"],
    )


async def get_api_key(conn: AsyncConnection, key_id: str) -> ApiKeyRecord | None:
    row = (await conn.execute(_select().where(api_keys.c.id == key_id))).first()
    return None if row is None else _record(row)


async def create_api_key(
    conn: AsyncConnection,
    org: str,
    project: str | None,
    name: str | None,
    now: datetime,
    *,
    scope: str = DEFAULT_SCOPE,
    expires_at: datetime | None = None,
) -> tuple[ApiKeyRecord, str]:
    validate.slug(org, "org")
    validate_scope(scope)
    if expires_at is not None and expires_at.tzinfo is None:
        raise ValueError("expires_at must carry a time zone")
    if project is None:
        await ensure_org(conn, org, now)
        project_id = None
    else:
        project_id = (await ensure_project(conn, org, project, now)).id
    for _ in range(_ID_ATTEMPTS):  # a 48-bit id collision is astronomically rare, but cheap to survive
        key_id, plaintext = generate_api_key()
        stmt = (
            dialect_insert(conn, api_keys)
            .values(
                id=key_id,
                org_id=org,
                project_id=project_id,
                name=name,
                key_hash=hash_api_key(plaintext),
                created_at=now,
                scopes=scope,
                expires_at=expires_at,
            )
            .on_conflict_do_nothing()
            .returning(api_keys.c.id)
        )
        # RETURNING, not rowcount: psycopg reports -1 for INSERT ... ON CONFLICT through SQLAlchemy.
        if (await conn.execute(stmt)).first() is not None:
            break
    else:
        raise StoreError(f"could not find a free API key id in {_ID_ATTEMPTS} attempts")
    record = await get_api_key(conn, key_id)
    assert record is not None
    return record, plaintext


async def find_for_authentication(conn: AsyncConnection, key: str) -> ApiKeyRecord | None:
    """The record of a genuine, unrevoked key; None for anything else (without saying why). An
    expired key's record is returned too: the caller checks `check_not_expired`."""
    key_id = parse_api_key(key)
    if key_id is None:
        return None
    row = (await conn.execute(_select().where(api_keys.c.id == key_id))).first()
    if row is None:
        verify(key, None, revoked=False)
        return None
    return (
        _record(row)
        if verify(key, row._mapping["key_hash"], revoked=bool(row._mapping["revoked_at"]))
        else None
    )


def verify(key: str, stored_hash: str | None, *, revoked: bool) -> bool:
    """Whether `key` matches `stored_hash` and is not revoked. The hashes are compared in constant
    time, and an unknown key id (`stored_hash` None) costs the same comparison, so timing says
    nothing about which ids exist."""
    presented = hash_api_key(key)
    if stored_hash is None:
        hmac.compare_digest(presented, _DUMMY_HASH)
        return False
    return hmac.compare_digest(presented, stored_hash) and not revoked


def last_used_is_stale(record: ApiKeyRecord, now: datetime) -> bool:
    return record.last_used_at is None or now - record.last_used_at >= LAST_USED_RESOLUTION


async def touch_last_used(conn: AsyncConnection, key_id: str, now: datetime) -> None:
    """Set `last_used_at = now` unless another request already did within the resolution."""
    stale = sa.or_(api_keys.c.last_used_at.is_(None), api_keys.c.last_used_at <= now - LAST_USED_RESOLUTION)
    await conn.execute(sa.update(api_keys).where(api_keys.c.id == key_id, stale).values(last_used_at=now))


async def revoke_api_key(conn: AsyncConnection, key_id: str, now: datetime) -> bool:
    result = await conn.execute(
        sa.update(api_keys)
        .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=now)
        .returning(api_keys.c.id)
    )
    return result.first() is not None


async def list_api_keys(conn: AsyncConnection, org: str | None) -> list[ApiKeyRecord]:
    """The org's keys (every org's with None), oldest first."""
    query = _select().order_by(api_keys.c.org_id, api_keys.c.created_at, api_keys.c.id)
    if org is not None:
        query = query.where(api_keys.c.org_id == org)
    return [_record(row) for row in await conn.execute(query)]
