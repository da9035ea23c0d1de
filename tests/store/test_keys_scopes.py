"""Key scopes and expiry in the store: written on creation, read back by both authentication paths
(SQLite's raw hot path and SQLAlchemy's, on PostgreSQL), and an expired key told apart from a
wrong one only after its secret matched."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from noukai_server.store import KEY_SCOPES, ApiKeyExpired, Store
from noukai_server.store.keys import DEFAULT_SCOPE, generate_api_key, hash_api_key, parse_api_key
from noukai_server.store.schema import api_keys
from tests.store.conftest import FakeClock

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("scope", KEY_SCOPES)
async def test_scope_is_written_and_read_back(store: Store, scope: str) -> None:
    record, key = await store.create_api_key("acme", "web", scope=scope)
    assert record.scopes == scope
    authed = await store.authenticate(key)
    assert authed is not None
    assert authed.scopes == scope
    [listed] = await store.list_api_keys("acme")
    assert listed.scopes == scope


async def test_keys_default_to_admin(store: Store) -> None:
    record, key = await store.create_api_key("acme")
    assert DEFAULT_SCOPE == "admin"
    assert record.scopes == "admin"
    authed = await store.authenticate(key)
    assert authed is not None
    assert authed.scopes == "admin"


async def test_unknown_scope_is_refused_and_nothing_written(store: Store) -> None:
    with pytest.raises(ValueError, match="unknown scope 'owner'"):
        await store.create_api_key("acme", scope="owner")
    assert await store.list_api_keys("acme") == []


async def test_a_naive_expiry_is_refused(store: Store, clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="time zone"):
        await store.create_api_key("acme", expires_at=clock().replace(tzinfo=None))
    assert await store.list_api_keys("acme") == []


async def test_keys_made_before_scopes_existed_are_admin(store: Store, clock: FakeClock) -> None:
    """Migration 0005's server default: a row written without `scopes`, as every key was before."""
    await store.create_api_key("old")  # creates the org
    key_id, key = generate_api_key()
    row = {"id": key_id, "org_id": "old", "key_hash": hash_api_key(key), "created_at": clock()}

    async def insert(conn: AsyncConnection) -> None:
        await conn.execute(sa.insert(api_keys).values(**row))

    await store._db.write(insert)
    authed = await store.authenticate(key)
    assert authed is not None
    assert (authed.scopes, authed.expires_at) == ("admin", None)


async def test_expiry_is_written_and_the_key_works_until_then(store: Store, clock: FakeClock) -> None:
    expires = clock() + timedelta(hours=1)
    record, key = await store.create_api_key("acme", "web", scope="read", expires_at=expires)
    assert record.expires_at == expires
    authed = await store.authenticate(key)
    assert authed is not None
    assert authed.expires_at == expires
    clock.advance(3599)
    assert await store.authenticate(key) is not None


async def test_an_expired_key_raises_saying_when(store: Store, clock: FakeClock) -> None:
    expires = clock() + timedelta(minutes=5)
    record, key = await store.create_api_key("acme", expires_at=expires)
    clock.advance(300)  # exactly at expiry: expired
    with pytest.raises(ApiKeyExpired) as caught:
        await store.authenticate(key)
    assert caught.value.key_id == record.id
    assert caught.value.expires_at == expires
    [listed] = await store.list_api_keys("acme")
    assert listed.last_used_at is None  # an expired key's use is not recorded as a use


async def test_an_expired_key_with_a_wrong_secret_is_just_refused(store: Store, clock: FakeClock) -> None:
    """Only the holder of the secret learns that the key expired: a guess gets the plain None."""
    _, key = await store.create_api_key("acme", expires_at=clock() + timedelta(seconds=1))
    clock.advance(2)
    assert await store.authenticate(f"nk_{parse_api_key(key)}_{'A' * 43}") is None


async def test_a_revoked_expired_key_is_refused_as_revoked(store: Store, clock: FakeClock) -> None:
    record, key = await store.create_api_key("acme", expires_at=clock() + timedelta(seconds=1))
    await store.revoke_api_key(record.id)
    clock.advance(2)
    assert await store.authenticate(key) is None


async def test_list_without_an_org_lists_every_org(store: Store) -> None:
    a, _ = await store.create_api_key("acme")
    g, _ = await store.create_api_key("globex", "web", scope="run")
    listed = await store.list_api_keys(None)
    assert [(k.id, k.org_id, k.scopes) for k in listed] == [(a.id, "acme", "admin"), (g.id, "globex", "run")]
