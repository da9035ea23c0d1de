"""The runs pages in a real browser: sign-in and out, the runs list and its filters, a run's
page (timeline, steps, raw events), cancel, re-run and resuming a client-tool pause, and what a
read-only key is shown."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from playwright.sync_api import Page, expect

from tests.conftest import ServerProcess
from tests.console.conftest import Api, sign_in

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def slow_flow(admin: Api, *, words: int, delay_ms: int, steps: int = 1) -> str:
    """An echo flow whose tokens come `delay_ms` apart."""
    slug = f"slow-{uuid.uuid4().hex[:8]}"
    text = " ".join(f"w{i}" for i in range(words))
    admin.put_flow(
        {
            "slug": slug,
            "steps": [
                {
                    "id": f"s{n}",
                    "type": "llm",
                    "model": "builtin:echo",
                    "prompt": text,
                    "params": {"token_delay_ms": delay_ms},
                }
                for n in range(steps)
            ],
        }
    )
    return slug


def execute(admin: Api, slug: str, **body: Any) -> dict[str, Any]:
    result: dict[str, Any] = admin.call(
        "POST", f"seq/dev/main/{slug}/execute", {"message": "hello console", **body}
    )
    return result


def test_sign_in_shows_the_key_and_sign_out_forgets_it(page: Page, console_server: ServerProcess) -> None:
    sign_in(page, console_server, console_server.dev_key)
    expect(page.locator(".who .tenant")).to_have_text("dev/main")
    expect(page.locator(".who .scope")).to_have_text("admin")
    assert page.evaluate("sessionStorage.getItem('noukai.key')") == console_server.dev_key
    assert page.evaluate("localStorage.length") == 0  # never kept beyond the browser session
    page.reload()
    page.wait_for_selector("main[data-ready=runs]")  # a reload of the tab keeps the session
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_selector("main[data-ready=signin]")
    assert page.evaluate("sessionStorage.getItem('noukai.key')") is None


def test_a_wrong_key_is_refused_with_its_code(page: Page, console_server: ServerProcess) -> None:
    page.goto(f"{console_server.base_url}/")
    page.get_by_label("API key").fill("nk_wrong_key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("UNAUTHENTICATED")
    assert page.evaluate("sessionStorage.getItem('noukai.key')") is None


def test_find_a_run_by_filter_and_open_its_timeline(
    page: Page, console_server: ServerProcess, admin: Api
) -> None:
    batch = uuid.uuid4().hex[:10]
    wanted = execute(admin, "three-steps", metadata={"batch": batch, "kind": "wanted"})
    execute(admin, "three-steps", metadata={"batch": batch, "kind": "other"})
    failed = admin.call("POST", "seq/dev/main/broken/jobs", {"metadata": {"batch": batch}})
    sign_in(page, console_server, console_server.dev_key)

    # metadata: both pairs must match
    page.get_by_label("Metadata").fill(f"batch:{batch} kind:wanted")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_selector("main[data-ready=runs]")
    rows = page.locator("table.runs tbody tr")
    expect(rows).to_have_count(1)
    assert rows.first.get_attribute("data-run") == wanted["executionId"]

    # flow and status
    page.goto(f"{console_server.base_url}/#/runs")
    page.wait_for_selector("main[data-ready=runs]")
    page.get_by_label("Flow").select_option("broken")
    page.get_by_label("failed").check()
    page.get_by_label("Metadata").fill(f"batch:{batch}")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_selector("main[data-ready=runs]")
    expect(page.locator(f"tr[data-run='{failed['executionId']}']")).to_be_visible()
    expect(rows).to_have_count(1)
    assert "status=failed" in page.url and "flow=broken" in page.url  # the filters are in the URL

    # open the wanted run: its timeline, steps and raw events
    page.goto(f"{console_server.base_url}/#/runs/{wanted['executionId']}")
    page.wait_for_selector("main[data-ready=run]")
    expect(page.locator("svg.gantt g.row")).to_have_count(3)
    expect(page.locator("svg.gantt g.row[data-step=two] g.bar.status-completed")).to_have_count(1)
    expect(page.locator("section.step")).to_have_count(3)
    expect(page.locator("section.step[data-step=three] pre.output")).to_have_text(
        "three: two: one: hello console"
    )
    expect(page.locator("section.step[data-step=one] .facts-line")).to_contain_text("tokens")
    expect(page.locator("#run-facts")).to_contain_text("kind: wanted")
    page.get_by_text("Raw events").click()
    expect(page.locator("#events li[data-type=flow_completed]")).to_have_count(1)


def test_the_time_filters(page: Page, console_server: ServerProcess, admin: Api) -> None:
    batch = uuid.uuid4().hex[:10]
    run = execute(admin, "echo", metadata={"when": batch})
    now = datetime.now(UTC)  # the browser runs in UTC too (the `page` fixture's timezone)

    def show(since: datetime | None, until: datetime | None) -> None:
        page.goto(f"{console_server.base_url}/#/runs?metadata=when:{batch}")
        page.wait_for_selector("main[data-ready=runs]")
        page.get_by_label("Created from").fill(since.strftime("%Y-%m-%dT%H:%M") if since else "")
        page.get_by_label("Created before").fill(until.strftime("%Y-%m-%dT%H:%M") if until else "")
        page.get_by_role("button", name="Apply").click()
        page.wait_for_selector("main[data-ready=runs]")

    sign_in(page, console_server, console_server.dev_key)
    show(now - timedelta(minutes=5), now + timedelta(minutes=5))
    expect(page.locator(f"tr[data-run='{run['executionId']}']")).to_be_visible()
    show(now + timedelta(minutes=5), None)
    expect(page.locator("#runs-results")).to_contain_text("No runs match")
    show(None, now - timedelta(minutes=5))
    expect(page.locator("#runs-results")).to_contain_text("No runs match")


def test_a_refused_filter_shows_the_apis_code(page: Page, console_server: ServerProcess) -> None:
    sign_in(page, console_server, console_server.dev_key)
    page.get_by_label("Metadata").fill("no-colon-here")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_selector("main[data-ready=runs]")
    expect(page.get_by_role("alert")).to_contain_text("VALIDATION_ERROR")
    expect(page.get_by_role("alert")).to_contain_text("metadata")


def test_the_list_pages_with_the_cursor(page: Page, console_server: ServerProcess, admin: Api) -> None:
    batch = uuid.uuid4().hex[:10]
    ids = [
        admin.call("POST", "seq/dev/main/echo/jobs", {"message": f"m{i}", "metadata": {"page": batch}})[
            "executionId"
        ]
        for i in range(55)
    ]
    sign_in(page, console_server, console_server.dev_key)
    page.goto(f"{console_server.base_url}/#/runs?metadata=page:{batch}")
    page.wait_for_selector("main[data-ready=runs]")
    rows = page.locator("table.runs tbody tr")
    expect(rows).to_have_count(50)
    assert rows.first.get_attribute("data-run") == ids[-1]  # newest first
    page.get_by_role("link", name="Older →").click()
    page.wait_for_selector("main[data-ready=runs]")
    expect(rows).to_have_count(5)
    assert rows.last.get_attribute("data-run") == ids[0]
    page.get_by_role("link", name="← Newer").click()
    page.wait_for_selector("main[data-ready=runs]")
    expect(rows).to_have_count(50)


def test_the_first_page_updates_itself(page: Page, console_server: ServerProcess, admin: Api) -> None:
    batch = uuid.uuid4().hex[:10]
    sign_in(page, console_server, console_server.dev_key)
    page.goto(f"{console_server.base_url}/#/runs?metadata=live:{batch}")
    page.wait_for_selector("main[data-ready=runs]")
    expect(page.locator("#runs-results")).to_contain_text("No runs match")
    run = execute(admin, "echo", metadata={"live": batch})
    expect(page.locator(f"tr[data-run='{run['executionId']}']")).to_be_visible()  # by the next poll


def test_cancel_a_slow_run(page: Page, console_server: ServerProcess, admin: Api) -> None:
    slug = slow_flow(admin, words=20, delay_ms=60_000)
    run_id = admin.call("POST", f"seq/dev/main/{slug}/jobs", {"message": "x"})["executionId"]
    sign_in(page, console_server, console_server.dev_key)
    page.goto(f"{console_server.base_url}/#/runs/{run_id}")
    page.wait_for_selector("main[data-ready=run]")
    expect(page.locator("section.step[data-step=s0] pre.output")).to_contain_text("w0")  # it is running
    expect(page.locator("svg.gantt g.bar.status-running")).to_have_count(1)
    page.get_by_role("button", name="Cancel run").click()
    expect(page.locator("#run-facts .badge")).to_have_text("cancelled")
    expect(page.get_by_role("button", name="Cancel run")).to_have_count(0)
    assert admin.call("GET", f"runs/{run_id}")["status"] == "cancelled"


def test_resume_a_client_tool_pause(page: Page, console_server: ServerProcess, admin: Api) -> None:
    admin.put_flow(
        {
            "slug": "weather-agent",
            "steps": [
                {
                    "id": "answer",
                    "type": "agent",
                    "model": "builtin:test",
                    "prompt": "{{ message }}",
                    "tools": ["word_count"],
                }
            ],
        }
    )
    paused = execute(admin, "weather-agent", tools=[WEATHER])
    assert paused["status"] == "tool_calls_required"
    sign_in(page, console_server, console_server.dev_key)
    page.goto(f"{console_server.base_url}/#/runs/{paused['executionId']}")
    page.wait_for_selector("main[data-ready=run]")
    expect(page.locator("#run-facts .badge")).to_have_text("waiting")
    # the server tool's call, with its arguments and result, and the pending client call
    expect(page.locator("table.tools tr[data-call=call_0_word_count]")).to_contain_text("word_count")
    expect(page.locator("table.tools tr[data-call=call_1_get_weather]")).to_contain_text("waiting")
    page.get_by_label("Result of get_weather").fill("sunny, 21 °C")
    page.get_by_role("button", name="Resume run").click()
    expect(page.locator("#run-facts .badge")).to_have_text("completed")
    expect(page.locator("section.step[data-step=answer] pre.output")).to_contain_text(
        "get_weather=sunny, 21 °C"
    )
    expect(page.locator("table.tools tr[data-call=call_1_get_weather]")).to_contain_text("sunny, 21 °C")
    expect(page.locator("#run-pause form")).to_have_count(0)
    # the timeline hatches the time the step waited for the result
    expect(page.locator("svg.gantt g.row[data-step=answer] rect.wait")).to_have_count(1)
    expect(page.locator("svg.gantt g.row[data-step=answer] title")).to_contain_text("for tool results")


def test_the_server_refuses_a_resume_a_read_key_forces(
    page: Page, console_server: ServerProcess, admin: Api
) -> None:
    admin.put_flow(
        {
            "slug": "plain-weather-agent",
            "steps": [{"id": "answer", "type": "agent", "model": "builtin:test", "prompt": "{{ message }}"}],
        }
    )
    paused = execute(admin, "plain-weather-agent", tools=[WEATHER])
    reader = admin.call("POST", "orgs/dev/keys", {"scope": "read"})["key"]
    sign_in(page, console_server, reader)
    page.goto(f"{console_server.base_url}/#/runs/{paused['executionId']}")
    page.wait_for_selector("main[data-ready=run]")
    answer = page.get_by_label("Result of get_weather")
    expect(answer).to_be_disabled()  # the console offers nothing a read key may not do ...
    page.evaluate("document.querySelectorAll('#run-pause [disabled]').forEach((e) => (e.disabled = false))")
    answer.fill("sunny")
    page.get_by_role("button", name="Resume run").click()  # ... and the server enforces it anyway
    expect(page.locator("#run-pause .error")).to_contain_text("FORBIDDEN")
    assert admin.call("GET", f"runs/{paused['executionId']}")["status"] == "waiting"


def test_rerun_opens_the_new_run_linked_to_the_old(
    page: Page, console_server: ServerProcess, admin: Api
) -> None:
    first = execute(admin, "three-steps")
    sign_in(page, console_server, console_server.dev_key)
    page.goto(f"{console_server.base_url}/#/runs/{first['executionId']}")
    page.wait_for_selector("main[data-ready=run]")
    page.get_by_label("Re-run from").select_option("two")
    page.get_by_role("button", name="Re-run").click()
    page.wait_for_url(lambda url: first["executionId"] not in url)
    page.wait_for_selector("main[data-ready=run]")
    expect(page.locator("#run-facts")).to_contain_text(f"{first['executionId'][:8]} from step two")
    expect(page.locator("#run-facts .badge")).to_have_text("completed")


def test_a_retried_step_shows_each_attempt(page: Page, console_server: ServerProcess, admin: Api) -> None:
    slug = f"flaky-{uuid.uuid4().hex[:8]}"
    admin.put_flow(
        {
            "slug": slug,
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
        }
    )
    run = execute(admin, slug)
    sign_in(page, console_server, console_server.dev_key)
    page.goto(f"{console_server.base_url}/#/runs/{run['executionId']}")
    page.wait_for_selector("main[data-ready=run]")
    bars = page.locator("svg.gantt g.row[data-step=ask] g.bar")
    expect(bars).to_have_count(3)
    assert bars.evaluate_all("bars => bars.map(b => b.dataset.attempt)") == ["1", "2", "3"]
    expect(bars.nth(2)).to_have_class("bar status-completed")
    expect(bars.nth(0).locator("title")).to_contain_text("attempt 1")
    card = page.locator("section.step[data-step=ask]")
    expect(card.locator(".error code")).to_have_text(["PROVIDER_ERROR", "PROVIDER_ERROR"])
    expect(card.locator(".facts-line")).to_contain_text("3 attempts")


def test_a_failed_run_shows_its_error_code(page: Page, console_server: ServerProcess, admin: Api) -> None:
    run_id = admin.call("POST", "seq/dev/main/broken/jobs", {})["executionId"]
    sign_in(page, console_server, console_server.dev_key)
    page.goto(f"{console_server.base_url}/#/runs/{run_id}")
    page.wait_for_selector("main[data-ready=run]")
    expect(page.locator("#run-facts .badge")).to_have_text("failed")
    expect(page.locator("section.step[data-step=boom] .error code")).to_have_text("TEMPLATE_ERROR")
    expect(page.locator("#run-result .error")).to_contain_text("TEMPLATE_ERROR")


def test_an_unknown_run_is_a_clear_error(page: Page, console_server: ServerProcess) -> None:
    sign_in(page, console_server, console_server.dev_key)
    page.goto(f"{console_server.base_url}/#/runs/{uuid.uuid4()}")
    page.wait_for_selector("main[data-ready=error]")
    expect(page.get_by_role("alert")).to_contain_text("RUN_NOT_FOUND")


def test_a_read_key_sees_runs_but_no_actions(page: Page, console_server: ServerProcess, admin: Api) -> None:
    reader = admin.call("POST", "orgs/dev/keys", {"scope": "read"})["key"]
    slug = slow_flow(admin, words=5, delay_ms=60_000)
    run_id = admin.call("POST", f"seq/dev/main/{slug}/jobs", {"message": "x"})["executionId"]
    try:
        sign_in(page, console_server, reader)
        expect(page.locator(".nav")).not_to_contain_text("Keys")
        page.goto(f"{console_server.base_url}/#/runs/{run_id}")
        page.wait_for_selector("main[data-ready=run]")
        expect(page.get_by_role("button", name="Cancel run")).to_be_disabled()
        expect(page.get_by_role("button", name="Re-run")).to_be_disabled()
    finally:
        admin.call("POST", f"runs/{run_id}/cancel")
