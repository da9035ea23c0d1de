"""Over a real socket: the live stream of a run whose tokens come in bursts is byte for byte the
replay of its stored log (frames are written in batches, never re-encoded or reordered)."""

from __future__ import annotations

import re

import httpx

from tests.conftest import ServerProcess
from tests.server.test_streams import headers, slow_flow, start_run, wait_status

FRAME = re.compile(rb"id: (\d+)\nevent: ([a-z_]+)\ndata: [^\n]*\n\n")


def raw_stream(server: ServerProcess, run_id: str) -> bytes:
    with httpx.stream(
        "GET", f"{server.api_url}/runs/{run_id}/events", headers=headers(server), timeout=30
    ) as response:
        assert response.status_code == 200, response.read()
        return b"".join(response.iter_raw())


def test_live_bytes_equal_the_stored_frames(server: ServerProcess) -> None:
    slug = slow_flow(server, words=200, delay_ms=0, steps=3)
    run_id = start_run(server, slug)
    live = raw_stream(server, run_id)  # joins while the run is going
    assert wait_status(server, run_id, "completed")["status"] == "completed"
    replay = raw_stream(server, run_id)
    assert live == replay
    retry, _, body = live.partition(b"\n\n")
    assert retry.startswith(b"retry: ")
    frames = FRAME.findall(body)
    assert b"".join(m.group(0) for m in FRAME.finditer(body)) == body  # nothing but frames
    assert [int(seq) for seq, _ in frames] == list(range(1, len(frames) + 1))
    assert sum(1 for _, kind in frames if kind == b"step_output") >= 3 * 200
    assert frames[-1][1] == b"flow_completed"
