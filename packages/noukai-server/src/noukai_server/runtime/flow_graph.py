"""The push-time cycle check of flows that run flows.

A flow pushed with `flow` steps or `flow:` agent tools is refused (`FLOW_CYCLE`) when the flows it
names, followed through what the store holds for them (a pinned version, else the newest
published version, else the draft), lead back to it. Only flows of the same org are followed: a
run never runs another org's flow. What changes later (a draft edited to point back) is not seen
here; the child runs' depth limit (`child_runs.MAX_DEPTH`) stops such a loop at run time.
"""

from __future__ import annotations

from typing import Final

from noukai.types.errors import ErrorCode
from noukai_server.flows import FlowAddress, FlowSpec, FlowValidationError, flow_references, load_flow
from noukai_server.runtime.errors import RequestRejected
from noukai_server.store import Store

MAX_VISITED: Final = 1000
"""Flows read at most by one check: a guard against a huge graph holding a push up."""


async def refuse_cycles(store: Store, org: str, project: str, spec: FlowSpec) -> None:
    """Raise `RequestRejected(FLOW_CYCLE)` when `spec`, saved as `org/project/<slug>`, would reach
    itself through the flows it runs."""
    home = FlowAddress(org, project, spec.slug)
    # The pushed document becomes the home flow's draft: a reference reaches it when it runs the
    # draft (version 0, or no version while the flow has no published one). A reference to one
    # of its published versions reaches what is stored, and is followed like any other.
    head = await store.get_flow_head(org, project, spec.slug)
    home_latest = None if head is None else head.latest_version
    # Depth first, each path kept so that the refusal can show the loop.
    stack: list[tuple[FlowSpec, tuple[FlowAddress, ...]]] = [(spec, (home,))]
    seen: set[tuple[FlowAddress, int | None]] = set()
    while stack:
        current, path = stack.pop()
        for reference in flow_references(current):
            address = reference.address
            if address.org != org:
                continue
            runs_draft = reference.version == 0 or (reference.version is None and home_latest is None)
            if address == home and runs_draft:
                loop = " -> ".join(str(a) for a in (*path, address))
                raise RequestRejected(
                    ErrorCode.FLOW_CYCLE,
                    f"flow {home} runs itself through the flows it names ({loop}); "
                    f"step '{_first_step(spec, path, reference.step_id)}' starts the loop",
                )
            key = (address, reference.version)
            if key in seen or len(seen) >= MAX_VISITED:
                continue
            seen.add(key)
            found = await _stored_spec(store, address, reference.version)
            if found is not None:
                stack.append((found, (*path, address)))


def _first_step(spec: FlowSpec, path: tuple[FlowAddress, ...], last_step: str) -> str:
    """The pushed flow's step that the loop goes through (its first hop)."""
    if len(path) == 1:
        return last_step
    first_hop = path[1]
    for reference in flow_references(spec):
        if reference.address == first_hop:
            return reference.step_id
    return last_step


async def _stored_spec(store: Store, address: FlowAddress, version: int | None) -> FlowSpec | None:
    """The version of `address` a run would take (None when there is none, or it no longer loads:
    a flow that cannot run cannot close a loop)."""
    head = await store.get_flow_head(address.org, address.project, address.slug)
    if head is None:
        return None
    if version is None:
        version = head.latest_version or 0
    found = await store.get_flow_document(head.id, version)
    if found is None:
        return None
    try:
        return load_flow(found[0])
    except FlowValidationError:
        return None
