"""The reconnect state machine, driven by hand (no I/O)."""

from __future__ import annotations

import json
import random

import pytest

import noukai
from noukai._models import RunInfo
from noukai._reconnect import FINISHED, Probe, ReconnectPolicy, StreamMachine, Wait
from noukai._transport import Call


def frame(seq: int, name: str, **data: object) -> bytes:
    return f"id: {seq}\nevent: {name}\ndata: {json.dumps({'eventType': name, **data})}\n\n".encode()


def machine(**kwargs: object) -> StreamMachine:
    kwargs.setdefault("first", None)
    kwargs.setdefault("execution_id", "run-1")
    kwargs.setdefault("rng", random.Random(7))
    return StreamMachine(**kwargs)  # type: ignore[arg-type]


def connect(m: StreamMachine) -> Call:
    action = m.next_action()
    assert isinstance(action, Call), action
    m.on_open({})
    return action


def run_info(status: str, last_seq: int) -> RunInfo:
    return RunInfo(execution_id="run-1", status=status, last_seq=last_seq)


def test_resumes_after_a_drop_without_gap_or_duplicate() -> None:
    m = machine()
    first = connect(m)
    assert first.path == "/runs/run-1/events" and "Last-Event-ID" not in first.headers
    got = m.feed(frame(1, "run_started", executionId="run-1") + frame(2, "step_started", stepId="a"))
    assert [e.seq for e in got] == [1, 2]
    m.on_network_error(ConnectionResetError())
    wait = m.next_action()
    assert isinstance(wait, Wait) and wait.attempt == 1 and 0.125 <= wait.seconds <= 0.25
    again = connect(m)
    assert again.headers["Last-Event-ID"] == "2" and again.params == {"since_id": "2"}
    # The server repeats 2 (it should not, but the machine must not deliver it twice).
    got = m.feed(
        frame(2, "step_started", stepId="a") + frame(3, "flow_completed", result="x") + frame(4, "x")
    )
    assert [e.seq for e in got] == [3]
    assert m.done and m.next_action() is FINISHED
    m.on_network_error(ConnectionResetError())  # late errors after the end are ignored
    m.on_close()


def test_backoff_grows_and_gives_up() -> None:
    m = machine(policy=ReconnectPolicy(max_reconnects=3, initial_delay=1.0, max_delay=4.0))
    waits = []
    for _ in range(3):
        connect(m)
        m.on_network_error(OSError("refused"))
        action = m.next_action()
        assert isinstance(action, Wait)
        waits.append(action.seconds)
    assert 0.5 <= waits[0] <= 1.0 and 1.0 <= waits[1] <= 2.0 and 2.0 <= waits[2] <= 4.0
    connect(m)
    with pytest.raises(noukai.APIConnectionError, match="gave up after 3") as info:
        m.on_network_error(OSError("refused"))
    assert info.value.execution_id == "run-1"


def test_an_event_resets_the_failure_count() -> None:
    m = machine(policy=ReconnectPolicy(max_reconnects=1))
    connect(m)
    m.on_network_error(OSError())
    assert isinstance(m.next_action(), Wait)
    connect(m)
    m.feed(frame(1, "step_output", stepId="a"))
    assert m.failures == 0
    m.on_network_error(OSError())
    assert isinstance(m.next_action(), Wait)


def test_silence_is_a_dead_connection() -> None:
    m = machine(policy=ReconnectPolicy(heartbeat_seconds=2.0, missed_heartbeats=3))
    assert m.read_timeout == 6.0
    connect(m)
    m.on_network_error(TimeoutError(), timed_out=True)
    action = m.next_action()
    assert isinstance(action, Wait) and "3 heartbeats" in action.reason


def test_planned_close_reconnects_after_the_retry_hint() -> None:
    m = machine()
    connect(m)
    m.feed(b"retry: 1500\n\n" + frame(1, "run_started", executionId="run-1"))
    m.on_close()
    action = m.next_action()
    assert isinstance(action, Wait) and action.seconds == 1.5 and m.failures == 0
    assert connect(m).headers["Last-Event-ID"] == "1"


def test_an_empty_close_asks_whether_the_run_is_over() -> None:
    m = machine(last_event_id=5)
    connect(m)
    m.on_close()
    probe = m.next_action()
    assert probe == Probe("run-1")
    m.on_probe(run_info("completed", 5))
    assert m.done and m.next_action() is FINISHED


