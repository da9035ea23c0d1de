"""The limits a run is created under: its total deadline and the queued-runs caps of its org and
its key (the running-runs caps are the claim's: `store.OrgCaps`).

The deadline is stored with the run (`runs.deadline_at`) when it is created, so it survives
crashes, retries and re-claims: whichever worker holds the run stops it there (`RUN_TIMEOUT`), and
a run claimed after it never starts. It counts wall-clock time from creation, queued and waiting
(paused for client tool results or a `/step` call) time included: a run holds its place and its
memory of the request for that long at most, whoever it waits for.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from noukai.types.errors import ErrorCode
from noukai_server.config import ServerConfig
from noukai_server.flows import FlowSpec
from noukai_server.runtime.errors import RequestRejected
from noukai_server.store import QueueCaps, QueueFull

DEFAULT_MAX_RUN_SECONDS = 3600.0
"""`[limits] max_run_seconds` unless configured: an hour is twelve default step timeouts, far more
than a chat or agent flow takes, and short enough that a forgotten or runaway run gives its slot
and its queue place back the same hour. Batch deployments raise it."""

QUEUE_FULL_RETRY_AFTER_SECONDS = 5
"""`Retry-After` of a 429 QUEUE_FULL: a queue place frees when a worker claims one of the org's
queued runs, which takes about as long as one of its running runs' steps; a few seconds keeps
retrying clients from hammering the API while the backlog drains."""


@dataclass(frozen=True, slots=True)
class RunLimits:
    max_run_seconds: float = DEFAULT_MAX_RUN_SECONDS
    queue_caps: QueueCaps | None = None

    @classmethod
    def of(cls, config: ServerConfig) -> RunLimits:
        caps = QueueCaps(
            config.org_max_queued,
            dict(config.org_max_queued_overrides),
            config.key_max_queued,
            dict(config.key_max_queued_overrides),
        )
        active = caps.org_default is not None or caps.key_default is not None
        active = active or bool(caps.org_overrides or caps.key_overrides)
        return cls(config.max_run_seconds, caps if active else None)

    def run_seconds(self, spec: FlowSpec) -> float:
        """The flow's `run_timeout_seconds`, clamped to the server's maximum (its default)."""
        wanted = spec.run_timeout_seconds
        return self.max_run_seconds if wanted is None else min(wanted, self.max_run_seconds)

    def deadline_at(self, spec: FlowSpec, created: datetime) -> datetime:
        return created + timedelta(seconds=self.run_seconds(spec))


def queue_full(refused: QueueFull) -> RequestRejected:
    """The 429 answer to a submission past a queued-runs cap (nothing was written)."""
    return RequestRejected(
        ErrorCode.QUEUE_FULL,
        f"{refused}; retry after {QUEUE_FULL_RETRY_AFTER_SECONDS} s",
        headers={"Retry-After": str(QUEUE_FULL_RETRY_AFTER_SECONDS)},
        scope=refused.scope,
        limit=refused.cap,
    )
