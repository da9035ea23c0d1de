from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from noukai_server.store import SchemaMismatch, Store, upgrade_database
from noukai_server.store.db import Database
from noukai_server.store.migrate import head_revision
from noukai_server.store.schema import metadata

pytestmark = pytest.mark.anyio


async def _diff(url: str, target: sa.MetaData = metadata) -> list[object]:
    db = await Database.open(url)
    try:
        async with db.read() as conn:

            def compare(connection: sa.Connection) -> list[object]:
                context = MigrationContext.configure(connection, opts={"compare_type": True})
                return list(compare_metadata(context, target))

            return await conn.run_sync(compare)
    finally:
        await db.close()


async def _tables(url: str) -> set[str]:
    db = await Database.open(url)
    try:
        async with db.read() as conn:
            return set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))
    finally:
        await db.close()


async def test_upgrade_empty_database_creates_every_table(db_url: str) -> None:
    await upgrade_database(db_url)
    assert await _tables(db_url) == set(metadata.tables) | {"alembic_version"}


async def test_upgrade_is_idempotent(db_url: str) -> None:
    await upgrade_database(db_url)
    await upgrade_database(db_url)
    async with await Store.connect(db_url, migrate=False) as store:
        assert store.dialect in {"sqlite", "postgresql"}


async def test_no_autogenerate_difference_after_upgrade(db_url: str) -> None:
    await upgrade_database(db_url)
    assert await _diff(db_url) == []


async def test_comparison_does_detect_a_difference(db_url: str) -> None:
    # The empty diff above means something only if the comparison can see a difference at all.
    await upgrade_database(db_url)
    other = sa.MetaData()
    for table in metadata.tables.values():
        table.to_metadata(other)
    sa.Table("extra", other, sa.Column("id", sa.Integer, primary_key=True))
    diff = await _diff(db_url, other)
    assert [entry[0] for entry in diff if isinstance(entry, tuple)] == ["add_table"]


async def test_connect_without_migrate_refuses_an_empty_database(db_url: str) -> None:
    with pytest.raises(SchemaMismatch, match="<empty>"):
        await Store.connect(db_url, migrate=False)


async def test_connect_migrates_by_default(db_url: str) -> None:
    store = await Store.connect(db_url)
    await store.close()
    db = await Database.open(db_url)
    try:
        async with db.read() as conn:
            version = (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).scalar_one()
    finally:
        await db.close()
    assert version == head_revision()


async def test_concurrent_upgrades_of_one_empty_database_take_turns(db_url: str) -> None:
    await asyncio.gather(*(upgrade_database(db_url) for _ in range(3)))
    assert await _diff(db_url) == []


def test_alembic_command_line_path(db_url: str) -> None:
    # env.py connects by itself when alembic is driven without a connection (writing revisions).
    from alembic import command

    from noukai_server.store.migrate import alembic_config

    command.upgrade(alembic_config(db_url), "head")
    assert asyncio.run(_diff(db_url)) == []


def test_alembic_offline_sql(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    from alembic import command

    from noukai_server.store.migrate import alembic_config

    command.upgrade(alembic_config(db_url), "head", sql=True)
    out = capsys.readouterr().out
    assert "CREATE TABLE runs" in out
    assert "CREATE INDEX ix_runs_claimable" in out


def test_alembic_without_url_or_connection_explains() -> None:
    from alembic import command

    from noukai_server.store.migrate import alembic_config

    with pytest.raises(RuntimeError, match=r"sqlalchemy\.url"):
        command.upgrade(alembic_config(), "head")
