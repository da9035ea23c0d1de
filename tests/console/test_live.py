"""A run watched live across dropped connections: the server ends each stream after 0.7 s (its
planned connection cycling), and the run page reconnects with `Last-Event-ID` until the run
ends; every token arrives once, none is lost and no event is listed twice."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Page, Request, expect

from tests.conftest import ServerProcess
from tests.console.conftest import Api, sign_in
from tests.console.test_runs_pages import slow_flow

WORDS = 30


def test_the_run_page_resumes_after_each_dropped_stream(
    page: Page, make_server: Callable[..., ServerProcess]
) -> None:
    server = make_server({"NOUKAI_STREAM_LIFETIME_SECONDS": "0.7", "NOUKAI_HEARTBEAT_SECONDS": "0.2"})
    admin = Api(server, server.dev_key)
    slug = slow_flow(admin, words=WORDS, delay_ms=100)
    streams: list[Request] = []
    page.on("request", lambda request: streams.append(request) if request.url.endswith("/events") else None)
    sign_in(page, server, server.dev_key)
    run_id = admin.call("POST", f"seq/dev/main/{slug}/jobs", {"message": "x"})["executionId"]
    page.goto(f"{server.base_url}/#/runs/{run_id}")
    page.wait_for_selector("main[data-ready=run]")
    expect(page.locator("#run-facts .badge")).to_have_text("completed", timeout=30_000)
    words = " ".join(f"w{i}" for i in range(WORDS))
    expect(page.locator("section.step[data-step=s0] pre.output")).to_have_text(words)
    last_seq = admin.call("GET", f"runs/{run_id}")["lastSeq"]
    seqs = page.locator("#events li").evaluate_all("items => items.map((li) => Number(li.dataset.seq))")
    assert seqs == list(range(1, last_seq + 1))  # each event once, in order
    assert len(streams) >= 3, "the stream was not cycled: nothing was resumed"
    resumed = [r.headers.get("last-event-id") for r in streams[1:]]
    assert all(resumed), f"a reconnection did not say where it was: {resumed}"
