"""Alembic environment for the Noukai store.

Normally driven by `noukai_server.store.migrate`, which passes an open connection (inside a transaction)
in `config.attributes["connection"]`. Run through the `alembic` command line instead (to write a
new revision), it connects to the configured `sqlalchemy.url` itself.
"""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from alembic import context

from noukai_server.store.db import Database
from noukai_server.store.schema import metadata

config = context.config


def _configure(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things: future migrations use batch mode (copy-and-move).
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def _run_on(connection: sa.Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


async def _run_standalone(url: str) -> None:
    db = await Database.open(url)
    try:
        await db.write(lambda conn: conn.run_sync(_run_on))
    finally:
        await db.close()


def _main() -> None:
    if context.is_offline_mode():
        context.configure(
            url=config.get_main_option("sqlalchemy.url"),
            target_metadata=metadata,
            literal_binds=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_on(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set sqlalchemy.url (or pass a connection) to run the Noukai migrations")
    asyncio.run(_run_standalone(url))


_main()
