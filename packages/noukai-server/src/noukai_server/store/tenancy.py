"""Orgs and projects: created on first use, addressed by slug."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from . import validate
from .db import dialect_insert
from .records import ProjectRecord
from .schema import orgs, projects


def _project(row: sa.Row[tuple[object, ...]]) -> ProjectRecord:
    m = row._mapping
    return ProjectRecord(id=m["id"], org_id=m["org_id"], slug=m["slug"], created_at=m["created_at"])


async def ensure_org(conn: AsyncConnection, org: str, now: datetime) -> None:
    validate.slug(org, "org")
    stmt = dialect_insert(conn, orgs).values(id=org, created_at=now).on_conflict_do_nothing()
    await conn.execute(stmt)


async def get_project(conn: AsyncConnection, org: str, project: str) -> ProjectRecord | None:
    row = (
        await conn.execute(sa.select(projects).where(projects.c.org_id == org, projects.c.slug == project))
    ).first()
    return None if row is None else _project(row)


async def ensure_project(conn: AsyncConnection, org: str, project: str, now: datetime) -> ProjectRecord:
    validate.slug(project, "project")
    await ensure_org(conn, org, now)
    stmt = (
        dialect_insert(conn, projects)
        .values(id=str(uuid.uuid4()), org_id=org, slug=project, created_at=now)
        .on_conflict_do_nothing()
    )
    await conn.execute(stmt)
    record = await get_project(conn, org, project)
    assert record is not None, "inserted or already present in this transaction"
    return record
