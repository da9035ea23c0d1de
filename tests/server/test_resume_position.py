"""Where a reader resumes the native stream (`since_id`, `Last-Event-ID`): one parser for both routes
that serve `GET /runs/{id}/events` (the plain Starlette route tried first, and the FastAPI route kept
for the OpenAPI document), so a bad position is refused with the error envelope before any byte of
the stream is sent, and a good one still resumes where it should."""

from __future__ import annotations

import inspect
import os
import re
import shutil
from collections.abc import Iterator

import httpx
import pytest

import noukai_server.api.routes.stream as stream_routes
from noukai_server.api import endpoints
from noukai_server.api.resume import MAX_SEQ, InvalidResumePosition, parse_event_seq, resume_position
from noukai_server.runtime import RequestRejected, parse_version_segment
from tests.conftest import ServerProcess, _server_env, free_port
from tests.server.test_execute_api import assert_error
from tests.server.test_streams import STEP_BODY, events_only, headers, start_run, wait_status
from tests.sse_client import Frame, iter_frames

# --- the parser ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("0", 0),
        ("5", 5),
        (" 12 ", 12),
        ("007", 7),
        ("0" * 400, 0),
        ("0" * 50 + "42", 42),
        (str(MAX_SEQ), MAX_SEQ),
    ],
)
def test_ascii_digits_below_2_63_are_event_seqs(raw: str, value: int) -> None:
    assert parse_event_seq(raw) == value


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "  ",
        "²",  # str.isdigit() is True, int() refuses it
        "1²",
        "٣",  # an Arabic-Indic digit: int() would take it, the wire contract does not
        "-1",
        "+1",
        "1.5",
        "1_000",
        "1e3",
        "0x10",
        "abc",
        str(2**63),
        str(2**64),
        "9" * 400,
        "1" * 5000,  # more digits than int() converts at all
    ],
)
def test_everything_else_is_refused_with_a_value_error(raw: str) -> None:
    with pytest.raises(ValueError, match="must be an event seq"):
        parse_event_seq(raw)


def test_the_larger_of_both_positions_wins_and_a_blank_header_is_none() -> None:
    assert resume_position(None, None) == 0
    assert resume_position("3", None) == 3
    assert resume_position(None, "7") == 7
    assert resume_position("9", "4") == 9
    assert resume_position("2", "8") == 8
    assert resume_position(None, "  ") == 0
    assert resume_position("0", "") == 0


@pytest.mark.parametrize(
    ("since_id", "last_event_id", "where"),
    [
        ("", None, ("query", "since_id")),
        ("²", None, ("query", "since_id")),
        (str(2**63), "1", ("query", "since_id")),
        (None, "²", ("header", "Last-Event-ID")),
        ("1", str(2**63), ("header", "Last-Event-ID")),
        (None, "-1", ("header", "Last-Event-ID")),
    ],
)
def test_a_bad_position_says_which_input_is_wrong(
    since_id: str | None, last_event_id: str | None, where: tuple[str, str]
) -> None:
    with pytest.raises(InvalidResumePosition) as caught:
        resume_position(since_id, last_event_id)
    assert caught.value.where == where
    assert "must be an event seq" in caught.value.reason
    assert str(caught.value).startswith(f"{where[1]}: ")


@pytest.mark.parametrize("segment", ["v²", "v1²", "v٣", "v-1", "v1.5", "v" + "9" * 10, "x1", ""])
def test_a_version_segment_is_ascii_digits_too(segment: str) -> None:
    with pytest.raises(RequestRejected):
        parse_version_segment(segment)
    assert parse_version_segment("v12") == 12
    assert parse_version_segment(None) is None


# --- both routes, over HTTP --------------------------------------------------------------------------

_FASTAPI_ONLY = """\
import sys

import noukai_server.api.endpoints as _endpoints


def _document_routes_only(app_routes, endpoints, prefix):
    app_routes.extend(e.document_route(prefix, e.route(prefix)) for e in endpoints)


_endpoints.mount = _document_routes_only
print("test: plain routes not mounted", file=sys.stderr, flush=True)
"""


