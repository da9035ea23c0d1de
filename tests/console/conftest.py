"""The console's browser tests: Debian's Chromium driven by Playwright's sync API against a real
`noukai serve` process on a loopback port.

Playwright's own browser downloads are never used: `executable_path` points at the system's
Chromium (`make browser` installs it). A test that fails saves a full-page screenshot of its page
to `test-artifacts/console/<test name>.png` (git-ignored), so a CI failure shows what the user saw.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from tests.conftest import REPO_ROOT, ServerProcess, _server_env, free_port

CHROMIUM = os.environ.get("NOUKAI_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = REPO_ROOT / "test-artifacts" / "console"
TIMEOUT_MS = 15_000
"""How long a step of a browser test may wait for the page: a guard against hangs, not a measure."""

_CALL_REPORT = pytest.StashKey[pytest.TestReport]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """Keep the test's own outcome where the `page` fixture's teardown can read it."""
    report = yield
    if report.when == "call":
        item.stash[_CALL_REPORT] = report
    return report


def failure_screenshot(page: Page, name: str) -> Path:
    """Save what the page shows now, for a failed test."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name.replace('/', '_')}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: run `make browser` (installs Debian's chromium)")
    # --no-sandbox: CI runs the tests as root, where Chromium's sandbox refuses to start.
    launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    try:
        yield launched
    finally:
        launched.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh browser context (its own sessionStorage) and page; a screenshot when the test fails."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US", timezone_id="UTC")
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    # The console must live within its Content-Security-Policy: Chromium reports a violation as a
    # console error ("Refused to ... because it violates the following Content Security Policy").
    tab.on(
        "console",
        lambda message: errors.append(message.text) if "Content Security Policy" in message.text else None,
    )
    try:
        yield tab
        assert not errors, f"the page raised: {errors}"
    finally:
        report = request.node.stash.get(_CALL_REPORT, None)
        if report is not None and report.failed:
            print(f"screenshot: {failure_screenshot(tab, request.node.name)}")
        context.close()


@pytest.fixture(scope="package")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the console tests, with the fixture flows in dev/main."""
    proc = ServerProcess(free_port(), tmp_path_factory.mktemp("console"), _server_env())
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
        if os.environ.get("NOUKAI_KEEP_TEST_DATA") is None:
            shutil.rmtree(proc.data_dir, ignore_errors=True)


class Api:
    """The server's API with one key, for a test's setup and checks."""

    def __init__(self, server: ServerProcess, key: str) -> None:
        self.server = server
        self.key = key

    def call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        response = httpx.request(
            method,
            f"{self.server.api_url}/{path}",
            json=body,
            params=params or None,
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=30,
        )
        assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text}"
        return response.json() if response.content else None

    def put_flow(self, document: dict[str, Any]) -> None:
        self.call("PUT", f"flows/dev/main/{document['slug']}", document)


@pytest.fixture(scope="package")
def admin(console_server: ServerProcess) -> Api:
    """The dev key: admin of dev/main."""
    return Api(console_server, console_server.dev_key)


def sign_in(page: Page, server: ServerProcess, key: str, project: str = "") -> None:
    page.goto(f"{server.base_url}/")
    page.wait_for_selector("main[data-ready=signin]")
    page.get_by_label("API key").fill(key)
    if project:
        page.get_by_label("Project").fill(project)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("main[data-ready=runs]")
