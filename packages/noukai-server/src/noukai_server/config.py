"""Server configuration: the flat, frozen object the server reads. Command-line options win over
`NOUKAI_*` environment variables, which win over noukai.toml, which wins over the defaults below
(SQLite in the data dir, in-process bus and workers); `noukai_server.settings` does the reading
and the validation."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from noukai_server.defaults import DEFAULT_DATA_DIR, DEV_ORG, DEV_PROJECT
from noukai_server.providers import ProviderSettings

if TYPE_CHECKING:  # noukai_server.mcp.config imports ConfigError from here
    from noukai_server.mcp.config import McpServerConfig

LOG_LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error")
LOG_FORMATS: tuple[str, ...] = ("text", "json")


class ConfigError(ValueError):
    """A setting with a value the server cannot use; the message names the setting."""


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    normalized = value.strip().lower()
    if normalized not in allowed:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(allowed)}")
    return normalized


@dataclass(frozen=True, slots=True)
class OperatorCallable:
    """A function or tool named in noukai.toml: its public name, the import path it came from, and
    the imported callable (`settings.extensions` imports it; the server registers it)."""

    name: str
    path: str
    function: Callable[..., Any]
    description: str | None = None
    timeout_seconds: float = 30.0


@dataclass(frozen=True, slots=True)
class ServerConfig:
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    database_url: str | None = None
    db_pool_size: int = 5
    """PostgreSQL: connections each process keeps open (`[store] pool_size`)."""
    db_pool_overflow: int = 10
    """PostgreSQL: connections each process may open beyond `db_pool_size` under load."""
    db_pool_timeout_seconds: float = 10.0
    """PostgreSQL: how long a request waits for a free connection before a 503."""
    redis_url: str | None = None
    """The Redis bus (`--redis-url`, `NOUKAI_REDIS_URL`); None: in-process bus plus the store poll."""
    host: str = "127.0.0.1"
    port: int = 8080
    flows_dirs: tuple[Path, ...] = ()
    """Folders loaded at start as drafts of the dev project (`[flows] dirs`, `--flows`)."""
    embedded_workers: bool = True
    worker_concurrency: int = 64
    lease_seconds: float = 30.0
    org_max_running: int | None = None
    """Fair claiming: the most runs one org may have running at once, counted across the whole
    deployment by every worker's claim. None: half of each worker's concurrency (at least 1),
    counted per worker, so one org's backlog never holds every slot of a shared server and the
    default grows with the number of workers."""
    org_max_running_overrides: Mapping[str, int] = field(default_factory=dict)
    """Per-org caps (org id -> runs, across the deployment) replacing `org_max_running`."""
    key_max_running: int | None = None
    """The most runs started with one API key running at once, across the deployment; None: no
    per-key cap (the org's cap still applies)."""
    key_max_running_overrides: Mapping[str, int] = field(default_factory=dict)
    """Per-key caps (key id -> runs) replacing `key_max_running`."""
    org_max_queued: int | None = None
    """The most queued runs one org may have; a submission beyond it is refused with 429
    QUEUE_FULL before anything is written. None: no cap."""
    org_max_queued_overrides: Mapping[str, int] = field(default_factory=dict)
    """Per-org queued caps (org id -> runs) replacing `org_max_queued`."""
    key_max_queued: int | None = None
    """The most queued runs started with one API key; None: no per-key cap."""
    key_max_queued_overrides: Mapping[str, int] = field(default_factory=dict)
    """Per-key queued caps (key id -> runs) replacing `key_max_queued`."""
    worker_grace_seconds: float = 30.0
    """On SIGTERM a `noukai worker` lets runs finish their current step this long, then hands
    every run it still holds back to the queue (`--grace-seconds`)."""
    heartbeat_seconds: float = 15.0
    stream_lifetime_seconds: float = 300.0
    retry_ms: int = 1000
    event_retention_seconds: float = 7 * 24 * 3600.0
    retention_interval_seconds: float = 3600.0
    session_retention_seconds: float = 30 * 24 * 3600.0
    """How long a replay session stays fetchable (410 after); its runs' logs are kept as long."""
    thread_ttl_seconds: float = 30 * 24 * 3600.0
    """A thread's default TTL, counted from its last activity (410 THREAD_EXPIRED after, then
    erased by the retention sweep); `POST /threads` may set its own (`ttlSeconds`)."""
    trace_context_max_bytes: int = 64 * 1024
    """Cap on each input/output/error context of a step trace (`truncated: true` when cut)."""
    providers: ProviderSettings = field(default_factory=ProviderSettings.from_env)
    dev_org: str = DEV_ORG
    dev_project: str = DEV_PROJECT
    log_level: str = "info"
    """debug, info, warning or error (`--log-level`, `NOUKAI_LOG_LEVEL`)."""
    log_format: str = "text"
    """text or json: one JSON object per line (`--log-format`, `NOUKAI_LOG_FORMAT`)."""
    functions: Mapping[str, OperatorCallable] = field(default_factory=dict)
    """`[functions]` of noukai.toml, imported: `python` steps may call them beside the built-ins."""
    tools: Mapping[str, OperatorCallable] = field(default_factory=dict)
    """`[tools]` of noukai.toml, imported: `agent` steps may call them beside the built-ins."""
    config_file: Path | None = None
    """The noukai.toml these settings were read from, if any."""
    mcp_servers: Mapping[str, McpServerConfig] = field(default_factory=dict)
    """`[mcp.servers.NAME]` of noukai.toml: MCP servers whose tools agent steps may use."""
    step_timeout_seconds: float = 300.0
    """A step attempt's timeout when neither the step (`timeout_seconds`) nor its flow
    (`step_timeout_seconds`) sets one: no step runs unbounded."""
    max_step_timeout_seconds: float = 3600.0
    """The longest a step attempt may run, whatever its flow asks (larger values are clamped)."""
    max_run_seconds: float = 3600.0
    """A run's total deadline from its creation when its flow sets no `run_timeout_seconds`, and
    the most a flow may set (larger values are clamped); queued and waiting time count."""
    # [limits] request rates (`api.rate_limits`); None: unlimited, the self-hosted default.
    requests_per_minute: int | None = None
    """Requests one API key may make per minute (a sliding window)."""
    org_requests_per_minute: int | None = None
    """Requests all of one org's keys together may make per minute."""
    key_requests_per_minute_overrides: Mapping[str, int] = field(default_factory=dict)
    """Per-key rates (API key id -> requests per minute) replacing `requests_per_minute`."""
    org_requests_per_minute_overrides: Mapping[str, int] = field(default_factory=dict)
    """Per-org rates (org id -> requests per minute) replacing `org_requests_per_minute`."""
    idempotency_ttl_seconds: float = 24 * 3600.0
    """How long an `Idempotency-Key` is remembered; after that it may start a new run."""
    # [limits] loop safety (`flows.TemplateEngine`).
    template_seconds: float = 5.0
    """The longest one template render may run (off the event loop) before its step fails with
    TEMPLATE_ERROR."""

    # [metrics]: Prometheus (`telemetry.metrics`, `api.metrics_endpoint`).
    metrics_enabled: bool = True
    """Collect metrics and serve `GET /metrics`; False: neither (the route is 404)."""
    metrics_token: str | None = None
    """The bearer token `/metrics` requires; None: only loopback clients are answered."""

    def __post_init__(self) -> None:
        _choice("log level", self.log_level, LOG_LEVELS)
        _choice("log format", self.log_format, LOG_FORMATS)
        if self.step_timeout_seconds > self.max_step_timeout_seconds:
            raise ConfigError(
                f"[limits] step_timeout_seconds ({self.step_timeout_seconds:g}) is above "
                f"[limits] max_step_timeout_seconds ({self.max_step_timeout_seconds:g})"
            )

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'noukai.db').resolve()}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> ServerConfig:
        """Settings from `NOUKAI_*` variables (validated; `ConfigError` names the variable), then
        `overrides` (None: not given). No config file is read: see `settings.load_server_config`."""
        # The one upward import of this module: the settings table lives in `settings`, which
        # reads this dataclass's fields; imported here, when called, so the two modules load apart.
        from noukai_server.settings.loader import config_from_sources

        return config_from_sources(None, os.environ if environ is None else environ, overrides)
