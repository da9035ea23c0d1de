"""Saving and publishing flow documents: one path for the HTTP API and the CLI alike."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from noukai.types.errors import ErrorCode
from noukai_server.engine import FunctionRegistry
from noukai_server.engine.tool_source import ToolSource
from noukai_server.flows import (
    MAX_NESTING,
    FlowIssue,
    FlowSpec,
    FlowValidationError,
    load_flow,
    nests_too_deep,
    parse_off_loop,
)
from noukai_server.providers import ModelRegistry
from noukai_server.runtime.errors import RequestRejected
from noukai_server.runtime.flow_graph import refuse_cycles
from noukai_server.store import FlowRecord, FlowVersionRecord, Store

T = TypeVar("T")


def parse_flow_document(
    source: str | bytes | Mapping[str, Any],
    *,
    slug: str | None = None,
    filename: str | None = None,
    known_functions: Collection[str] | None = None,
    known_tools: Collection[str] | None = None,
    known_providers: Collection[str] | None = None,
    function_signatures: Mapping[str, inspect.Signature] | None = None,
) -> FlowSpec:
    """Validate a flow; a `slug` from the address fills in a document without one and must match
    a document that has one. `known_providers` and `function_signatures`, when given, check each
    model's provider and each python step's `args` (see `load_flow`)."""
    if isinstance(source, Mapping) and slug is not None and "slug" not in source:
        source = {**source, "slug": slug}
    spec = load_flow(
        source,
        filename=filename,
        known_functions=known_functions,
        known_tools=known_tools,
        known_providers=known_providers,
        function_signatures=function_signatures,
    )
    if slug is not None and spec.slug != slug:
        message = f"field 'slug': the document says {spec.slug!r} but it is saved as {slug!r}"
        raise FlowValidationError(
            "INVALID_TREE",
            [FlowIssue(message=message, step_id=None, step_index=None, field="slug", line=None)],
        )
    return spec


@dataclass(frozen=True, slots=True)
class FlowChecks:
    """What a flow is checked against before it is saved: the functions (with their signatures),
    tools and model providers of the server that will run it. The HTTP API and the CLI's local
    push and `--flows` loading use the same checks, so a flow refused by one is refused by all."""

    functions: frozenset[str]
    tools: frozenset[str]
    providers: tuple[str, ...]
    signatures: Mapping[str, inspect.Signature]

    @classmethod
    def of(cls, functions: FunctionRegistry, tools: ToolSource, models: ModelRegistry) -> FlowChecks:
        return cls(
            frozenset(functions.names()),
            frozenset(tools.names()),
            tuple(models.providers()),
            functions.signatures(),
        )

    def parse(
        self,
        source: str | bytes | Mapping[str, Any],
        *,
        slug: str | None = None,
        filename: str | None = None,
    ) -> FlowSpec:
        """`parse_flow_document` with every check; raises `FlowValidationError`."""
        return parse_flow_document(
            source,
            slug=slug,
            filename=filename,
            known_functions=self.functions,
            known_tools=self.tools,
            known_providers=self.providers,
            function_signatures=self.signatures,
        )


async def save_flow(
    store: Store, org: str, project: str, spec: FlowSpec, *, publish: bool = False
) -> tuple[FlowRecord, FlowVersionRecord | None]:
    """Save `spec` as the flow's draft (and publish it when asked). Every path that stores a flow
    document comes through here (HTTP, `flows push --local`, `--flows` folders), so each refuses
    a flow that runs itself (`RequestRejected(FLOW_CYCLE)`) the same way."""
    await refuse_cycles(store, org, project, spec)  # `flow` steps and `flow:` tools
    flow = await store.save_draft(org, project, spec.slug, spec.to_document(), spec.name)
    version = await store.publish(flow.id) if publish else None
    return flow, version


def _flow_json(flow: FlowRecord, org: str, latest: int | None) -> dict[str, Any]:
    return {
        "id": flow.id,
        "org": org,
        "project": flow.project_slug,
        "slug": flow.slug,
        "name": flow.name,
        "draftRevision": flow.draft_revision,
        "latestVersion": latest,
        "draft": flow.draft,
        "createdAt": flow.created_at.isoformat(),
        "updatedAt": flow.updated_at.isoformat(),
    }


def _version_json(version: FlowVersionRecord, *, document: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"version": version.version, "createdAt": version.created_at.isoformat()}
    if document:
        body["document"] = version.document
    return body


FLOW_TOO_DEEP = f"flow document nests deeper than {MAX_NESTING} levels"


def refuse_deep_document(raw: bytes) -> None:
    """INVALID_TREE when `raw` nests deeper than `MAX_NESTING`: decided in a few C-speed passes,
    so such a document never reaches a parser (a 200 KB one froze the server in YAML's)."""
    if nests_too_deep(raw):
        issue = {"message": FLOW_TOO_DEEP, "stepId": None, "stepIndex": None, "field": None, "line": None}
        raise RequestRejected(ErrorCode.INVALID_TREE, FLOW_TOO_DEEP, issues=[issue])


async def parse_body_off_loop(parse: Callable[[bytes], T], raw: bytes) -> T:
    """`parse(raw)` on the flow parsing thread (see `flows.parse_off_loop`): routers parse request
    bodies there rather than on the event loop."""
    return await parse_off_loop(parse, raw)


def _invalid(exc: FlowValidationError) -> RequestRejected:
    issues = [
        {
            "message": i.message,
            "stepId": i.step_id,
            "stepIndex": i.step_index,
            "field": i.field,
            "line": i.line,
        }
        for i in exc.issues
    ]
    return RequestRejected(ErrorCode(exc.code), exc.message, issues=issues)


class FlowAdmin:
    """Flow management for the HTTP API: each method answers with the JSON body to send, and
    refuses with `RequestRejected`."""

    def __init__(
        self,
        store: Store,
        checks: FlowChecks,
    ) -> None:
        self._store = store
        self._checks = checks

    async def _flow(self, org: str, project: str, slug: str) -> FlowRecord:
        flow = await self._store.get_flow(org, project, slug)
        if flow is None:
            raise RequestRejected(ErrorCode.FLOW_NOT_FOUND, f"no flow {org}/{project}/{slug}")
        return flow

    async def _flow_view(self, org: str, flow: FlowRecord) -> dict[str, Any]:
        latest = await self._store.latest_version(flow.id)
        return _flow_json(flow, org, latest.version if latest else None)

    async def save_draft(
        self, org: str, project: str, slug: str, source: Any, *, filename: str
    ) -> dict[str, Any]:
        """Validate the document (parsed JSON, or JSON/YAML text) and make it the flow's draft,
        creating the flow if needed. Published versions are never changed."""
        try:
            # Off the event loop, a few at a time: a large document takes a while to parse.
            spec = await parse_off_loop(self._checks.parse, source, slug=slug, filename=filename)
        except FlowValidationError as exc:
            raise _invalid(exc) from exc
        flow, _ = await save_flow(self._store, org, project, spec)
        return await self._flow_view(org, flow)

    async def publish(self, org: str, project: str, slug: str) -> dict[str, Any]:
        """Freeze the current draft as the next numbered version."""
        flow = await self._flow(org, project, slug)
        version = await self._store.publish(flow.id)
        return _version_json(version, document=False)

    async def get(self, org: str, project: str, slug: str) -> dict[str, Any]:
        return await self._flow_view(org, await self._flow(org, project, slug))

    async def list_versions(self, org: str, project: str, slug: str) -> dict[str, Any]:
        flow = await self._flow(org, project, slug)
        versions = await self._store.list_versions(flow.id)
        return {"versions": [_version_json(v, document=False) for v in versions]}

    async def get_version(self, org: str, project: str, slug: str, version: int) -> dict[str, Any]:
        flow = await self._flow(org, project, slug)
        record = await self._store.get_version(flow.id, version)
        if record is None:
            raise RequestRejected(
                ErrorCode.FLOW_NOT_FOUND, f"flow {org}/{project}/{slug} has no version {version}"
            )
        return _version_json(record, document=True)

    async def list_flows(self, org: str, project: str) -> dict[str, Any]:
        flows = await self._store.list_flows(org, project)
        return {
            "flows": [
                {
                    "id": f.id,
                    "slug": f.slug,
                    "name": f.name,
                    "draftRevision": f.draft_revision,
                    "updatedAt": f.updated_at.isoformat(),
                }
                for f in flows
            ]
        }
