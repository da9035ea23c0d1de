"""Alembic, configured in code: the migrations ship inside the package, no alembic.ini needed."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncConnection

from .db import Database
from .errors import SchemaMismatch

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# Any constant will do: it names the PostgreSQL advisory lock that stops two processes starting at
# once from both running the migrations.
_PG_MIGRATION_LOCK = 0x6E6F756B6169


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the package ships at least one migration"
    return head


async def upgrade_database(url: str) -> None:
    """Bring the database at `url` to the newest schema (`alembic upgrade head`), atomically.

    Works on an empty SQLite file (created if missing) and an empty PostgreSQL database.
    """
    db = await Database.open(url)
    try:
        await upgrade(db)
    finally:
        await db.close()


async def upgrade(db: Database) -> None:
    async def work(conn: AsyncConnection) -> None:
        if db.dialect == "postgresql":
            await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_MIGRATION_LOCK)))
        await conn.run_sync(_upgrade_sync)

    await db.write(work)


def _upgrade_sync(connection: sa.Connection) -> None:
    config = alembic_config()
    # env.py runs the migrations on this connection, inside our transaction.
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def current_revision(conn: AsyncConnection) -> str | None:
    def _read(connection: sa.Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    return await conn.run_sync(_read)


async def check_schema(db: Database) -> None:
    """Raise `SchemaMismatch` unless the database is at the newest revision."""
    async with db.read() as conn:
        current = await current_revision(conn)
    head = head_revision()
    if current != head:
        raise SchemaMismatch(
            f"database schema is at revision {current or '<empty>'}, this code needs {head}: "
            "run the migrations first"
        )
