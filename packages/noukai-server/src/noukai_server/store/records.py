"""The immutable values that go into and come out of the store.

Every timestamp is a timezone-aware UTC `datetime`. JSON columns come back as plain Python values
(`dict`, `list`, `str`, ...); event payloads come back as the exact `str` that was stored.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, TypeAlias

RunStatus: TypeAlias = Literal["queued", "running", "waiting", "completed", "failed", "cancelled"]
TriggerType: TypeAlias = Literal["execute", "step", "job"]

RUN_STATUSES: Final[tuple[RunStatus, ...]] = (
    "queued",
    "running",
    "waiting",
    "completed",
    "failed",
    "cancelled",
)
TERMINAL_STATUSES: Final[frozenset[RunStatus]] = frozenset({"completed", "failed", "cancelled"})
TRIGGER_TYPES: Final[tuple[TriggerType, ...]] = ("execute", "step", "job")


class _Unset(enum.Enum):
    UNSET = enum.auto()

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset.UNSET
"""Marks a `RunUpdate` field that must be left as it is (distinct from `None`, which sets NULL)."""


@dataclass(frozen=True, slots=True)
class ProjectRecord:
    id: str
    org_id: str
    slug: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """An API key as stored: never the plaintext, only its hash (which this record does not carry)."""

    id: str
    org_id: str
    project_id: str | None
    """None for an org-wide key."""
    project_slug: str | None
    name: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    scopes: str = "admin"
    """What the key may do, space-separated: `admin`, `run`, `read`."""
    expires_at: datetime | None = None
    """When the key stops working; None: never."""

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True, slots=True)
class FlowRecord:
    id: str
    org_id: str
    project_id: str
    project_slug: str
    slug: str
    name: str | None
    draft: dict[str, Any]
    draft_revision: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class FlowHead:
    """What a request needs to address a flow, without reading any document: its ids, the draft's
    revision and the newest published version (None before the first publish)."""

    id: str
    org_id: str
    project_id: str
    draft_revision: int
    latest_version: int | None


@dataclass(frozen=True, slots=True)
class FlowVersionRecord:
    flow_id: str
    version: int
    document: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class EventRow:
    """One entry of a run's event log. `data` is the event serialised once, kept byte for byte."""

    seq: int
    type: str
    data: str
    created_at: datetime | None = None
    """Set by the store (now) when None on write; always set on read."""


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A run row: every column of `runs`, plus `created` (see `Store.create_run`)."""

    id: str
    org_id: str
    project_id: str
    flow_id: str
    flow_version: int
    """0 for a run of the draft."""
    flow_revision: int
    document: dict[str, Any]
    trigger_type: TriggerType
    session_id: str | None
    status: RunStatus
    cursor: int
    pause_after: int | None
    input: dict[str, Any]
    state: dict[str, Any]
    result: Any
    error: Any
    attempt: int
    lease_owner: str | None
    lease_expires_at: datetime | None
    available_at: datetime
    cancel_requested: bool
    last_seq: int
    idempotency_key: str | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    updated_at: datetime
    thread_id: str | None = None
    """The thread this run is a turn of (None: a run on its own)."""
    thread_ordinal: int | None = None
    """The run's position among its thread's runs (1, 2, 3 ...), in creation order."""
    api_key_id: str | None = None
    """The API key that started the run (None: started by the server itself, or before keys were
    recorded)."""
    request_hash: str | None = None
    """The fingerprint of the request that created the run with an idempotency key."""
    deadline_at: datetime | None = None
    """When the run must have ended (its total deadline); None: no deadline."""
    metadata: dict[str, str] = field(default_factory=dict)
    """The caller's key/value labels (`{}` when none); fixed when the run is created."""
    traceparent: str | None = None
    """The run's own W3C `traceparent` (its trace id and root span id); None: not recorded."""
    trace_parent_span_id: str | None = None
    """The caller's span the run's trace continues (from the request's `traceparent`)."""
    rerun_of: str | None = None
    """The run this one reruns (None: not a rerun)."""
    rerun_from_step: str | None = None
    """The step id a rerun started from (None: from the first step, or not a rerun)."""
    parent_run_id: str | None = None
    """The run whose `flow` step (or `flow:` tool) started this one; None: a top-level run."""
    parent_step_id: str | None = None
    """The parent's step that started this run."""
    depth: int = 0
    """How deep this run is nested: 0 for a top-level run, 1 for its child, and so on."""
    created: bool = False
    """True only on the record returned by the `create_run` call that inserted the row."""

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True, slots=True)
class RunHead:
    """What a reader of a run's log polls for: the run's status and the seq of its last stored
    event. Both change in the transaction that writes events, so a head whose `last_seq` a reader
    has already read means there is nothing new for it."""

    status: RunStatus
    last_seq: int

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True, slots=True)
class NewRun:
    """What `Store.create_run` inserts. The run starts `queued`, attempt 0, available now."""

    org_id: str
    project_id: str
    flow_id: str
    flow_version: int
    flow_revision: int
    document: dict[str, Any]
    trigger_type: TriggerType
    input: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    session_id: str | None = None
    cursor: int = 0
    pause_after: int | None = None
    idempotency_key: str | None = None
    id: str | None = None
    """A UUID string chosen by the caller, or None to let the store pick one."""
    thread: ThreadTurn | None = None
    """Run as the next turn of a thread (see `ThreadTurn`); None: a run on its own."""
    api_key_id: str | None = None
    """The API key that asked for the run (per-key quotas, usage by key)."""
    request_hash: str | None = None
    """The fingerprint of the request, kept with an idempotency key to refuse a reuse with another body."""
    deadline_at: datetime | None = None
    """When the run must have ended, whatever it is doing then; None: no deadline."""
    metadata: dict[str, str] = field(default_factory=dict)
    """The caller's key/value labels, validated by the caller (`run_metadata.check`)."""
    traceparent: str | None = None
    trace_parent_span_id: str | None = None
    rerun_of: str | None = None
    rerun_from_step: str | None = None
    parent_run_id: str | None = None
    parent_step_id: str | None = None
    depth: int = 0


