"""The settings table: one row per setting of `noukai.toml`, its environment variable and the
`ServerConfig` field it fills. Adding a setting is adding a row (and the field)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from noukai_server.config import LOG_FORMATS, LOG_LEVELS, ServerConfig
from noukai_server.settings.kinds import (
    BOOLEAN,
    PATH,
    PATHS,
    TEXT,
    Kind,
    choice,
    count_map,
    number,
    optional,
)


@dataclass(frozen=True, slots=True)
class Setting:
    section: str
    key: str
    field: str
    """The `ServerConfig` field."""
    kind: Kind
    env: str
    secret: bool = False
    """A URL that may carry a password: shown masked."""
    option: str | None = None
    """The command-line option that sets it, for messages."""
    doc: str = ""

    @property
    def name(self) -> str:
        return f"[{self.section}] {self.key}"


_SECONDS = number(integer=False, minimum=0, exclusive=True)
_COUNT = number(integer=True, minimum=1)

_ROWS: tuple[Setting, ...] = (
    Setting("server", "host", "host", TEXT, "NOUKAI_HOST", option="--host", doc="Interface to bind."),
    Setting(
        "server",
        "port",
        "port",
        number(integer=True, minimum=0, maximum=65535),
        "NOUKAI_PORT",
        option="--port",
        doc="TCP port; 0 picks a free one (the banner says which).",
    ),
    Setting(
        "store",
        "data_dir",
        "data_dir",
        PATH,
        "NOUKAI_DATA_DIR",
        option="--data-dir",
        doc="Where the embedded SQLite store and the dev key live.",
    ),
    Setting(
        "store",
        "database_url",
        "database_url",
        optional(TEXT),
        "NOUKAI_DATABASE_URL",
        secret=True,
        option="--database-url",
        doc="SQLAlchemy URL, e.g. postgresql+psycopg://user:pass@host/db; unset: SQLite in data_dir.",
    ),
    Setting(
        "store",
        "pool_size",
        "db_pool_size",
        _COUNT,
        "NOUKAI_DB_POOL_SIZE",
        doc="PostgreSQL connections each process keeps open.",
    ),
    Setting(
        "store",
        "pool_overflow",
        "db_pool_overflow",
        number(integer=True, minimum=0),
        "NOUKAI_DB_POOL_OVERFLOW",
        doc="PostgreSQL connections each process may open beyond pool_size under load.",
    ),
    Setting(
        "store",
        "pool_timeout_seconds",
        "db_pool_timeout_seconds",
        _SECONDS,
        "NOUKAI_DB_POOL_TIMEOUT_SECONDS",
        doc="How long a request waits for a free PostgreSQL connection before it is answered 503.",
    ),
    Setting(
        "bus",
        "redis_url",
        "redis_url",
        optional(TEXT),
        "NOUKAI_REDIS_URL",
        secret=True,
        option="--redis-url",
        doc="Redis for the event bus; unset: in-process bus plus the store poll.",
    ),
    Setting(
        "workers",
        "embedded",
        "embedded_workers",
        BOOLEAN,
        "NOUKAI_EMBEDDED_WORKERS",
        option="--no-workers",
        doc="Run flows inside the server process (false: only `noukai worker` processes do).",
    ),
    Setting(
        "workers",
        "concurrency",
        "worker_concurrency",
        _COUNT,
        "NOUKAI_WORKER_CONCURRENCY",
        option="--concurrency",
        doc="Runs executed at once by each worker.",
    ),
    Setting(
        "workers",
        "lease_seconds",
        "lease_seconds",
        _SECONDS,
        "NOUKAI_LEASE_SECONDS",
        doc="How long a worker's claim on a run lasts without renewal (then another may take it).",
    ),
    Setting(
        "workers",
        "grace_seconds",
        "worker_grace_seconds",
        number(integer=False, minimum=0),
        "NOUKAI_WORKER_GRACE_SECONDS",
        option="--grace-seconds",
        doc="On SIGTERM, how long `noukai worker` lets steps finish before handing their runs back.",
    ),
    Setting(
        "workers",
        "org_max_running",
        "org_max_running",
        optional(_COUNT),
        "NOUKAI_ORG_MAX_RUNNING",
        doc="Runs of one org executing at once across all workers; unset: half of each worker's "
        "slots (at least 1), counted per worker.",
    ),
    Setting(
        "workers",
        "org_max_running_overrides",
        "org_max_running_overrides",
        count_map(1),
        "NOUKAI_ORG_MAX_RUNNING_OVERRIDES",
        doc="Per-org caps replacing org_max_running, e.g. {acme = 20}.",
    ),
    Setting(
        "workers",
        "key_max_running",
        "key_max_running",
        optional(_COUNT),
        "NOUKAI_KEY_MAX_RUNNING",
        doc="Runs started with one API key executing at once across all workers; unset: no cap.",
    ),
    Setting(
        "workers",
        "key_max_running_overrides",
        "key_max_running_overrides",
        count_map(1),
        "NOUKAI_KEY_MAX_RUNNING_OVERRIDES",
        doc="Per-key caps (key id = runs) replacing key_max_running.",
    ),
    Setting(
        "workers",
        "org_max_queued",
        "org_max_queued",
        optional(_COUNT),
        "NOUKAI_ORG_MAX_QUEUED",
        doc="Queued runs one org may have; beyond it a submission gets 429 QUEUE_FULL. Unset: no cap.",
    ),
    Setting(
        "workers",
        "org_max_queued_overrides",
        "org_max_queued_overrides",
        count_map(1),
        "NOUKAI_ORG_MAX_QUEUED_OVERRIDES",
        doc="Per-org queued caps replacing org_max_queued.",
    ),
    Setting(
        "workers",
        "key_max_queued",
        "key_max_queued",
        optional(_COUNT),
        "NOUKAI_KEY_MAX_QUEUED",
        doc="Queued runs started with one API key; beyond it 429 QUEUE_FULL. Unset: no cap.",
    ),
    Setting(
        "workers",
        "key_max_queued_overrides",
        "key_max_queued_overrides",
        count_map(1),
        "NOUKAI_KEY_MAX_QUEUED_OVERRIDES",
        doc="Per-key queued caps (key id = runs) replacing key_max_queued.",
    ),
    Setting(
        "streams",
        "heartbeat_seconds",
        "heartbeat_seconds",
        _SECONDS,
        "NOUKAI_HEARTBEAT_SECONDS",
        doc="Idle time after which an SSE stream sends a heartbeat comment.",
    ),
    Setting(
        "streams",
        "lifetime_seconds",
        "stream_lifetime_seconds",
        _SECONDS,
        "NOUKAI_STREAM_LIFETIME_SECONDS",
        doc=(
            "How long one SSE response lasts at most before the client is told to reconnect "
            "(each stream closes at a random point of its last fifth)."
        ),
    ),
    Setting(
        "streams",
        "retry_ms",
        "retry_ms",
        _COUNT,
        "NOUKAI_RETRY_MS",
        doc="The SSE `retry:` a client waits before reconnecting, in milliseconds.",
    ),
    Setting(
        "retention",
        "events_seconds",
        "event_retention_seconds",
        _SECONDS,
        "NOUKAI_EVENT_RETENTION_SECONDS",
        doc="How long a finished run's events are kept.",
    ),
    Setting(
        "retention",
        "sessions_seconds",
        "session_retention_seconds",
        _SECONDS,
        "NOUKAI_SESSION_RETENTION_SECONDS",
        doc="How long a replay session stays fetchable.",
    ),
    Setting(
        "retention",
        "threads_seconds",
        "thread_ttl_seconds",
        _SECONDS,
        "NOUKAI_THREAD_TTL_SECONDS",
        doc="A thread's default TTL after its last activity (then it is erased).",
    ),
    Setting(
        "retention",
        "interval_seconds",
        "retention_interval_seconds",
        _SECONDS,
        "NOUKAI_RETENTION_INTERVAL_SECONDS",
        doc="How often the retention sweep runs.",
    ),
    Setting(
        "traces",
        "context_max_bytes",
        "trace_context_max_bytes",
        _COUNT,
        "NOUKAI_TRACE_CONTEXT_MAX_BYTES",
        doc="Cap on each input/output/error context of a step trace.",
    ),
    Setting(
        "logging",
        "level",
        "log_level",
        choice(*LOG_LEVELS),
        "NOUKAI_LOG_LEVEL",
        option="--log-level",
        doc="What the log (stderr) shows.",
    ),
    Setting(
        "logging",
        "format",
        "log_format",
        choice(*LOG_FORMATS),
        "NOUKAI_LOG_FORMAT",
        option="--log-format",
        doc="text, or json: one object per line.",
    ),
    Setting(
        "flows",
        "dirs",
        "flows_dirs",
        PATHS,
        "NOUKAI_FLOWS_DIRS",
        option="--flows",
        doc="Folders whose flow files are loaded at start as drafts of the dev project.",
    ),
    # [limits]: request rates and idempotency (part C of issue 15).
    Setting(
        "limits",
        "requests_per_minute",
        "requests_per_minute",
        optional(_COUNT),
        "NOUKAI_REQUESTS_PER_MINUTE",
        doc="Requests one API key may make per minute (429 RATE_LIMITED beyond); unset: unlimited.",
    ),
    Setting(
        "limits",
        "org_requests_per_minute",
        "org_requests_per_minute",
        optional(_COUNT),
        "NOUKAI_ORG_REQUESTS_PER_MINUTE",
        doc="Requests all keys of one org may make per minute together; unset: unlimited.",
    ),
    Setting(
        "limits",
        "key_requests_per_minute_overrides",
        "key_requests_per_minute_overrides",
        count_map(1),
        "NOUKAI_KEY_REQUESTS_PER_MINUTE_OVERRIDES",
        doc="Per-key rates by API key id replacing requests_per_minute, e.g. {0123456789ab = 600}.",
    ),
    Setting(
        "limits",
        "org_requests_per_minute_overrides",
        "org_requests_per_minute_overrides",
        count_map(1),
        "NOUKAI_ORG_REQUESTS_PER_MINUTE_OVERRIDES",
        doc="Per-org rates by org id replacing org_requests_per_minute, e.g. {acme = 6000}.",
    ),
    Setting(
        "limits",
        "idempotency_ttl_seconds",
        "idempotency_ttl_seconds",
        _SECONDS,
        "NOUKAI_IDEMPOTENCY_TTL_SECONDS",
        doc="How long an Idempotency-Key is remembered; after that it may start a new run.",
    ),
    # [limits]: step timeouts and the run deadline (part B of issue 15).
    Setting(
        "limits",
        "step_timeout_seconds",
        "step_timeout_seconds",
        _SECONDS,
        "NOUKAI_STEP_TIMEOUT_SECONDS",
        doc="A step attempt's timeout when neither the step nor its flow sets one.",
    ),
    Setting(
        "limits",
        "max_step_timeout_seconds",
        "max_step_timeout_seconds",
        _SECONDS,
        "NOUKAI_MAX_STEP_TIMEOUT_SECONDS",
        doc="The longest a step attempt may run; larger flow values are clamped to it.",
    ),
    Setting(
        "limits",
        "max_run_seconds",
        "max_run_seconds",
        _SECONDS,
        "NOUKAI_MAX_RUN_SECONDS",
        doc="A run's total deadline from creation (queued and waiting time count); caps a flow's "
        "run_timeout_seconds.",
    ),
    # [limits]: loop safety (part A of issue 15).
    Setting(
        "limits",
        "template_seconds",
        "template_seconds",
        _SECONDS,
        "NOUKAI_TEMPLATE_SECONDS",
        doc="The longest one template render may run before its step fails with TEMPLATE_ERROR.",
    ),
    # [metrics]: Prometheus (part C of issue 16).
    Setting(
        "metrics",
        "enabled",
        "metrics_enabled",
        BOOLEAN,
        "NOUKAI_METRICS_ENABLED",
        doc="Collect Prometheus metrics and serve GET /metrics (false: neither; /metrics is 404).",
    ),
    Setting(
        "metrics",
        "token",
        "metrics_token",
        optional(TEXT),
        "NOUKAI_METRICS_TOKEN",
        secret=True,
        doc="Bearer token GET /metrics requires; unset: only loopback clients are answered.",
    ),
)

_FIELDS = {f.name for f in dataclasses.fields(ServerConfig)}
SETTINGS: tuple[Setting, ...] = tuple(row for row in _ROWS if row.field in _FIELDS)
"""The rows whose field this build's `ServerConfig` has (some land with other features)."""

BY_FIELD = {row.field: row for row in SETTINGS}
SECTIONS: dict[str, dict[str, Setting]] = {}
for _row in SETTINGS:
    SECTIONS.setdefault(_row.section, {})[_row.key] = _row
TABLE_SECTIONS = ("providers", "functions", "tools", "mcp")
"""Sections holding named entries rather than settings (parsed by their own modules)."""
ALL_SECTIONS = (*SECTIONS, *TABLE_SECTIONS)
