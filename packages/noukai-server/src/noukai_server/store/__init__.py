"""Persistence for Noukai: schema, migrations, repositories and the lease queue.

Runs on SQLite (embedded default: one file, WAL, a single serialised writer) and PostgreSQL
(scaled out). Everything goes through `Store`; SQL lives only in this package.
"""

from __future__ import annotations

from .db import PoolSize
from .errors import (
    EventSequenceError,
    FlowNotFound,
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
from .migrate import upgrade_database
from .queue import OrgCaps
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
from .store import Store

__all__ = [
    "UNSET",
    "ApiKeyRecord",
    "EventRow",
    "EventSequenceError",
    "FlowHead",
    "FlowNotFound",
    "FlowRecord",
    "FlowVersionRecord",
    "HistoryWindow",
    "InvalidIdentifier",
    "LeaseLost",
    "LeaseState",
    "Multitask",
    "NewRun",
    "NotFoundError",
    "OrgCaps",
    "PoolSize",
    "ProjectRecord",
    "RunBusy",
    "RunHead",
    "RunNotFound",
    "RunRecord",
    "RunStatus",
    "RunUpdate",
    "SchemaMismatch",
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
    "upgrade_database",
]