def test_probe_outcomes() -> None:
    quiet = machine()
    connect(quiet)
    quiet.feed(b": ping\n\n")
    quiet.on_close()
    assert isinstance(quiet.next_action(), Probe)
    quiet.on_probe(run_info("running", 3))
    action = quiet.next_action()
    assert isinstance(action, Wait) and quiet.failures == 0  # heartbeats: healthy, just cycled

    silent = machine()
    connect(silent)
    silent.on_close()
    silent.next_action()
    silent.on_probe(run_info("completed", 9))  # events remain: read them
    assert isinstance(silent.next_action(), Wait) and silent.failures == 1

    failing = machine()
    connect(failing)
    failing.on_close()
    failing.next_action()
    failing.on_probe_error(noukai.FlowExecutionError("busy", status_code=503))
    assert isinstance(failing.next_action(), Wait)
    with pytest.raises(noukai.FlowNotFoundError):
        failing.on_probe_error(noukai.FlowNotFoundError("gone", status_code=404))


def test_error_answers() -> None:
    m = machine()
    connect(m)
    m.on_error_response(503, {"retry-after": "2"}, b"")
    action = m.next_action()
    assert isinstance(action, Wait) and action.seconds >= 2.0
    connect(m)
    with pytest.raises(noukai.FlowExecutionError) as info:
        m.on_error_response(410, {}, b'{"detail": {"code": "EVENTS_EXPIRED", "message": "pruned"}}')
    assert info.value.code == "EVENTS_EXPIRED"
    connect(m)
    with pytest.raises(noukai.FlowNotFoundError):
        m.on_error_response(404, {}, b"")


def test_a_post_is_never_repeated() -> None:
    post = Call("POST", "/seq/a/b/c/step", json={})
    m = StreamMachine(first=post, execution_id=None)
    assert m.next_action() is post
    with pytest.raises(noukai.FlowExecutionError):
        m.on_error_response(503, {}, b"")
    before_answer = StreamMachine(first=post, execution_id="run-1")
    before_answer.next_action()
    with pytest.raises(noukai.APIConnectionError, match="before it could be resumed"):
        before_answer.on_network_error(OSError())
    timed_out = StreamMachine(first=post, execution_id="run-1")
    timed_out.next_action()
    with pytest.raises(noukai.APITimeoutError):
        timed_out.on_network_error(TimeoutError(), timed_out=True)


def test_a_post_stream_resumes_from_the_log_once_answered() -> None:
    post = Call("POST", "/seq/a/b/c/step", json={})
    m = StreamMachine(first=post, execution_id=None, stop_after=frozenset({"step_paused"}))
    m.next_action()
    m.on_open({})
    with pytest.raises(noukai.APIConnectionError, match="before the run started"):
        m.on_close()
    m2 = StreamMachine(first=post, execution_id=None, stop_after=frozenset({"step_paused"}))
    m2.next_action()
    m2.on_open({})
    m2.feed(frame(1, "run_started", runId="r9", executionId="r9"))
    assert m2.execution_id == "r9"
    m2.on_network_error(OSError())
    assert isinstance(m2.next_action(), Wait)
    resumed = m2.next_action()
    assert isinstance(resumed, Call) and resumed.method == "GET" and resumed.path == "/runs/r9/events"
    m2.on_open({})
    assert [e.type for e in m2.feed(frame(2, "step_paused", stepId="a"))] == ["step_paused"]
    assert m2.done


def test_types_filter_keeps_the_end_visible() -> None:
    m = machine(types=frozenset({"step_completed", "tool_calls_required"}))
    call = connect(m)
    assert call.params is not None
    assert (
        call.params["types"]
        == "flow_completed,run_cancelled,run_failed,step_completed,step_paused_for_tool_calls"
    )
    got = m.feed(frame(1, "step_completed", stepId="a") + frame(2, "run_failed", error={}))
    assert [e.type for e in got] == ["step_completed"] and m.done


def test_frames_without_ids_still_arrive() -> None:
    m = machine()
    connect(m)
    got = m.feed(b'event: step_output\ndata: {"stepId": "a"}\n\n')
    assert len(got) == 1 and m.last_event_id is None


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        StreamMachine(first=None, execution_id=None)
    with pytest.raises(ValueError):
        ReconnectPolicy(heartbeat_seconds=0)
