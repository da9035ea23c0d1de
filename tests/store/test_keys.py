from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from noukai_server.store import Store
from noukai_server.store.keys import generate_api_key, hash_api_key, parse_api_key
from noukai_server.store.schema import metadata

pytestmark = pytest.mark.anyio


def test_generated_keys_have_the_documented_shape() -> None:
    key_id, key = generate_api_key()
    assert re.fullmatch(r"[0-9a-f]{12}", key_id)
    assert key.startswith(f"nk_{key_id}_")
    assert len(key.split("_", 2)[2]) >= 32
    assert parse_api_key(key) == key_id


@pytest.mark.parametrize(
    "key",
    [
        "",
        "nk_",
        "nk_0123456789ab_short",
        "nk_0123456789AB_" + "x" * 40,  # uppercase id
        "nk_0123456789a_" + "x" * 40,  # 11-char id
        "sk_0123456789ab_" + "x" * 40,
        "nk_0123456789ab_" + "x" * 40 + "!",
        "nk_0123456789ab_" + "x" * 300,  # absurdly long
        " nk_0123456789ab_" + "x" * 40,
    ],
)
def test_malformed_keys_do_not_parse(key: str) -> None:
    assert parse_api_key(key) is None


def test_non_string_keys_do_not_parse() -> None:
    assert parse_api_key(None) is None
    assert parse_api_key(b"nk_0123456789ab_" + b"x" * 40) is None


@given(st.text(max_size=300))
def test_parse_never_raises(text: str) -> None:
    result = parse_api_key(text)
    assert result is None or text.startswith(f"nk_{result}_")


async def test_create_and_authenticate(store: Store) -> None:
    record, key = await store.create_api_key("acme", "web", name="ci")
    assert (record.org_id, record.project_slug, record.name) == ("acme", "web", "ci")
    project = await store.get_project("acme", "web")
    assert project is not None
    assert record.project_id == project.id
    authed = await store.authenticate(key)
    assert authed is not None
    assert authed.id == record.id
    assert authed.project_id == project.id


async def test_org_wide_key(store: Store) -> None:
    record, key = await store.create_api_key("acme")
    assert record.project_id is None
    assert record.project_slug is None
    authed = await store.authenticate(key)
    assert authed is not None
    assert authed.org_id == "acme"
    assert authed.project_id is None


async def test_plaintext_is_never_stored(store: Store) -> None:
    record, key = await store.create_api_key("acme", "web", name="ci")
    secret = key.split("_", 2)[2]
    async with store._db.read() as conn:
        for table in metadata.sorted_tables:
            for row in await conn.execute(sa.select(table)):
                for value in row:
                    assert secret not in str(value), f"{table.name} holds the key's secret"
        stored = (await conn.execute(sa.text("SELECT key_hash FROM api_keys"))).scalar_one()
    assert stored == hash_api_key(key)
    assert not hasattr(record, "key_hash")


async def test_wrong_secret_is_refused(store: Store) -> None:
    _, key = await store.create_api_key("acme", "web")
    key_id = parse_api_key(key)
    assert await store.authenticate(f"nk_{key_id}_{'A' * 43}") is None


async def test_unknown_id_is_refused(store: Store) -> None:
    await store.create_api_key("acme", "web")
    assert await store.authenticate("nk_000000000000_" + "x" * 43) is None


async def test_malformed_key_is_refused(store: Store) -> None:
    _, key = await store.create_api_key("acme", "web")
    for bad in ("", "Bearer " + key, key[:-20], key + " ", key.upper()):
        assert await store.authenticate(bad) is None


async def test_revoked_key_is_refused(store: Store) -> None:
    record, key = await store.create_api_key("acme", "web")
    assert await store.revoke_api_key(record.id) is True
    assert await store.authenticate(key) is None
    assert await store.revoke_api_key(record.id) is False  # already revoked
    assert await store.revoke_api_key("000000000000") is False  # unknown
    [listed] = await store.list_api_keys("acme")
    assert listed.revoked
    assert listed.revoked_at is not None


async def test_last_used_is_written_at_most_once_a_minute(store: Store, clock) -> None:  # type: ignore[no-untyped-def]
    record, key = await store.create_api_key("acme")
    assert record.last_used_at is None
    first = await store.authenticate(key)
    assert first is not None
    assert first.last_used_at is not None
    clock.advance(30)
    second = await store.authenticate(key)
    assert second is not None
    assert second.last_used_at == first.last_used_at
    clock.advance(31)
    third = await store.authenticate(key)
    assert third is not None
    assert third.last_used_at is not None
    assert third.last_used_at > first.last_used_at


async def test_list_api_keys_is_per_org(store: Store) -> None:
    a1, _ = await store.create_api_key("acme", "web", name="one")
    a2, _ = await store.create_api_key("acme", None, name="two")
    await store.create_api_key("globex", "web")
    assert [k.id for k in await store.list_api_keys("acme")] == [a1.id, a2.id]
    assert await store.list_api_keys("nobody") == []


async def test_key_id_collision_is_retried(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from noukai_server.store import keys

    first, first_key = await store.create_api_key("acme")
    real = keys.generate_api_key
    calls = iter([(first.id, f"nk_{first.id}_{'c' * 43}")])
    monkeypatch.setattr(keys, "generate_api_key", lambda: next(calls, None) or real())
    second, second_key = await store.create_api_key("acme")
    assert second.id != first.id
    assert await store.authenticate(first_key) == await store.authenticate(first_key)  # untouched
    assert (await store.authenticate(second_key)) is not None


async def test_endless_key_id_collisions_fail_loudly(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from noukai_server.store import StoreError, keys

    first, _ = await store.create_api_key("acme")
    monkeypatch.setattr(keys, "generate_api_key", lambda: (first.id, f"nk_{first.id}_{'c' * 43}"))
    with pytest.raises(StoreError, match="free API key id"):
        await store.create_api_key("acme")
    assert len(await store.list_api_keys("acme")) == 1


async def test_key_revoked_between_check_and_touch_is_refused(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from noukai_server.store import keys

    record, key = await store.create_api_key("acme")
    touch = keys.touch_last_used

    async def revoke_then_touch(conn, key_id, now):  # type: ignore[no-untyped-def]
        await keys.revoke_api_key(conn, key_id, now)  # a concurrent revoke lands first
        await touch(conn, key_id, now)

    monkeypatch.setattr(keys, "touch_last_used", revoke_then_touch)
    assert await store.authenticate(key) is None
