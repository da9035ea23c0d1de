"""The run driver's last resorts: a run that breaks inside the engine still ends with a terminal
event (`run_failed`, INTERNAL_ERROR), a run stopped before its task began still has a whole log,
and its inbox hears the end either way."""

from __future__ import annotations

import asyncio

import pytest

from noukai_server.config import ServerConfig
from noukai_server.engine import RunInputs
from noukai_server.local import driver
from noukai_server.local.assembly import build_parts
from noukai_server.local.log import LogEntry
from noukai_server.local.source import read_flow

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_an_exception_inside_the_engine_fails_the_run_with_internal_error() -> None:
    parts = build_parts(ServerConfig())
    spec = read_flow(
        {"slug": "t", "steps": [{"id": "a", "type": "template", "template": "x"}]}, parts.check_options()
    )
    received: list[LogEntry | None] = []
    ended = asyncio.Event()

    def deliver(entry: LogEntry | None) -> None:
        received.append(entry)
        if entry is not None and entry.type == "step_started" and entry.seq == 2:
            raise RuntimeError("the listener broke")  # not a step failure: the engine cannot handle it
        if entry is None:
            ended.set()

    run = driver.LocalRun("broken-run", spec, RunInputs(), "execute", deliver)
    driver.start(parts, run)
    await asyncio.wait_for(ended.wait(), 5)
    types = [entry.type for entry in received if entry is not None]
    assert types == ["run_started", "step_started", "run_failed"]
    assert run.status == "failed"
    last = received[-2]
    assert last is not None and b'"code":"INTERNAL_ERROR"' in last.data
    assert b"RuntimeError: the listener broke" in last.data
    assert received[-1] is None and run.ended.is_set()
    await parts.aclose()


async def test_a_run_stopped_before_its_task_began_still_has_a_whole_log() -> None:
    """Stopped on the engine's loop right after `start`, before the task's first step ran (in
    the same loop turn, so this is certain): `run_started`, then `run_cancelled`."""
    parts = build_parts(ServerConfig())
    spec = read_flow(
        {"slug": "t", "steps": [{"id": "a", "type": "template", "template": "x"}]}, parts.check_options()
    )
    received: list[LogEntry | None] = []
    run = driver.LocalRun("early", spec, RunInputs(), "step", received.append)
    driver.start(parts, run)
    driver.stop(run)
    await asyncio.wait_for(asyncio.to_thread(run.ended.wait, 5), 6)
    assert [(e.seq, e.type) for e in received if e is not None] == [(1, "run_started"), (2, "run_cancelled")]
    assert received[-1] is None
    await parts.aclose()
