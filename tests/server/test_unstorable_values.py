"""A step that produces a value its run's log cannot store as JSON (an integer outside 64 bits, a
non-JSON type) fails at once: one attempt, `OUTPUT_NOT_SERIALIZABLE`, `step_error` and `run_failed`.

Found by issue 12: the log writer raised `Integer exceeds 64-bit range` after taking the event's
seq, the worker's attempt to record the failure was refused for the gap, and the run stayed
`running` until its lease expired, was retried three times and reported `STEP_INTERRUPTED` after
~90 s while `/execute` waited."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from noukai.types import events as ev
from noukai.types.events import StepStartedFields
from noukai_server.bus import MemoryBus
from noukai_server.engine import FlowEngine, default_functions
from noukai_server.flows import TemplateEngine
from noukai_server.providers import ModelRegistry, ProviderSettings
from noukai_server.runtime import FlowCache, Worker
from noukai_server.store import NewRun, Store
from tests.conftest import ServerProcess
from tests.server.test_execute_api import assert_error, post
from tests.server.test_streams import events_only, read_stream

PROMPT = 15.0
"""Seconds a refused value may take to fail its run: far below one lease (30 s)."""


def _flow(server: ServerProcess, *steps: dict[str, Any], **flow: Any) -> str:
    slug = f"unstorable-{uuid.uuid4().hex[:8]}"
    # Retries allowed (3 attempts): a refused value must still fail after one.
    document = {"slug": slug, "retry": {"max_attempts": 3}, "steps": list(steps), **flow}
    server.put_flow(server.dev_key, "dev", "main", document)
    return slug


def _execute(server: ServerProcess, slug: str, body: dict[str, Any]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = post(server, f"/seq/dev/main/{slug}/execute", body)
    return response, time.monotonic() - started


def _events(server: ServerProcess, run_id: str) -> list[tuple[int | None, str | None, dict[str, Any]]]:
    return [(f.id, f.event, f.json) for f in events_only(read_stream(server, run_id))]


def _assert_failed_once(
    server: ServerProcess, response: httpx.Response, elapsed: float, step_id: str, where: str
) -> dict[str, Any]:
    assert elapsed < PROMPT, elapsed
    detail = assert_error(response, 422, "OUTPUT_NOT_SERIALIZABLE")
    assert detail["stepId"] == step_id
    message = detail["message"]
    assert f"step '{step_id}'" in message and where in message, message
    run_id = detail["executionId"]
    run = httpx.get(f"{server.api_url}/runs/{run_id}", headers={"Authorization": f"Bearer {server.dev_key}"})
    assert run.json()["status"] == "failed"
    assert run.json()["error"]["code"] == "OUTPUT_NOT_SERIALIZABLE"
    assert run.json()["result"] is None
    events = _events(server, run_id)
    assert [seq for seq, _, _ in events] == list(range(1, len(events) + 1))  # no gap in the log
    types = [kind for _, kind, _ in events]
    assert "step_retrying" not in types and "STEP_INTERRUPTED" not in str(events)
    assert types[-2:] == ["step_error", "run_failed"]
    error = events[-2][2]
    assert (error["stepId"], error["attempt"]) == (step_id, 1)
    assert error["error"] == {"code": "OUTPUT_NOT_SERIALIZABLE", "message": message}
    assert events[-1][2]["error"]["code"] == "OUTPUT_NOT_SERIALIZABLE"
    return error


def test_a_template_step_of_2_pow_64_fails_at_once(server: ServerProcess) -> None:
    slug = _flow(
        server,
        {"id": "fine", "type": "template", "template": "{{ 2**63 }}"},
        {"id": "big", "type": "template", "template": "{{ 2**64 }}"},
    )
    response, elapsed = _execute(server, slug, {"parameters": {}})
    error = _assert_failed_once(server, response, elapsed, "big", "step_completed at output")
    assert "65 bits" in error["error"]["message"]


def test_the_widest_storable_integers_complete(server: ServerProcess) -> None:
    slug = _flow(server, {"id": "wide", "type": "template", "template": ["{{ 2**64 - 1 }}", "{{ -2**63 }}"]})
    response, _ = _execute(server, slug, {"parameters": {}})
    assert response.status_code == 200, response.text
    assert response.json()["result"] == [2**64 - 1, -(2**63)]


def test_a_python_step_returning_a_wide_integer_fails_at_once(server: ServerProcess) -> None:
    slug = _flow(
        server,
        {"id": "parse", "type": "python", "function": "json.parse", "args": {"text": "{{ parameters.t }}"}},
    )
    response, elapsed = _execute(server, slug, {"parameters": {"t": '{"n": [1, 18446744073709551616]}'}})
    _assert_failed_once(server, response, elapsed, "parse", "output.n[1]")


def test_a_foreach_iteration_names_its_loop_index(server: ServerProcess) -> None:
    slug = _flow(
        server,
        {
            "id": "each",
            "type": "python",
            "foreach": "{{ parameters.texts }}",
            "function": "json.parse",
            "args": {"text": "{{ item }}"},
        },
    )
    body = {"parameters": {"texts": ["1", "2", "-9223372036854775809"]}}
    response, elapsed = _execute(server, slug, body)
    error = _assert_failed_once(server, response, elapsed, "each", "step_progress at output")
    assert error["loopIndex"] == 2


def test_a_wide_argument_fails_where_the_input_is_captured(server: ServerProcess) -> None:
    step = {"id": "join", "type": "python", "function": "text.join", "args": {"items": ["{{ 2**64 }}"]}}
    slug = _flow(server, step)
    response, elapsed = _execute(server, slug, {"parameters": {}})
    _assert_failed_once(server, response, elapsed, "join", "step_input at inputData.args.items[0]")
    # Where the flow keeps no input content, the argument never reaches the log: the step runs.
    slug = _flow(server, step, trace_capture_mode="metadata_only")
    response, _ = _execute(server, slug, {"parameters": {}})
    assert response.status_code == 200, response.text
    assert response.json()["result"] == str(2**64)


def test_a_job_fails_promptly_too(server: ServerProcess) -> None:
    slug = _flow(server, {"id": "big", "type": "template", "template": "{{ -2**64 }}"})
    response = post(server, f"/seq/dev/main/{slug}/jobs", {"parameters": {}})
    assert response.status_code == 202, response.text
    run_id = response.json()["executionId"]
    frames = _events(server, run_id)  # the stream ends with the run's terminal event
    assert [kind for _, kind, _ in frames][-2:] == ["step_error", "run_failed"]
    assert frames[-1][2]["error"]["code"] == "OUTPUT_NOT_SERIALIZABLE"


def test_non_finite_floats_are_stored_as_null(server: ServerProcess) -> None:
    """orjson writes NaN and infinities as `null` rather than refusing them: such an output is
    stored (as null) and the run completes. Pinned so that a change of that rule is seen."""
    step = {"id": "parse", "type": "python", "function": "json.parse", "args": {"text": "{{ parameters.t }}"}}
    slug = _flow(server, step)
    response, _ = _execute(server, slug, {"parameters": {"t": "[NaN, Infinity, -1e400, 1.5]"}})
    assert response.status_code == 200, response.text
    assert response.json()["result"] == [None, None, None, 1.5]


# --- the worker's last resort, in process ---------------------------------------------------------


class _BrokenEngine(FlowEngine):
    """Writes a step's first events, then fails with an error the engine does not expect."""

    async def run(self, flow: Any, inputs: Any, state: Any, sink: Any, **_: Any) -> Any:
        started: StepStartedFields = {
            "stepId": "a",
            "name": None,
            "stepIndex": 0,
            "type": "template",
            "attempt": 1,
        }
        await sink.emit(ev.STEP_STARTED, started)
        raise RuntimeError("a bug")


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_an_unexpected_engine_error_fails_the_run_after_its_pending_events(
    tmp_path: Path, anyio_backend: str
) -> None:
    """The worker records INTERNAL_ERROR with a fresh writer that starts from the store's last seq;
    it used to read that seq while the old writer's events were still being written, so its
    `run_failed` was refused for a seq clash and the run stayed `running` until its lease ran out."""
    store = await Store.connect(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    worker = None
    try:
        functions = default_functions()
        engine = _BrokenEngine(ModelRegistry(ProviderSettings()), functions, TemplateEngine())
        flows = FlowCache(known_functions=set(functions.names()))
        bus = MemoryBus()
        worker = Worker(store, bus, engine, flows, lease_seconds=30, poll_interval=0.05, worker_id="w")
        document = {"slug": "t", "steps": [{"id": "a", "type": "template", "template": "x"}]}
        flow = await store.save_draft("acme", "web", "t", document, None)
        new = NewRun(
            org_id=flow.org_id,
            project_id=flow.project_id,
            flow_id=flow.id,
            flow_version=0,
            flow_revision=flow.draft_revision,
            document=document,
            trigger_type="job",
            input={},
        )
        run = await store.create_run(new)
        await worker.start()
        await bus.announce_work()
        deadline = time.monotonic() + 10
        while (current := await store.get_run(run.id)) is not None and not current.terminal:
            assert time.monotonic() < deadline, "the run never ended"
            await asyncio.sleep(0.02)
        assert current is not None and current.status == "failed"
        assert current.error is not None and current.error["code"] == "INTERNAL_ERROR"
        events = await store.read_events(run.id)
        assert [(e.seq, e.type) for e in events] == [
            (1, "run_started"),
            (2, "step_started"),
            (3, "run_failed"),
        ]
    finally:
        if worker is not None:
            await worker.stop()
        await store.close()
