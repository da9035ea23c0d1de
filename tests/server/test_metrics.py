"""`GET /metrics` on a real server: the counts after a known set of runs, and who may read them.

The runs: two completed model runs (a fake OpenAI provider reporting known usage), one that fails
(a template error), one whose model step fails twice and then succeeds (two retries), one cancelled
by its worker mid-step, one cancelled by the API while it waited between steps, and one left
waiting, with an event stream open on it while the metrics are read.
"""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from noukai_server.api.metrics_endpoint import refusal
from noukai_server.config import ConfigError
from noukai_server.settings import load_settings
from noukai_server.settings.show import effective
from tests.conftest import REPO_ROOT, ServerProcess, _server_env, free_port
from tests.fakeprovider import FakeProvider, Reply
from tests.sse_client import iter_frames

HANG_GUARD = 30.0
"""Seconds to wait for what should happen much sooner: a guard against hangs, not a measure."""
STEP_BODY = {
    "stepIndex": 0,
    "accumulatedOutputs": {},
    "parameters": {},
    "inputOverrides": {},
    "iterationsUsed": 0,
    "trace": False,
}
FLOWS: list[dict[str, Any]] = [
    {
        "slug": "talk",
        "steps": [
            {"id": "ask", "type": "llm", "model": "openai:gpt-4o-mini", "prompt": "{{ message }}"},
            {"id": "shape", "type": "template", "template": "<{{ steps.ask.output }}>"},
        ],
    },
    {
        "slug": "broken",
        "steps": [{"id": "oops", "type": "template", "template": "{{ parameters.nothing_here }}"}],
    },
    {
        "slug": "flaky",
        "retry": {"initial_backoff_seconds": 0.01, "max_backoff_seconds": 0.05},
        "steps": [
            {
                "id": "ask",
                "type": "llm",
                "model": "builtin:flaky",
                "prompt": "{{ message }}",
                "params": {"fail_times": 2},
            }
        ],
    },
    {
        "slug": "slow",
        "steps": [
            {
                "id": "drip",
                "type": "llm",
                "model": "builtin:echo",
                "prompt": "{{ message }}",
                "params": {"token_delay_ms": 60_000},
            }
        ],
    },
    {
        "slug": "paced",
        "steps": [
            {"id": "one", "type": "template", "template": "1"},
            {"id": "two", "type": "template", "template": "2"},
        ],
    },
]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(server: ServerProcess, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.get(f"{server.base_url}/metrics", headers=headers, timeout=HANG_GUARD)


def samples(text: str) -> Samples:
    """Every sample as `{(name, labels): value}`, parsed by prometheus-client's own parser."""
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def total(found: Samples, name: str, **labels: str) -> float:
    """The sum over the samples of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in found.items() if n == name and wanted <= have)


def headers(server: ServerProcess) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.dev_key}"}


def execute(server: ServerProcess, slug: str, message: str = "hello there") -> httpx.Response:
    return httpx.post(
        f"{server.api_url}/seq/dev/main/{slug}/execute",
        json={"message": message},
        headers=headers(server),
        timeout=HANG_GUARD,
    )


def first_step(server: ServerProcess, slug: str) -> str:
    """Run a paced flow's first step through /step (the run then waits); its id."""
    with httpx.stream(
        "POST",
        f"{server.api_url}/seq/dev/main/{slug}/step",
        json={**STEP_BODY, "message": "go"},
        headers=headers(server),
        timeout=HANG_GUARD,
    ) as response:
        assert response.status_code == 200, response.read()
        frames = [frame for frame in iter_frames(response) if frame.event]
    assert frames[-1].event == "step_paused", [f.event for f in frames]
    return str(frames[0].json["executionId"])


def run_status(server: ServerProcess, run_id: str) -> str:
    response = httpx.get(f"{server.api_url}/runs/{run_id}", headers=headers(server), timeout=HANG_GUARD)
    assert response.status_code == 200, response.text
    return str(response.json()["status"])


def wait_status(server: ServerProcess, run_id: str, status: str) -> None:
    deadline = time.monotonic() + HANG_GUARD
    while run_status(server, run_id) != status:
        assert time.monotonic() < deadline, f"run {run_id} never became {status}"
        time.sleep(0.05)


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    with FakeProvider(api_key="sk-right") as fake:
        yield fake


@pytest.fixture
def busy_server(make_server: Any, provider: FakeProvider) -> ServerProcess:
    server: ServerProcess = make_server(
        {"OPENAI_BASE_URL": provider.openai_base_url, "OPENAI_API_KEY": "sk-right"}
    )
    for flow in FLOWS:
        server.put_flow(server.dev_key, "dev", "main", flow)
    return server


def test_the_counts_after_a_known_set_of_runs(busy_server: ServerProcess, provider: FakeProvider) -> None:
    server = busy_server
    provider.script(Reply(chunks=["Hel", "lo"], usage=(12, 3)), Reply(chunks=["Hi"], usage=(5, 7)))
    talks = [execute(server, "talk"), execute(server, "talk")]
    assert [r.status_code for r in talks] == [200, 200], [r.text for r in talks]
    model = next(
        e for e in _step_events(server, talks[0].json()["executionId"]) if e["eventType"] == "step_completed"
    )["model"]
    broken = execute(server, "broken")
    assert broken.status_code == 422, broken.text
    flaky = execute(server, "flaky")
    assert flaky.status_code == 200, flaky.text

    # Cancelled by its worker: the step is inside a model stream when the cancel comes.
    slow = httpx.post(
        f"{server.api_url}/seq/dev/main/slow/jobs", json={"message": "a b c"}, headers=headers(server)
    )
    assert slow.status_code == 202, slow.text
    slow_id = slow.json()["executionId"]
    wait_status(server, slow_id, "running")
    assert httpx.post(f"{server.api_url}/runs/{slow_id}/cancel", headers=headers(server)).status_code == 200
    wait_status(server, slow_id, "cancelled")
    # Cancelled by the API: nobody holds a waiting run.
    paced_id = first_step(server, "paced")
    assert httpx.post(f"{server.api_url}/runs/{paced_id}/cancel", headers=headers(server)).status_code == 200
    wait_status(server, paced_id, "cancelled")
    # Left waiting, with a stream open on it.
    waiting_id = first_step(server, "paced")
    opened = threading.Event()
    stop = threading.Event()

    def hold_stream() -> None:
        with httpx.stream(
            "GET", f"{server.api_url}/runs/{waiting_id}/events", headers=headers(server), timeout=HANG_GUARD
        ) as response:
            for frame in iter_frames(response):
                if frame.id is not None:
                    opened.set()
                if stop.is_set():
                    return

    holder = threading.Thread(target=hold_stream, daemon=True)
    holder.start()
    assert opened.wait(HANG_GUARD)

    response = scrape(server)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)

    flow = "dev/main/"
    assert value(found, "noukai_runs_started_total", flow=flow + "talk") == 2
    assert value(found, "noukai_runs_finished_total", flow=flow + "talk", status="completed") == 2
    assert value(found, "noukai_runs_finished_total", flow=flow + "flaky", status="completed") == 1
    assert value(found, "noukai_runs_finished_total", flow=flow + "broken", status="failed") == 1
    assert value(found, "noukai_runs_finished_total", flow=flow + "slow", status="cancelled") == 1
    assert value(found, "noukai_runs_finished_total", flow=flow + "paced", status="cancelled") == 1
    assert total(found, "noukai_runs_finished_total", status="completed") == 3
    assert total(found, "noukai_runs_finished_total", status="failed") == 1
    assert total(found, "noukai_runs_finished_total", status="cancelled") == 2
    assert total(found, "noukai_runs_started_total") == 7
    assert value(found, "noukai_run_queue_wait_seconds_count") == 7

    # The flaky step: two failed attempts retried, then one completed.
    assert total(found, "noukai_step_retries_total", type="llm") == 2
    assert value(found, "noukai_step_attempts_total", type="llm", outcome="retried") == 2
    assert value(found, "noukai_step_duration_seconds_count", type="llm", outcome="retried") == 2
    assert value(found, "noukai_step_attempts_total", type="template", outcome="failed") == 1
    # talk x2 and flaky's last attempt; the cancelled one never completed.
    assert value(found, "noukai_step_attempts_total", type="llm", outcome="completed") == 3

    provider_name, _, model_name = model.partition(":")
    assert provider_name == "openai"
    tokens = {"provider": provider_name, "model": model_name}
    assert value(found, "noukai_model_tokens_total", **tokens, direction="input") == 17
    assert value(found, "noukai_model_tokens_total", **tokens, direction="output") == 10
    assert value(found, "noukai_model_cost_usd_total", **tokens) > 0

    assert value(found, "noukai_queue_runs", status="waiting") == 1
    assert value(found, "noukai_queue_runs", status="queued") == 0
    assert value(found, "noukai_queue_runs", status="running") == 0
    assert value(found, "noukai_worker_slots", state="busy") == 0
    assert value(found, "noukai_worker_slots", state="free") == 64
    assert value(found, "noukai_streams_open") == 1

    execute_route = "/api/v1/seq/{org}/{project}/{slug}/execute"
    assert value(found, "noukai_http_requests_total", method="POST", route=execute_route, status="200") == 3
    assert value(found, "noukai_http_requests_total", method="POST", route=execute_route, status="422") == 1
    events_route = "/api/v1/runs/{execution_id}/events"
    assert value(found, "noukai_http_requests_total", method="GET", route=events_route, status="200") >= 1
    assert value(found, "noukai_http_requests_total", method="GET", route="unmatched", status="404") == 0
    routes = {dict(labels)["route"] for (name, labels) in found if name == "noukai_http_requests_total"}
    assert not [r for r in routes if slow_id in r or "/dev/" in r], routes  # templates, never raw paths

    # Every event a worker wrote went through one measured batch; the API wrote the paced cancel.
    with sqlite3.connect(server.data_dir / "noukai.db") as db:
        (stored,) = db.execute("SELECT count(*) FROM run_events").fetchone()
    assert value(found, "noukai_event_write_batch_size_sum") == stored - 1
    assert value(found, "noukai_event_write_seconds_count") == value(
        found, "noukai_event_write_batch_size_count"
    )
    stop.set()


