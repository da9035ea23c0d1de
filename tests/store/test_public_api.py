from __future__ import annotations

import noukai_server.store
from noukai_server.store import Store

EXPECTED = {
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
    "OrgCaps",
    "QueueCaps",
    "QueueFull",
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
    "TriggerType",
    "HistoryWindow",
    "Multitask",
    "ThreadBusy",
    "ThreadErasure",
    "ThreadExpired",
    "ThreadMessage",
    "ThreadNotFound",
    "ThreadRecord",
    "ThreadTurn",
    "UnsupportedDatabase",
    "upgrade_database",
    # idempotency keys
    "IdempotencyConflict",
    # key scopes and expiry
    "KEY_SCOPES",
    "ApiKeyExpired",
    # credits and usage
    "USAGE_GROUPS",
    "BadAmount",
    "CreditBalance",
    "CreditGrant",
    "OrgNotFound",
    "Recorded",
    "StepCharge",
    "UsageGroup",
    "UsageRow",
    "micro_to_usd",
    "usd_to_micro",
    # the runs list
    "MAX_RUNS_PAGE",
    "ListedRun",
    "Position",
    "RunFilter",
    "RunPage",
}


def test_all_is_the_public_surface() -> None:
    assert set(noukai_server.store.__all__) == EXPECTED
    for name in noukai_server.store.__all__:
        assert getattr(noukai_server.store, name) is not None


def test_store_methods() -> None:
    methods = {
        "connect",
        "close",
        "now",
        "dialect",
        "ensure_org",
        "ensure_project",
        "get_project",
        "create_api_key",
        "authenticate",
        "revoke_api_key",
        "get_api_key",
        "list_api_keys",
        "save_draft",
        "get_flow",
        "get_flow_by_id",
        "get_flow_head",
        "get_flow_document",
        "list_flows",
        "publish",
        "list_versions",
        "get_version",
        "latest_version",
        "create_run",
        "idempotent_repeat",
        "get_run",
        "get_run_head",
        "run_heads",
        "list_runs",
        "unfinished_run_counts",
        "list_session_runs",
        "has_events",
        "prune_events",
        "advance_run",
        "request_cancel",
        "claim_next_run",
        "extend_lease",
        "release_leases",
        "take_over_child",
        "cancels_for",
        "record",
        "append_events_unleased",
        "read_events",
        "create_thread",
        "ensure_thread",
        "get_thread",
        "list_thread_messages",
        "list_thread_runs",
        "delete_thread",
        "fork_thread",
        "add_thread_tool_turns",
        "erase_expired_threads",
        # credits and usage
        "record_step",
        "credit_balance",
        "credit_balance_micro_usd",
        "add_credits",
        "list_credit_grants",
        "usage",
        # request-rate counters (store.rate_counters)
        "counters_write",
    }
    public = {name for name in vars(Store) if not name.startswith("_")}
    assert public == methods


def test_records_are_frozen() -> None:
    import dataclasses

    for name in (
        "ApiKeyRecord",
        "EventRow",
        "FlowRecord",
        "FlowVersionRecord",
        "LeaseState",
        "NewRun",
        "OrgCaps",
        "PoolSize",
        "ProjectRecord",
        "RunHead",
        "RunRecord",
        "RunUpdate",
    ):
        cls = getattr(noukai_server.store, name)
        assert dataclasses.is_dataclass(cls), name
        assert getattr(cls, "__dataclass_params__").frozen, name  # noqa: B009


def test_migrations_ship_inside_the_package() -> None:
    from noukai_server.store.migrate import MIGRATIONS_DIR, head_revision

    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert (MIGRATIONS_DIR / "script.py.mako").is_file()
    assert head_revision() == "0008"
