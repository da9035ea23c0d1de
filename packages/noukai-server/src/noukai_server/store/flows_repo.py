"""Flows (an editable draft per `org/project/slug`) and their immutable published versions."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from . import validate
from .db import dialect_insert
from .errors import FlowNotFound
from .records import FlowHead, FlowRecord, FlowVersionRecord
from .schema import flow_versions, flows, projects
from .tenancy import ensure_project


def _select() -> sa.Select[tuple[object, ...]]:
    return sa.select(*flows.c, projects.c.slug.label("project_slug")).join_from(
        flows, projects, projects.c.id == flows.c.project_id
    )


def _flow(row: sa.Row[tuple[object, ...]]) -> FlowRecord:
    m = row._mapping
    return FlowRecord(
        id=m["id"],
        org_id=m["org_id"],
        project_id=m["project_id"],
        project_slug=m["project_slug"],
        slug=m["slug"],
        name=m["name"],
        draft=m["draft"],
        draft_revision=m["draft_revision"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


def _version(row: sa.Row[tuple[object, ...]]) -> FlowVersionRecord:
    m = row._mapping
    return FlowVersionRecord(
        flow_id=m["flow_id"], version=m["version"], document=m["document"], created_at=m["created_at"]
    )


async def save_draft(
    conn: AsyncConnection,
    org: str,
    project: str,
    slug: str,
    document: dict[str, Any],
    name: str | None,
    now: datetime,
) -> FlowRecord:
    """Create the flow (revision 1) or replace its draft and name (revision + 1), atomically."""
    validate.slug(slug, "flow slug")
    project_record = await ensure_project(conn, org, project, now)
    insert = dialect_insert(conn, flows).values(
        id=str(uuid.uuid4()),
        org_id=org,
        project_id=project_record.id,
        slug=slug,
        name=name,
        draft=document,
        draft_revision=1,
        created_at=now,
        updated_at=now,
    )
    upsert = insert.on_conflict_do_update(
        index_elements=[flows.c.project_id, flows.c.slug],
        set_={
            "name": insert.excluded.name,
            "draft": insert.excluded.draft,
            "draft_revision": flows.c.draft_revision + 1,
            "updated_at": insert.excluded.updated_at,
        },
    ).returning(flows.c.id)
    flow_id = (await conn.execute(upsert)).scalar_one()
    record = await get_flow_by_id(conn, flow_id)
    assert record is not None
    return record


async def get_flow(conn: AsyncConnection, org: str, project: str, slug: str) -> FlowRecord | None:
    stmt = _select().where(projects.c.org_id == org, projects.c.slug == project, flows.c.slug == slug)
    row = (await conn.execute(stmt)).first()
    return None if row is None else _flow(row)


async def get_flow_by_id(conn: AsyncConnection, flow_id: str) -> FlowRecord | None:
    row = (await conn.execute(_select().where(flows.c.id == flow_id))).first()
    return None if row is None else _flow(row)


async def list_flows(conn: AsyncConnection, org: str, project: str | None) -> list[FlowRecord]:
    """The project's flows by slug; every project's (by project, then slug) when `project` is None."""
    stmt = _select().where(projects.c.org_id == org)
    if project is None:
        stmt = stmt.order_by(projects.c.slug, flows.c.slug)
    else:
        stmt = stmt.where(projects.c.slug == project).order_by(flows.c.slug)
    return [_flow(row) for row in await conn.execute(stmt)]


async def publish(conn: AsyncConnection, flow_id: str, now: datetime) -> FlowVersionRecord:
    """Freeze the current draft as the next version number.

    The flow row is locked first (`FOR UPDATE` on PostgreSQL; the single writer on SQLite), so two
    concurrent publishes of one flow take turns and never compute the same number.
    """
    draft = (
        await conn.execute(sa.select(flows.c.draft).where(flows.c.id == flow_id).with_for_update())
    ).first()
    if draft is None:
        raise FlowNotFound(f"no flow with id {flow_id!r}")
    latest = (
        await conn.execute(
            sa.select(sa.func.coalesce(sa.func.max(flow_versions.c.version), 0)).where(
                flow_versions.c.flow_id == flow_id
            )
        )
    ).scalar_one()
    stmt = (
        sa.insert(flow_versions)
        .values(flow_id=flow_id, version=latest + 1, document=draft.draft, created_at=now)
        .returning(*flow_versions.c)
    )
    return _version((await conn.execute(stmt)).one())


async def list_versions(conn: AsyncConnection, flow_id: str) -> list[FlowVersionRecord]:
    stmt = (
        sa.select(flow_versions).where(flow_versions.c.flow_id == flow_id).order_by(flow_versions.c.version)
    )
    return [_version(row) for row in await conn.execute(stmt)]


async def get_version(conn: AsyncConnection, flow_id: str, version: int) -> FlowVersionRecord | None:
    stmt = sa.select(flow_versions).where(
        flow_versions.c.flow_id == flow_id, flow_versions.c.version == version
    )
    row = (await conn.execute(stmt)).first()
    return None if row is None else _version(row)


async def latest_version(conn: AsyncConnection, flow_id: str) -> FlowVersionRecord | None:
    stmt = (
        sa.select(flow_versions)
        .where(flow_versions.c.flow_id == flow_id)
        .order_by(flow_versions.c.version.desc())
        .limit(1)
    )
    row = (await conn.execute(stmt)).first()
    return None if row is None else _version(row)


async def get_flow_head(conn: AsyncConnection, org: str, project: str, slug: str) -> FlowHead | None:
    latest = (
        sa.select(sa.func.max(flow_versions.c.version))
        .where(flow_versions.c.flow_id == flows.c.id)
        .scalar_subquery()
    )
    stmt = sa.select(
        flows.c.id, flows.c.org_id, flows.c.project_id, flows.c.draft_revision, latest.label("latest")
    ).where(projects.c.id == flows.c.project_id, projects.c.org_id == org, projects.c.slug == project)
    row = (await conn.execute(stmt.where(flows.c.slug == slug))).first()
    return (
        None if row is None else FlowHead(row.id, row.org_id, row.project_id, row.draft_revision, row.latest)
    )


async def get_document(
    conn: AsyncConnection, flow_id: str, version: int
) -> tuple[dict[str, Any], int] | None:
    """`(document, revision)` of the draft (version 0; revision is the draft's) or of version N
    (revision 0); None if there is no such flow or version."""
    if version == 0:
        stmt = sa.select(flows.c.draft, flows.c.draft_revision).where(flows.c.id == flow_id)
        row = (await conn.execute(stmt)).first()
        return None if row is None else (row.draft, row.draft_revision)
    stmt = sa.select(flow_versions.c.document).where(
        flow_versions.c.flow_id == flow_id, flow_versions.c.version == version
    )
    document = (await conn.execute(stmt)).scalar_one_or_none()
    return None if document is None else (document, 0)
