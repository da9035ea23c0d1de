"""Server configuration: explicit arguments first, then `NOUKAI_*` environment variables, then the
embedded defaults (SQLite in the data dir, in-process bus and workers)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from noukai_server.defaults import DEFAULT_DATA_DIR, DEV_ORG, DEV_PROJECT
from noukai_server.providers import ProviderSettings

LOG_LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error")
LOG_FORMATS: tuple[str, ...] = ("text", "json")


class ConfigError(ValueError):
    """A setting with a value the server cannot use; the message names the setting."""


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    normalized = value.strip().lower()
    if normalized not in allowed:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(allowed)}")
    return normalized


_NUMERIC_ENV: tuple[tuple[str, str, type[float] | type[int]], ...] = (
    ("NOUKAI_HEARTBEAT_SECONDS", "heartbeat_seconds", float),
    ("NOUKAI_STREAM_LIFETIME_SECONDS", "stream_lifetime_seconds", float),
    ("NOUKAI_RETRY_MS", "retry_ms", int),
    ("NOUKAI_LEASE_SECONDS", "lease_seconds", float),
    ("NOUKAI_EVENT_RETENTION_SECONDS", "event_retention_seconds", float),
    ("NOUKAI_RETENTION_INTERVAL_SECONDS", "retention_interval_seconds", float),
    ("NOUKAI_SESSION_RETENTION_SECONDS", "session_retention_seconds", float),
    ("NOUKAI_TRACE_CONTEXT_MAX_BYTES", "trace_context_max_bytes", int),
)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    database_url: str | None = None
    redis_url: str | None = None
    """The Redis bus (`--redis-url`, `NOUKAI_REDIS_URL`); None: in-process bus plus the store poll."""
    host: str = "127.0.0.1"
    port: int = 8080
    flows_dir: Path | None = None
    embedded_workers: bool = True
    worker_concurrency: int = 64
    lease_seconds: float = 30.0
    heartbeat_seconds: float = 15.0
    stream_lifetime_seconds: float = 300.0
    retry_ms: int = 1000
    event_retention_seconds: float = 7 * 24 * 3600.0
    retention_interval_seconds: float = 3600.0
    session_retention_seconds: float = 30 * 24 * 3600.0
    """How long a replay session stays fetchable (410 after); its runs' logs are kept as long."""
    trace_context_max_bytes: int = 64 * 1024
    """Cap on each input/output/error context of a step trace (`truncated: true` when cut)."""
    providers: ProviderSettings = field(default_factory=ProviderSettings.from_env)
    dev_org: str = DEV_ORG
    dev_project: str = DEV_PROJECT
    log_level: str = "info"
    """debug, info, warning or error (`--log-level`, `NOUKAI_LOG_LEVEL`)."""
    log_format: str = "text"
    """text or json: one JSON object per line (`--log-format`, `NOUKAI_LOG_FORMAT`)."""

    def __post_init__(self) -> None:
        _choice("log level", self.log_level, LOG_LEVELS)
        _choice("log format", self.log_format, LOG_FORMATS)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'noukai.db').resolve()}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> ServerConfig:
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        if "NOUKAI_DATA_DIR" in environ:
            values["data_dir"] = Path(environ["NOUKAI_DATA_DIR"])
        if "NOUKAI_DATABASE_URL" in environ:
            values["database_url"] = environ["NOUKAI_DATABASE_URL"]
        if "NOUKAI_REDIS_URL" in environ:
            values["redis_url"] = environ["NOUKAI_REDIS_URL"]
        for name, key, kind in _NUMERIC_ENV:
            if name in environ:
                values[key] = kind(environ[name])
        if "NOUKAI_LOG_LEVEL" in environ:
            values["log_level"] = _choice("NOUKAI_LOG_LEVEL", environ["NOUKAI_LOG_LEVEL"], LOG_LEVELS)
        if "NOUKAI_LOG_FORMAT" in environ:
            values["log_format"] = _choice("NOUKAI_LOG_FORMAT", environ["NOUKAI_LOG_FORMAT"], LOG_FORMATS)
        if "NOUKAI_WORKER_CONCURRENCY" in environ:
            values["worker_concurrency"] = int(environ["NOUKAI_WORKER_CONCURRENCY"])
        values["providers"] = ProviderSettings.from_env(environ)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