@dataclass(frozen=True, slots=True)
class RunUpdate:
    """Changes to a run applied together with an event write; `UNSET` fields stay as they are.

    A status other than `running` always ends the lease (lease_owner and lease_expires_at are
    cleared); a terminal status sets `completed_at` to now unless given. `available_at` lets a
    worker re-queue a run for later (a retry with backoff).
    """

    status: RunStatus | _Unset = UNSET
    cursor: int | _Unset = UNSET
    pause_after: int | _Unset | None = UNSET
    state: dict[str, Any] | _Unset = UNSET
    result: Any = UNSET
    error: Any = UNSET
    release_lease: bool = False
    completed_at: datetime | _Unset | None = UNSET
    available_at: datetime | _Unset = UNSET


@dataclass(frozen=True, slots=True)
class LeaseState:
    """What `Store.extend_lease` reports: whether the caller still holds the run, and whether the
    API asked for the run to stop."""

    held: bool
    cancel_requested: bool


Multitask: TypeAlias = Literal["reject", "enqueue"]


@dataclass(frozen=True, slots=True)
class HistoryWindow:
    """How much of a thread's history a run sees: the newest messages that fit both limits
    (None: no limit). Tokens are estimated (see `threads_repo.estimate_tokens`)."""

    max_messages: int | None = None
    max_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class ThreadTurn:
    """A run that is the next turn of a thread: its new messages (appended to the thread with the
    run's answer when it completes), the history window, and what to do when the thread is busy
    (`reject`: `ThreadBusy`; `enqueue`: the run waits, and starts when the thread's active run
    ends)."""

    thread_id: str
    messages: tuple[dict[str, Any], ...]
    window: HistoryWindow = field(default_factory=HistoryWindow)
    multitask: Multitask = "reject"


@dataclass(frozen=True, slots=True)
class ThreadRecord:
    id: str
    org_id: str
    project_id: str
    metadata: dict[str, Any]
    ttl_seconds: int
    active_run_id: str | None
    run_count: int
    message_count: int
    created_at: datetime
    updated_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class ThreadMessage:
    position: int
    """1, 2, 3 ... in the order the messages were appended."""
    role: str
    content: dict[str, Any]
    """The whole message as the model sees it: `role`, `content`, and `tool_calls` or
    `tool_call_id` for tool turns."""
    run_id: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ThreadErasure:
    """What `Store.delete_thread` erased."""

    messages: int
    runs: int
    events: int
