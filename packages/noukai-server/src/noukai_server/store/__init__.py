"""Persistence for Noukai: schema, migrations, repositories and the lease queue.

Runs on SQLite (embedded default: one file, WAL, a single serialised writer) and PostgreSQL
(scaled out). Everything goes through `Store`; SQL lives only in this package.
"""

from __future__ import annotations

from .credits import (
    USAGE_GROUPS,
    BadAmount,
    CreditBalance,
    CreditGrant,
    OrgNotFound,
    Recorded,
    StepCharge,
    UsageGroup,
    UsageRow,
    micro_to_usd,
    usd_to_micro,
)
from .db import PoolSize
from .errors import (
    EventSequenceError,
    FlowNotFound,
    IdempotencyConflict,
    InvalidIdentifier,
    LeaseLost,
    NotFoundError,
    RunBusy,
    RunNotFound,
    SchemaMismatch,
    StoreBusy,
    StoreError,
    ThreadBusy,
    ThreadExpired,
    ThreadNotFound,
    UnsupportedDatabase,
)
from .keys import SCOPES as KEY_SCOPES
from .keys import ApiKeyExpired
from .migrate import upgrade_database
from .queue import OrgCaps
from .quotas import QueueCaps, QueueFull
from .records import (
    UNSET,
    ApiKeyRecord,
    EventRow,
    FlowHead,
    FlowRecord,
    FlowVersionRecord,
    HistoryWindow,
    LeaseState,
    Multitask,
    NewRun,
    ProjectRecord,
    RunHead,
    RunRecord,
    RunStatus,
    RunUpdate,
    ThreadErasure,
    ThreadMessage,
    ThreadRecord,
    ThreadTurn,
    TriggerType,
)
from .run_listing import MAX_PAGE as MAX_RUNS_PAGE
from .run_listing import ListedRun, Position, RunFilter, RunPage
from .store import Store

__all__ = [
    "KEY_SCOPES",
    "MAX_RUNS_PAGE",
    "UNSET",
    "USAGE_GROUPS",
    "ApiKeyExpired",
    "ApiKeyRecord",
    "BadAmount",
    "CreditBalance",
    "CreditGrant",
    "EventRow",
    "EventSequenceError",
    "FlowHead",
    "FlowNotFound",
    "FlowRecord",
    "FlowVersionRecord",
    "HistoryWindow",
    "IdempotencyConflict",
    "InvalidIdentifier",
    "LeaseLost",
    "LeaseState",
    "ListedRun",
    "Multitask",
    "NewRun",
    "NotFoundError",
    "OrgCaps",
    "OrgNotFound",
    "PoolSize",
    "Position",
    "ProjectRecord",
    "QueueCaps",
    "QueueFull",
    "Recorded",
    "RunBusy",
    "RunFilter",
    "RunHead",
    "RunNotFound",
    "RunPage",
    "RunRecord",
    "RunStatus",
    "RunUpdate",
    "SchemaMismatch",
    "StepCharge",
    "Store",
    "StoreBusy",
    "StoreError",
    "ThreadBusy",
    "ThreadErasure",
    "ThreadExpired",
    "ThreadMessage",
    "ThreadNotFound",
    "ThreadRecord",
    "ThreadTurn",
    "TriggerType",
    "UnsupportedDatabase",
    "UsageGroup",
    "UsageRow",
    "micro_to_usd",
    "upgrade_database",
    "usd_to_micro",
]
