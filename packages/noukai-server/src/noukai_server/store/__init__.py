"""Persistence for Noukai: schema, migrations, repositories and the lease queue.

Runs on SQLite (embedded default: one file, WAL, a single serialised writer) and PostgreSQL
(scaled out). Everything goes through `Store`; SQL lives only in this package.
"""

from __future__ import annotations

from .errors import (
    EventSequenceError,
    FlowNotFound,
    InvalidIdentifier,
    LeaseLost,
    NotFoundError,
    RunBusy,
    RunNotFound,
    SchemaMismatch,
    StoreError,
    UnsupportedDatabase,
)
from .migrate import upgrade_database
from .records import (
    UNSET,
    ApiKeyRecord,
    EventRow,
    FlowHead,
    FlowRecord,
    FlowVersionRecord,
    LeaseState,
    NewRun,
    ProjectRecord,
    RunRecord,
    RunStatus,
    RunUpdate,
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
    "InvalidIdentifier",
    "LeaseLost",
    "LeaseState",
    "NewRun",
    "NotFoundError",
    "ProjectRecord",
    "RunBusy",
    "RunNotFound",
    "RunRecord",
    "RunStatus",
    "RunUpdate",
    "SchemaMismatch",
    "Store",
    "StoreError",
    "TriggerType",
    "UnsupportedDatabase",
    "upgrade_database",
]