def _step_events(server: ServerProcess, run_id: str) -> list[dict[str, Any]]:
    with httpx.stream(
        "GET", f"{server.api_url}/runs/{run_id}/events", headers=headers(server), timeout=HANG_GUARD
    ) as response:
        return [frame.json for frame in iter_frames(response) if frame.event]


def test_a_token_is_required_when_set(make_server: Any) -> None:
    server: ServerProcess = make_server({"NOUKAI_METRICS_TOKEN": "s3cret-scrape"})
    for sent in (None, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-scrape"}):
        refused = scrape(server, sent)
        assert refused.status_code == 401, refused.text
        assert refused.json()["detail"]["code"] == "UNAUTHENTICATED"
        assert refused.headers["www-authenticate"].startswith("Bearer")
    # An API key is no metrics token.
    assert scrape(server, headers(server)).status_code == 401
    allowed = scrape(server, {"Authorization": "Bearer s3cret-scrape"})
    assert allowed.status_code == 200, allowed.text
    assert "noukai_queue_runs" in allowed.text


def test_disabled_metrics_have_no_route(make_server: Any) -> None:
    server: ServerProcess = make_server({"NOUKAI_METRICS_ENABLED": "false"})
    response = scrape(server)
    assert response.status_code == 404
    assert httpx.get(f"{server.api_url}/health").status_code == 200


@pytest.mark.parametrize(
    ("host", "authorization", "token", "status", "code"),
    [
        ("127.0.0.1", None, None, None, None),
        ("::1", None, None, None, None),
        ("10.1.2.3", None, None, 403, "FORBIDDEN"),
        ("192.168.0.9", "Bearer anything", None, 403, "FORBIDDEN"),
        (None, None, None, 403, "FORBIDDEN"),
        ("testclient", None, None, 403, "FORBIDDEN"),
        ("10.1.2.3", "Bearer tok", "tok", None, None),
        ("127.0.0.1", None, "tok", 401, "UNAUTHENTICATED"),
        ("127.0.0.1", "Basic tok", "tok", 401, "UNAUTHENTICATED"),
        ("127.0.0.1", "Bearer tok2", "tok", 401, "UNAUTHENTICATED"),
    ],
)
def test_who_may_read_the_metrics(
    host: str | None, authorization: str | None, token: str | None, status: int | None, code: str | None
) -> None:
    answer = refusal(host, authorization, token)
    if status is None:
        assert answer is None
    else:
        assert answer is not None and answer.status_code == status
        assert code is not None and code.encode() in bytes(answer.body)


def test_the_token_is_a_setting_and_is_masked() -> None:
    env = {"NOUKAI_METRICS_TOKEN": "s3cret-scrape", "NOUKAI_METRICS_ENABLED": "off"}
    loaded = load_settings(None, env, {})
    assert loaded.config.metrics_token == "s3cret-scrape"
    assert loaded.config.metrics_enabled is False
    shown = effective(loaded, env)
    assert shown["settings"]["metrics"]["token"] == {
        "value": "***",
        "source": "environment NOUKAI_METRICS_TOKEN",
    }
    with pytest.raises(ConfigError, match="NOUKAI_METRICS_ENABLED"):
        load_settings(None, {"NOUKAI_METRICS_ENABLED": "maybe"}, {})


def _worker(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "noukai_server", "worker", "--data-dir", str(tmp_path), *args],
        env={**_server_env(), **env},
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        cwd=REPO_ROOT,
    )


def test_a_worker_metrics_port_needs_metrics_on(tmp_path: Path) -> None:
    done = _worker(tmp_path, {"NOUKAI_METRICS_ENABLED": "false"}, "--metrics-port", str(free_port()))
    assert done.returncode == 1
    assert "--metrics-port needs [metrics] enabled = true" in done.stderr


def test_a_worker_metrics_port_in_use_is_refused(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        done = _worker(tmp_path, {}, "--metrics-port", str(taken.getsockname()[1]))
    assert done.returncode == 1
    assert "cannot serve metrics on 127.0.0.1:" in done.stderr


def test_a_worker_with_an_unusable_multiproc_dir_says_so(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    done = _worker(tmp_path, {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "a-file" / "m")})
    assert done.returncode == 1
    assert "error: PROMETHEUS_MULTIPROC_DIR=" in done.stderr and "is unusable" in done.stderr


def test_a_server_with_an_unusable_multiproc_dir_does_not_start(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    env = {**_server_env(), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "a-file" / "m")}
    server = ServerProcess(free_port(), data_dir, env)
    with pytest.raises(RuntimeError, match="server exited early"):
        server.start()
    assert "PROMETHEUS_MULTIPROC_DIR=" in server.log_text() and "is unusable" in server.log_text()
