"""Not collected by the suite (its name does not start with `test_`): `test_screenshots.py` runs
it in a child pytest, with `NOUKAI_CONSOLE_DEMO_FAILURE` set, to prove that a failing console test
leaves a screenshot behind."""

from __future__ import annotations

import os

import pytest
from playwright.sync_api import Page


@pytest.mark.skipif("NOUKAI_CONSOLE_DEMO_FAILURE" not in os.environ, reason="run by test_screenshots.py")
def test_fails_on_purpose(page: Page) -> None:
    page.set_content("<h1 id='marker'>what the user saw</h1>")
    assert page.inner_text("#marker") == "something else"
