"""Keys and usage in a real browser (admin keys): create a key with a scope, see its secret once,
revoke it; usage per flow over time as a chart, with the totals in a table."""

from __future__ import annotations

import httpx
from playwright.sync_api import Page, expect

from tests.conftest import ServerProcess
from tests.console.conftest import Api, sign_in


def test_create_and_revoke_a_key(page: Page, console_server: ServerProcess) -> None:
    sign_in(page, console_server, console_server.dev_key)
    page.get_by_role("link", name="Keys").click()
    page.wait_for_selector("main[data-ready=keys]")
    page.get_by_label("Name").fill("console reader")
    page.get_by_label("Scope").select_option("read")
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("#new-key").inner_text().strip()
    assert secret.startswith("nk_")
    key_id = secret.split("_")[1]
    me = Api(console_server, secret).call("GET", "keys/me")
    assert me["scope"] == "read" and me["name"] == "console reader" and me["project"] == "main"
    row = page.locator(f"table.keys tr[data-key='{key_id}']")
    expect(row).to_contain_text("console reader")
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name=f"Revoke key {key_id}").click()
    expect(row).to_have_attribute("data-state", "revoked")
    refused = httpx.get(f"{console_server.api_url}/keys/me", headers={"Authorization": f"Bearer {secret}"})
    assert refused.status_code == 401
    # The signed-in key is listed but cannot revoke itself from here.
    own = page.locator(f"table.keys tr[data-key='{console_server.dev_key.split('_')[1]}']")
    expect(own).to_contain_text("this key")


def test_a_key_cannot_be_made_stronger_than_its_maker(page: Page, console_server: ServerProcess) -> None:
    sign_in(page, console_server, console_server.dev_key)
    page.goto(f"{console_server.base_url}/#/keys")
    page.wait_for_selector("main[data-ready=keys]")
    project = page.get_by_label("Project")
    expect(project).to_have_attribute("readonly", "")  # a project key makes keys of its project only
    page.evaluate("document.getElementById('key-project').readOnly = false")  # try anyway
    project.fill("elsewhere")
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_role("alert")).to_contain_text("FORBIDDEN")


def test_usage_per_flow_over_time(page: Page, console_server: ServerProcess, admin: Api) -> None:
    for _ in range(2):
        admin.call("POST", "seq/dev/main/three-steps/execute", {"message": "usage"})
    admin.call("POST", "seq/dev/main/echo/execute", {"message": "usage"})
    org_admin = console_server.create_key("dev")  # usage is the whole org's: an org-wide key
    sign_in(page, console_server, org_admin, project="main")
    expect(page.locator(".who .tenant")).to_have_text("dev/main")
    page.get_by_role("link", name="Usage").click()
    page.wait_for_selector("main[data-ready=usage]")
    page.get_by_label("Show").select_option("tokens")
    page.get_by_label("Period", exact=True).select_option("day")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url("**range=day**")
    page.wait_for_selector("main[data-ready=usage]")
    chart = page.locator("#usage-chart svg.chart")
    expect(chart.locator("rect[data-series='main/three-steps']").first).to_be_visible()
    expect(chart.locator("rect[data-series='main/echo']").first).to_be_visible()
    expect(page.locator("table.usage")).to_contain_text("main/three-steps")
    expect(page.locator(".legend")).to_contain_text("main/echo")


def test_admin_pages_are_not_offered_to_a_run_key(
    page: Page, console_server: ServerProcess, admin: Api
) -> None:
    runner = admin.call("POST", "orgs/dev/keys", {"scope": "run"})["key"]
    sign_in(page, console_server, runner)
    expect(page.locator(".nav")).not_to_contain_text("Keys")
    expect(page.locator(".nav")).not_to_contain_text("Usage")
    page.goto(f"{console_server.base_url}/#/keys")
    page.wait_for_selector("main[data-ready=keys]")
    expect(page.locator("main")).to_contain_text("needs an admin key")


def test_a_key_with_an_expiry(page: Page, console_server: ServerProcess) -> None:
    sign_in(page, console_server, console_server.dev_key)
    page.goto(f"{console_server.base_url}/#/keys")
    page.wait_for_selector("main[data-ready=keys]")
    page.get_by_label("Scope").select_option("run")
    page.get_by_label("Expires in days").fill("30")
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("#new-key").inner_text().strip()
    me = Api(console_server, secret).call("GET", "keys/me")
    assert me["scope"] == "run" and me["expiresAt"] is not None
    expect(page.locator(f"table.keys tr[data-key='{me['id']}'] td").nth(7)).not_to_be_empty()


def test_usage_needs_a_key_of_the_whole_org(page: Page, console_server: ServerProcess) -> None:
    sign_in(page, console_server, console_server.dev_key)  # admin, but of one project
    expect(page.locator(".nav")).not_to_contain_text("Usage")
    page.goto(f"{console_server.base_url}/#/usage")
    page.wait_for_selector("main[data-ready=usage]")
    expect(page.locator("main")).to_contain_text("need an admin key of the whole org")
