"""Screenshots: the README's picture of the run page, made from a real run, and the screenshot a
failing console test leaves behind.

The README's image is written to `test-artifacts/console/console-run.png` on every run and copied
to `docs/images/console-run.png` only with `NOUKAI_UPDATE_SCREENSHOTS=1` (so that `make test`
does not rewrite a tracked file each time: the pixels of times and ids differ from run to run).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from playwright.sync_api import Page, expect

from tests.conftest import REPO_ROOT, ServerProcess
from tests.console.conftest import ARTIFACTS, Api, sign_in

README_IMAGE = REPO_ROOT / "docs" / "images" / "console-run.png"
PNG = b"\x89PNG\r\n\x1a\n"


def _support_flow(admin: Api) -> None:
    admin.put_flow(
        {
            "slug": "support-reply",
            "name": "Support reply",
            "inputs": {"customer": {"type": "string", "default": "ACME"}},
            "retry": {"initial_backoff_seconds": 0.05, "max_backoff_seconds": 0.05},
            "steps": [
                {
                    "id": "prepare",
                    "name": "Prepare the ticket",
                    "type": "template",
                    "template": "Ticket from {{ parameters.customer }}: {{ message }}",
                },
                {
                    "id": "classify",
                    "name": "Classify (retried)",
                    "type": "llm",
                    "model": "builtin:flaky",  # fails once with PROVIDER_ERROR, then answers
                    "prompt": "delivery",
                    "params": {"fail_times": 1},
                },
                {
                    "id": "draft",
                    "name": "Draft a reply",
                    "type": "llm",
                    "model": "builtin:echo",
                    "prompt": (
                        "Thanks for writing in about {{ message }} - we are on it"
                        " and will get back to you within the hour."
                    ),
                    "params": {"token_delay_ms": 25},
                },
                {
                    "id": "check",
                    "name": "Check the facts",
                    "type": "agent",
                    "model": "builtin:test",
                    "prompt": "{{ steps.draft.output }}",
                    "tools": ["word_count"],
                },
                {
                    "id": "format",
                    "name": "Format",
                    "type": "template",
                    "template": {"reply": "{{ steps.draft.output }}", "checked": "{{ steps.check.output }}"},
                },
            ],
        }
    )


def test_the_readme_screenshot_of_the_run_page(page: Page, console_server: ServerProcess, admin: Api) -> None:
    _support_flow(admin)
    run = admin.call(
        "POST",
        "seq/dev/main/support-reply/execute",
        {
            "message": "a late delivery",
            "parameters": {"customer": "ACME"},
            "metadata": {"channel": "email", "tier": "gold"},
        },
    )
    sign_in(page, console_server, console_server.dev_key)
    page.set_viewport_size({"width": 1280, "height": 1300})
    page.goto(f"{console_server.base_url}/#/runs/{run['executionId']}")
    page.wait_for_selector("main[data-ready=run]")
    expect(page.locator("svg.gantt g.row")).to_have_count(5)
    expect(page.locator("svg.gantt g.row[data-step=classify] g.bar")).to_have_count(2)
    expect(page.locator("table.tools")).to_contain_text("word_count")
    page.locator("section.step[data-step=check] details summary").click()  # show an input too
    page.evaluate("window.scrollTo(0, 0)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "console-run.png"
    page.screenshot(path=str(shot), full_page=False)
    assert shot.read_bytes().startswith(PNG)
    if os.environ.get("NOUKAI_UPDATE_SCREENSHOTS") == "1":
        README_IMAGE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, README_IMAGE)


def test_a_failing_console_test_saves_a_screenshot() -> None:
    saved = ARTIFACTS / "test_fails_on_purpose.png"
    saved.unlink(missing_ok=True)
    child = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--no-cov",
            "tests/console/demo_failure.py",
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "NOUKAI_CONSOLE_DEMO_FAILURE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 1, child.stdout + child.stderr  # the demo failed, as it must
    assert "1 failed" in child.stdout
    assert saved.read_bytes().startswith(PNG), child.stdout
    assert f"screenshot: {saved}" in child.stdout
