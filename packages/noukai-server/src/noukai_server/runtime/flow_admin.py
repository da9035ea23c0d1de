"""Saving and publishing flow documents: one path for the HTTP API and the CLI alike."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from noukai_server.flows import FlowIssue, FlowSpec, FlowValidationError, load_flow
from noukai_server.store import FlowRecord, FlowVersionRecord, Store


def parse_flow_document(
    source: str | bytes | Mapping[str, Any],
    *,
    slug: str | None = None,
    filename: str | None = None,
    known_functions: Collection[str] | None = None,
    known_tools: Collection[str] | None = None,
) -> FlowSpec:
    """Validate a flow; a `slug` from the address fills in a document without one and must match
    a document that has one."""
    if isinstance(source, Mapping) and slug is not None and "slug" not in source:
        source = {**source, "slug": slug}
    spec = load_flow(source, filename=filename, known_functions=known_functions, known_tools=known_tools)
    if slug is not None and spec.slug != slug:
        message = f"field 'slug': the document says {spec.slug!r} but it is saved as {slug!r}"
        raise FlowValidationError(
            "INVALID_TREE",
            [FlowIssue(message=message, step_id=None, step_index=None, field="slug", line=None)],
        )
    return spec


async def save_flow(
    store: Store, org: str, project: str, spec: FlowSpec, *, publish: bool = False
) -> tuple[FlowRecord, FlowVersionRecord | None]:
    flow = await store.save_draft(org, project, spec.slug, spec.to_document(), spec.name)
    version = await store.publish(flow.id) if publish else None
    return flow, version
