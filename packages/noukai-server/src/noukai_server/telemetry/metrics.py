"""Every Prometheus metric the server exports, declared once, and the calls that record them.

The rest of the server records through the plain functions below (`run_finished`, `step_ended`,
...), one call at each hook point. Each one first checks whether metrics are installed
(`install`), so with `[metrics] enabled = false` a hook costs one global read and nothing is
collected. Labels are bounded sets: statuses, step types, error codes, route templates, and names
the operator or flow authors chose (flows as `org/project/slug`, `provider` and `model`), the latter
capped at `MAX_LABEL_VALUES` distinct values per label (the rest are reported as `other`). Never a
run id or a raw path.

Multiprocess mode: with `PROMETHEUS_MULTIPROC_DIR` set (before the process starts: prometheus-client
reads it when it is imported), every process writes its values to files there and `/metrics`
aggregates them (`telemetry.metrics_multiproc`). Counters and histograms of processes that ended
stay in the sums; the two gauges are `livesum`, so a process's share leaves when it ends.

Queue depth is not a metric object here: it is read from the store when `/metrics` is scraped
(`api.metrics_endpoint`), so it is right whichever process changed the queue.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
MAX_LABEL_VALUES: Final = 200
"""Distinct values one operator- or author-chosen label (flow, provider, model) may take in one
process; later ones are counted under `other`, so a flood of model names cannot grow the series."""
OTHER: Final = "other"

STEP_SECONDS_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)
"""Step attempts: a template step takes milliseconds, a model call seconds, an agent step minutes."""
QUEUE_WAIT_BUCKETS: Final = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
"""From queued to started: about a millisecond on a direct hand-off, seconds behind a backlog."""
WRITE_SECONDS_BUCKETS: Final = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1)
"""One group-committed batch of events: tens of microseconds on SQLite, milliseconds on PostgreSQL."""
BATCH_SIZE_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
"""Events per batch; the writer waits for the store at 512 pending (`eventlog.writer.MAX_PENDING`)."""

TERMINAL_STATUSES: Final = ("completed", "failed", "cancelled")
STEP_OUTCOMES: Final = ("completed", "skipped", "failed", "retried")
HTTP_METHODS: Final = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


class FlowNames(Protocol):
    """What a flow lookup answers (`store.FlowRecord`): enough to name the flow in a label."""

    @property
    def org_id(self) -> str: ...
    @property
    def project_slug(self) -> str: ...
    @property
    def slug(self) -> str: ...


FlowLookup = Callable[[str], Awaitable[FlowNames | None]]
"""Flow id -> the flow (None when it is gone): `Store.get_flow_by_id`."""


class _BoundedLabel:
    """The values one label has taken in this process, up to `MAX_LABEL_VALUES`."""

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) >= MAX_LABEL_VALUES:
            return OTHER
        self._seen.add(value)
        return value


class Metrics:
    """The metric objects of this process (one instance: `install`)."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        self.runs_started = counter(
            "noukai_runs_started", "Runs that started executing (their first step began).", ("flow",)
        )
        self.runs_finished = counter(
            "noukai_runs_finished",
            "Runs that ended, by status: completed, failed or cancelled.",
            ("flow", "status"),
        )
        self.queue_wait = Histogram(
            "noukai_run_queue_wait_seconds",
            "Time from a run's creation (queued) to the start of its first step.",
            buckets=QUEUE_WAIT_BUCKETS,
            registry=registry,
        )
        self.step_seconds = Histogram(
            "noukai_step_duration_seconds",
            "Duration of step attempts by step type and outcome (completed, failed, retried).",
            ("type", "outcome"),
            buckets=STEP_SECONDS_BUCKETS,
            registry=registry,
        )
        self.steps = counter(
            "noukai_step_attempts",
            "Step attempts that ended, by step type and outcome (completed, skipped, failed, retried).",
            ("type", "outcome"),
        )
        self.step_retries = counter(
            "noukai_step_retries",
            "Step attempts that failed and are retried, by step type and error code.",
            ("type", "code"),
        )
        self.tokens = counter(
            "noukai_model_tokens",
            "Model tokens of completed steps, by provider, model and direction (input or output).",
            ("provider", "model", "direction"),
        )
        self.cost = counter(
            "noukai_model_cost_usd",
            "Model cost in US dollars of completed steps, by provider and model.",
            ("provider", "model"),
        )
        self.slots = Gauge(
            "noukai_worker_slots",
            "Worker slots busy (running or reserved for a run) and free, summed over live processes.",
            ("state",),
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.lease_losses = counter(
            "noukai_lease_losses",
            "Runs a worker stopped because their lease expired and another worker may hold them.",
        )
        self.reclaims = counter(
            "noukai_runs_reclaimed",
            "Runs claimed again after the worker that ran them was lost (their step runs again).",
        )
        self.streams = Gauge(
            "noukai_streams_open",
            "Open SSE responses (step, event and trace streams), summed over live API processes.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.write_seconds = Histogram(
            "noukai_event_write_seconds",
            "Time to store one batch of a run's events (one transaction, with its run update).",
            buckets=WRITE_SECONDS_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "noukai_event_write_batch_size",
            "Events per stored batch (the event log's group commit).",
            buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        )
        self.http = counter(
            "noukai_http_requests",
            "HTTP requests by method, route template and status (0: the client left first).",
            ("method", "route", "status"),
        )
        # Children looked up once: `labels()` takes a lock and builds a tuple on every call.
        self._busy = self.slots.labels("busy")
        self._free = self.slots.labels("free")
        self._http_children: dict[tuple[str, str, int], Any] = {}
        self._step_children: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._children: dict[tuple[object, tuple[str, ...]], Any] = {}
        self.flows: dict[str, str] = {}
        """Flow id -> its label, `org/project/slug` (flows are never renamed)."""
        self.flow_label = _BoundedLabel()
        self.provider_label = _BoundedLabel()
        self.model_label = _BoundedLabel()

    def child(self, metric: Counter, *values: str) -> Any:
        """`metric.labels(*values)`, looked up once per label set."""
        key = (metric, values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found

    def http_child(self, method: str, route: str, status: int) -> Any:
        key = (method, route, status)
        child = self._http_children.get(key)
        if child is None:
            child = self._http_children[key] = self.http.labels(method, route, str(status))
        return child

    def step_children(self, step_type: str, outcome: str) -> tuple[Any, Any]:
        key = (step_type, outcome)
        children = self._step_children.get(key)
        if children is None:
            children = (self.steps.labels(step_type, outcome), self.step_seconds.labels(step_type, outcome))
            self._step_children[key] = children
        return children

    def set_slots(self, busy: int, total: int) -> None:
        self._busy.set(busy)
        self._free.set(max(0, total - busy))


_metrics: Metrics | None = None


def multiprocess_dir() -> str | None:
    """The directory processes share their values through, or None (one process, in memory)."""
    return os.environ.get(MULTIPROC_ENV) or None


def install() -> Metrics:
    """Start collecting in this process (idempotent). In multiprocess mode the metrics are kept
    out of every registry (their values live in files; `/metrics` reads them all); else they join
    the default registry, beside prometheus-client's process and platform collectors."""
    global _metrics
    if _metrics is None:
        _metrics = Metrics(None if multiprocess_dir() else REGISTRY)
    return _metrics


def installed() -> Metrics | None:
    return _metrics


# -- hooks: each a no-op until `install` ---------------------------------------------------------


async def _flow(m: Metrics, flow_id: str, lookup: FlowLookup) -> str:
    label = m.flows.get(flow_id)
    if label is None:
        try:
            flow = await lookup(flow_id)
        except Exception:  # a metric must never fail a run: name it by id this once
            return m.flow_label(flow_id)
        name = flow_id if flow is None else f"{flow.org_id}/{flow.project_slug}/{flow.slug}"
        if len(m.flows) >= 10 * MAX_LABEL_VALUES:  # a cache, not a registry of every flow
            m.flows.clear()
        label = m.flows[flow_id] = m.flow_label(name)
    return label


async def run_started(flow_id: str, created_at: datetime, lookup: FlowLookup) -> None:
    """A run's first step is about to start (its `run_started` event): counts it and observes
    how long it was queued."""
    m = _metrics
    if m is None:
        return
    m.child(m.runs_started, await _flow(m, flow_id, lookup)).inc()
    if created_at.tzinfo is None:  # the store's times are naive UTC
        created_at = created_at.replace(tzinfo=UTC)
    m.queue_wait.observe(max(0.0, (datetime.now(UTC) - created_at).total_seconds()))


async def run_finished(flow_id: str, status: str, lookup: FlowLookup) -> None:
    """A run reached `status` (completed, failed or cancelled) and it is stored."""
    m = _metrics
    if m is None:
        return
    m.child(m.runs_finished, await _flow(m, flow_id, lookup), status).inc()


def step_ended(event_type: str, payload: Mapping[str, Any]) -> None:
    """A step attempt's last event (`step_completed`, `step_error` or `step_retrying`): its
    duration by outcome, its retries, and a completed step's tokens and cost by model."""
    m = _metrics
    if m is None:
        return
    step_type = str(payload.get("type", ""))
    if event_type == "step_completed":
        outcome = "skipped" if payload.get("skipped") else "completed"
    elif event_type == "step_retrying":
        outcome = "retried"
        error = payload.get("error")
        code = str(error.get("code", "")) if isinstance(error, Mapping) else ""
        m.child(m.step_retries, step_type, code).inc()
    else:
        outcome = "failed"
    count, seconds = m.step_children(step_type, outcome)
    count.inc()
    duration_ms = payload.get("durationMs")
    if isinstance(duration_ms, int | float) and outcome != "skipped":
        seconds.observe(duration_ms / 1000)
    if outcome == "completed":
        _usage(m, payload)


def _usage(m: Metrics, payload: Mapping[str, Any]) -> None:
    model = payload.get("model")
    tokens = payload.get("tokens")
    if not isinstance(model, str) or not model or not isinstance(tokens, Mapping):
        return
    provider, _, name = model.partition(":")
    provider, name = m.provider_label(provider), m.model_label(name or provider)
    prompt, completion = tokens.get("prompt", 0), tokens.get("completion", 0)
    if prompt:
        m.child(m.tokens, provider, name, "input").inc(prompt)
    if completion:
        m.child(m.tokens, provider, name, "output").inc(completion)
    try:
        cost = float(payload.get("costUsd") or 0)
    except (TypeError, ValueError):
        cost = 0.0
    if cost > 0:
        m.child(m.cost, provider, name).inc(cost)


def worker_slots(busy: int, total: int) -> None:
    """A worker's slots changed (a run started or ended, or a slot was reserved or released)."""
    m = _metrics
    if m is not None:
        m.set_slots(busy, total)


def lease_lost() -> None:
    m = _metrics
    if m is not None:
        m.lease_losses.inc()


def run_reclaimed() -> None:
    m = _metrics
    if m is not None:
        m.reclaims.inc()


def stream_opened() -> None:
    m = _metrics
    if m is not None:
        m.streams.inc()


def stream_closed() -> None:
    m = _metrics
    if m is not None:
        m.streams.dec()


def events_written(count: int, began: float) -> None:
    """A batch of `count` events was stored; `began` is its `time.perf_counter()` start."""
    m = _metrics
    if m is not None:
        m.write_seconds.observe(time.perf_counter() - began)
        m.batch_size.observe(count)


def http_request(method: str, route: str, status: int) -> None:
    m = _metrics
    if m is not None:
        m.http_child(method if method in HTTP_METHODS else OTHER, route, status).inc()
