"""Accessibility and small screens: the console works from the keyboard alone, every control has
a label, text meets WCAG AA contrast (4.5:1) in the light and the dark scheme, and on a phone's
width no page scrolls sideways (wide tables scroll inside their own box)."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.conftest import ServerProcess
from tests.console.conftest import Api, sign_in

UNLABELLED = """() => [...document.querySelectorAll('main input, main select, main textarea')]
  .filter((c) => c.type !== 'hidden' && !c.labels?.length && !c.getAttribute('aria-label')
    && !c.getAttribute('aria-labelledby'))
  .map((c) => c.outerHTML)"""

# The contrast of each text element against the first opaque background behind it (WCAG 2.x).
LOW_CONTRAST = """(selector) => {
  const rgb = (text) => text.match(/[\\d.]+/g).map(Number);
  const lum = ([r, g, b]) => {
    const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (; el; el = el.parentElement) {
      const c = rgb(getComputedStyle(el).backgroundColor);
      if (c.length < 4 || c[3] > 0.9) return c;
    }
    return [255, 255, 255];
  };
  const out = [];
  for (const el of document.querySelectorAll(selector)) {
    if (!el.textContent.trim() || !el.checkVisibility()) continue;
    const style = getComputedStyle(el);
    const [a, b] = [lum(rgb(style.color)), lum(background(el))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5 && parseFloat(style.opacity) === 1 && !el.closest('[disabled]'))
      out.push(`${el.tagName}.${el.className}: ${ratio.toFixed(2)} "${el.textContent.trim().slice(0, 30)}"`);
  }
  return out;
}"""
TEXT = ", ".join(
    ["main h1", "main h2", "main p", "main label", "main td", "main th", "main dt", "main dd"]
    + ["main pre", ".badge", ".hint", ".nav a", ".nav span", "main a", "main button", "main span"]
)


def test_sign_in_and_move_around_with_the_keyboard_only(page: Page, console_server: ServerProcess) -> None:
    page.goto(f"{console_server.base_url}/")
    page.wait_for_selector("main[data-ready=signin]")
    expect(page.get_by_label("API key")).to_be_focused()
    page.keyboard.type(console_server.dev_key)
    page.keyboard.press("Enter")
    page.wait_for_selector("main[data-ready=runs]")
    expect(page.locator("main")).to_be_focused()  # the new page has the focus
    for _ in range(10):  # back up to the Flows link in the navigation
        page.keyboard.press("Shift+Tab")
        if page.evaluate("document.activeElement.textContent") == "Flows":
            break
    else:
        pytest.fail("the Flows link is not reachable with Tab")
    focused = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert focused != "none", "the focused link shows no focus ring"
    page.keyboard.press("Enter")
    page.wait_for_selector("main[data-ready=flows]")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_control_is_labelled_and_text_has_contrast(
    browser: Browser, console_server: ServerProcess, admin: Api, scheme: Literal["light", "dark"]
) -> None:
    run: dict[str, Any] = admin.call("POST", "seq/dev/main/three-steps/execute", {"message": "a11y"})
    context = browser.new_context(color_scheme=scheme, viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        sign_in(page, console_server, console_server.dev_key)
        for address, ready in [
            ("#/runs", "runs"),
            (f"#/runs/{run['executionId']}", "run"),
            ("#/flows", "flows"),
            ("#/flows/greet", "flow"),
            ("#/keys", "keys"),
        ]:
            page.goto(f"{console_server.base_url}/{address}")
            page.wait_for_selector(f"main[data-ready={ready}]")
            assert page.evaluate(UNLABELLED) == [], address
            assert page.evaluate(LOW_CONTRAST, TEXT) == [], f"{scheme} {address}"
    finally:
        context.close()


def test_a_phone_never_scrolls_sideways(browser: Browser, console_server: ServerProcess, admin: Api) -> None:
    run: dict[str, Any] = admin.call("POST", "seq/dev/main/three-steps/execute", {"message": "phone"})
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        sign_in(page, console_server, console_server.dev_key)
        for address, ready in [
            ("#/runs", "runs"),
            (f"#/runs/{run['executionId']}", "run"),
            ("#/flows/greet", "flow"),
        ]:
            page.goto(f"{console_server.base_url}/{address}")
            page.wait_for_selector(f"main[data-ready={ready}]")
            wide = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert wide <= 0, f"{address} is {wide}px wider than the phone"
            if ready == "run":
                expect(page.locator("svg.gantt")).to_be_visible()
    finally:
        context.close()