@pytest.fixture(scope="module")
def fastapi_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server without the plain routes, so the FastAPI (document) routes answer the streams."""
    site = tmp_path_factory.mktemp("fastapi-only-site")
    (site / "sitecustomize.py").write_text(_FASTAPI_ONLY)
    env = _server_env()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH")) if p)
    proc = ServerProcess(free_port(), tmp_path_factory.mktemp("fastapi-only"), env)
    proc.start()
    try:
        assert "test: plain routes not mounted" in proc.log_text()
        yield proc
    finally:
        proc.stop()
        shutil.rmtree(proc.data_dir, ignore_errors=True)


@pytest.fixture(params=["plain", "fastapi"])
def any_server(request: pytest.FixtureRequest) -> ServerProcess:
    name = "server" if request.param == "plain" else "fastapi_server"
    proc: ServerProcess = request.getfixturevalue(name)
    return proc


@pytest.fixture
def finished_run(any_server: ServerProcess) -> str:
    run_id = start_run(any_server, "three-steps")
    assert wait_status(any_server, run_id, "completed")["status"] == "completed"
    return run_id


def _events_url(server: ServerProcess, run_id: str) -> str:
    return f"{server.api_url}/runs/{run_id}/events"


def _raw_headers(server: ServerProcess, extra: dict[str, bytes]) -> dict[bytes, bytes]:
    """The key's header plus `extra` as raw bytes (a header's bytes reach the server as latin-1)."""
    return {k.encode(): v.encode() for k, v in headers(server).items()} | {
        k.encode(): v for k, v in extra.items()
    }


def _read(
    server: ServerProcess, run_id: str, query: str = "", extra: dict[str, bytes] | None = None
) -> list[Frame]:
    hdrs = _raw_headers(server, extra or {})
    url = _events_url(server, run_id) + (f"?{query}" if query else "")
    with httpx.stream("GET", url, headers=hdrs, timeout=30) as response:
        assert response.status_code == 200, response.read()
        return events_only(list(iter_frames(response)))


BAD_VALUES = {
    "superscript": "²",
    "negative": "-1",
    "fraction": "1.5",
    "2**63": str(2**63),
    "400 digits": "9" * 400,
}


@pytest.mark.parametrize("raw", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_a_bad_since_id_is_refused_before_streaming(
    any_server: ServerProcess, finished_run: str, raw: str
) -> None:
    response = httpx.get(
        _events_url(any_server, finished_run),
        params={"since_id": raw},
        headers=headers(any_server),
        timeout=30,
    )
    detail = assert_error(response, 422, "VALIDATION_ERROR")
    assert response.headers["content-type"].startswith("application/json")
    assert detail["errors"] == [{"loc": ["query", "since_id"], "message": detail["errors"][0]["message"]}]
    assert "since_id" in detail["message"] and "event seq" in detail["message"]


@pytest.mark.parametrize("raw", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_a_bad_last_event_id_is_refused_before_streaming(
    any_server: ServerProcess, finished_run: str, raw: str
) -> None:
    # Header bytes are read as latin-1: byte 0xB2 arrives as "²".
    response = httpx.get(
        _events_url(any_server, finished_run),
        headers=_raw_headers(any_server, {"Last-Event-ID": raw.encode("latin-1")}),
        timeout=30,
    )
    detail = assert_error(response, 422, "VALIDATION_ERROR")
    assert detail["errors"][0]["loc"] == ["header", "Last-Event-ID"]
    assert "Last-Event-ID" in detail["message"] and "event seq" in detail["message"]


def test_a_good_position_still_resumes(any_server: ServerProcess, finished_run: str) -> None:
    full = _read(any_server, finished_run)
    assert [f.id for f in full] == list(range(1, len(full) + 1))
    assert full[-1].event == "flow_completed"
    expected = [(f.id, f.event, f.data) for f in full if f.id is not None and f.id > 5]
    for query, extra in [
        ("since_id=5", None),
        ("since_id=0005", None),
        ("", {"Last-Event-ID": b"5"}),
        ("since_id=2", {"Last-Event-ID": b"5"}),  # the larger wins
        ("since_id=5", {"Last-Event-ID": b"3"}),
        ("since_id=5", {"Last-Event-ID": b""}),  # blank: no header position
    ]:
        tail = _read(any_server, finished_run, query, extra)
        assert [(f.id, f.event, f.data) for f in tail] == expected, (query, extra)
    assert _read(any_server, finished_run, "since_id=0") == full


def test_a_bad_version_segment_is_no_flow(any_server: ServerProcess) -> None:
    for segment in ("v%C2%B2", "v1%C2%B2"):  # `/v²/step`, `/v1²/step`
        response = httpx.post(
            f"{any_server.api_url}/seq/dev/main/three-steps/{segment}/step",
            json={**STEP_BODY, "message": "go"},
            headers=headers(any_server),
            timeout=30,
        )
        assert_error(response, 404, "FLOW_NOT_FOUND")


def test_both_servers_are_what_they_claim(server: ServerProcess, fastapi_server: ServerProcess) -> None:
    assert "test: plain routes not mounted" not in server.log_text()
    assert "test: plain routes not mounted" in fastapi_server.log_text()


def test_the_stream_routes_parse_no_number_of_their_own() -> None:
    """Both routes hand the raw strings on: no second parser in front of the shared one."""
    for module in (stream_routes, endpoints):
        source = inspect.getsource(module)
        assert "isdigit" not in source and not re.search(r"\bint\(", source), module


def test_the_largest_seq_resumes_after_everything(any_server: ServerProcess, finished_run: str) -> None:
    """`MAX_SEQ` itself is a position (past the end of any log): the stream of a finished run sends
    nothing after it and ends, rather than cutting off or waiting."""
    for query, extra in [(f"since_id={MAX_SEQ}", None), ("", {"Last-Event-ID": str(MAX_SEQ).encode()})]:
        assert _read(any_server, finished_run, query, extra) == [], (query, extra)


def _trace_stream(server: ServerProcess, run_id: str, query: str, extra: dict[str, bytes]) -> list[Frame]:
    url = f"{server.api_url}/seq/dev/main/three-steps/runs/{run_id}/trace/stream?{query}"
    with httpx.stream("GET", url, headers=_raw_headers(server, extra), timeout=30) as response:
        assert response.status_code == 200, response.read()
        return events_only(list(iter_frames(response)))


@pytest.mark.parametrize("raw", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_the_live_trace_takes_no_position(any_server: ServerProcess, finished_run: str, raw: str) -> None:
    """The live trace (`.../trace/stream`) always streams the whole log: it reads neither `since_id`
    nor `Last-Event-ID`, so no value of them can cut it short or refuse it. The native stream is the
    only route that takes a seq (`/step` resumes by `executionId` and `stepIndex`)."""
    full = _read(any_server, finished_run)
    extra = {"Last-Event-ID": raw.encode("latin-1")}
    frames = _trace_stream(any_server, finished_run, f"since_id={raw}", extra)
    assert [(f.id, f.event, f.data) for f in frames] == [(f.id, f.event, f.data) for f in full]
    assert frames[-1].event == "flow_completed"
