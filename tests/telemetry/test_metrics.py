"""`telemetry.metrics` in process: hooks do nothing until installed, labels stay bounded, and a
flow lookup that fails never fails the run."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry

from noukai_server.telemetry import metrics


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> tuple[metrics.Metrics, CollectorRegistry]:
    """Metrics in a registry of their own, installed for the test only."""
    registry = CollectorRegistry()
    m = metrics.Metrics(registry)
    monkeypatch.setattr(metrics, "_metrics", m)
    return m, registry


async def _flow(flow_id: str) -> SimpleNamespace:
    return SimpleNamespace(org_id="acme", project_slug="web", slug=f"f-{flow_id}")


async def _broken(flow_id: str) -> None:
    raise OSError("the store is gone")


def test_hooks_do_nothing_before_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "_metrics", None)
    metrics.step_ended("step_completed", {"type": "llm", "durationMs": 5})
    metrics.worker_slots(1, 2)
    metrics.http_request("GET", "/x", 200)
    assert metrics.installed() is None


@pytest.mark.anyio
async def test_runs_are_counted_by_flow_label(fresh: tuple[metrics.Metrics, CollectorRegistry]) -> None:
    m, registry = fresh
    await metrics.run_started("id1", datetime.now(UTC).replace(tzinfo=None), _flow)
    await metrics.run_finished("id1", "completed", _flow)
    labels = {"flow": "acme/web/f-id1", "status": "completed"}
    assert registry.get_sample_value("noukai_runs_finished_total", labels) == 1
    assert registry.get_sample_value("noukai_runs_started_total", {"flow": "acme/web/f-id1"}) == 1
    assert registry.get_sample_value("noukai_run_queue_wait_seconds_count") == 1


@pytest.mark.anyio
async def test_a_failed_flow_lookup_names_the_flow_by_id(
    fresh: tuple[metrics.Metrics, CollectorRegistry],
) -> None:
    m, registry = fresh
    await metrics.run_finished("id2", "failed", _broken)
    assert registry.get_sample_value("noukai_runs_finished_total", {"flow": "id2", "status": "failed"}) == 1
    assert "id2" not in m.flows  # looked up again next time


def test_model_labels_are_bounded(fresh: tuple[metrics.Metrics, CollectorRegistry]) -> None:
    m, registry = fresh
    for n in range(metrics.MAX_LABEL_VALUES + 5):
        metrics.step_ended(
            "step_completed",
            {
                "type": "llm",
                "model": f"openai:model-{n}",
                "tokens": {"prompt": 1, "completion": 2},
                "costUsd": "0.5",
            },
        )
    other = {"provider": "openai", "model": metrics.OTHER, "direction": "input"}
    assert registry.get_sample_value("noukai_model_tokens_total", other) == 5
    assert (
        registry.get_sample_value("noukai_model_cost_usd_total", {"provider": "openai", "model": "model-0"})
        == 0.5
    )
    completed = {"type": "llm", "outcome": "completed"}
    assert registry.get_sample_value("noukai_step_attempts_total", completed) == metrics.MAX_LABEL_VALUES + 5


def test_step_outcomes(fresh: tuple[metrics.Metrics, CollectorRegistry]) -> None:
    _, registry = fresh
    error = {"code": "PROVIDER_ERROR", "message": "x"}
    metrics.step_ended("step_retrying", {"type": "llm", "durationMs": 10, "error": error})
    metrics.step_ended("step_error", {"type": "llm", "durationMs": 20, "error": error})
    metrics.step_ended("step_completed", {"type": "template", "skipped": True, "durationMs": 0})
    metrics.step_ended("step_retrying", {"type": "llm", "error": {"code": "STEP_INTERRUPTED"}})  # no duration
    assert (
        registry.get_sample_value("noukai_step_retries_total", {"type": "llm", "code": "PROVIDER_ERROR"}) == 1
    )
    assert (
        registry.get_sample_value("noukai_step_retries_total", {"type": "llm", "code": "STEP_INTERRUPTED"})
        == 1
    )
    retried = {"type": "llm", "outcome": "retried"}
    assert registry.get_sample_value("noukai_step_attempts_total", retried) == 2
    assert registry.get_sample_value("noukai_step_duration_seconds_count", retried) == 1
    assert (
        registry.get_sample_value("noukai_step_duration_seconds_sum", {"type": "llm", "outcome": "failed"})
        == 0.02
    )
    skipped = {"type": "template", "outcome": "skipped"}
    assert registry.get_sample_value("noukai_step_attempts_total", skipped) == 1
    assert registry.get_sample_value("noukai_step_duration_seconds_count", skipped) == 0  # no duration
