"""The flows pages in a real browser: the list, a flow's YAML (highlighted), its versions and
the diff between two, publish, and the form from the declared inputs that starts a run and opens
it, with the tokens arriving live."""

from __future__ import annotations

import uuid
from typing import Any

from playwright.sync_api import Page, expect

from tests.conftest import ServerProcess
from tests.console.conftest import Api, sign_in


def form_flow(admin: Api, delay_ms: int) -> str:
    slug = f"form-{uuid.uuid4().hex[:8]}"
    document: dict[str, Any] = {
        "slug": slug,
        "name": "Form flow",
        "inputs": {
            "who": {"type": "string", "description": "Whom to greet."},
            "times": {"type": "integer", "default": 2},
            "loud": {"type": "boolean", "default": False},
            "tags": {"type": "array", "default": []},
        },
        "steps": [
            {
                "id": "say",
                "type": "llm",
                "model": "builtin:echo",
                "prompt": (
                    "hello {{ parameters.who }} x{{ parameters.times }} loud={{ parameters.loud }}"
                    " tags={{ parameters.tags | length }} and some more words to stream"
                ),
                "params": {"token_delay_ms": delay_ms},
            }
        ],
    }
    admin.put_flow(document)
    return slug


def open_flow(page: Page, server: ServerProcess, slug: str) -> None:
    page.goto(f"{server.base_url}/#/flows/{slug}")
    page.wait_for_selector("main[data-ready=flow]")


def test_the_list_links_to_each_flow(page: Page, console_server: ServerProcess) -> None:
    sign_in(page, console_server, console_server.dev_key)
    page.get_by_role("link", name="Flows").click()
    page.wait_for_selector("main[data-ready=flows]")
    expect(page.locator("table.flows tr[data-flow=three-steps]")).to_contain_text("Three echo steps")
    page.get_by_role("link", name="three-steps").click()
    page.wait_for_selector("main[data-ready=flow]")
    expect(page.locator("#document pre.yaml")).to_contain_text("- id: one")


def test_the_yaml_is_highlighted(page: Page, console_server: ServerProcess, admin: Api) -> None:
    slug = form_flow(admin, delay_ms=0)
    sign_in(page, console_server, console_server.dev_key)
    open_flow(page, console_server, slug)
    yaml = page.locator("#document pre.yaml")
    expect(yaml).to_contain_text(f"slug: {slug}")
    expect(yaml.locator("span.k", has_text="inputs")).to_have_count(1)
    expect(yaml.locator("span.n", has_text="2")).to_have_count(1)  # times' default
    expect(yaml.locator("span.s").first).to_be_visible()  # the quoted prompt


def test_start_a_run_from_the_form_and_watch_its_tokens(
    page: Page, console_server: ServerProcess, admin: Api
) -> None:
    slug = form_flow(admin, delay_ms=150)
    sign_in(page, console_server, console_server.dev_key)
    open_flow(page, console_server, slug)
    expect(page.get_by_label("times")).to_have_value("2")  # the declared default
    page.get_by_label("who").fill("Ada")
    page.get_by_label("loud").check()
    page.get_by_label("tags").fill('["a", "b"]')
    page.get_by_role("button", name="Start run").click()
    page.wait_for_selector("main[data-ready=run]")
    output = page.locator("section.step[data-step=say] pre.output")
    # Tokens arrive one by one while the step runs: seen before the step completes.
    expect(output).to_contain_text("hello Ada")
    expect(page.locator("section.step[data-step=say]")).to_have_attribute("data-status", "running")
    expect(output).to_have_text("hello Ada x2 loud=true tags=2 and some more words to stream")
    expect(page.locator("section.step[data-step=say]")).to_have_attribute("data-status", "completed")
    expect(page.locator("#run-facts .badge")).to_have_text("completed")


def test_the_form_refuses_what_is_not_of_the_inputs_type(
    page: Page, console_server: ServerProcess, admin: Api
) -> None:
    slug = form_flow(admin, delay_ms=0)
    sign_in(page, console_server, console_server.dev_key)
    open_flow(page, console_server, slug)
    page.get_by_label("who").fill("Ada")
    page.get_by_label("tags").fill("{not json")
    page.get_by_role("button", name="Start run").click()
    expect(page.locator("#run-problems")).to_contain_text("tags: must be JSON")
    # A required input left empty: the server refuses it, and the form says so with the code.
    page.get_by_label("tags").fill("[]")
    page.get_by_label("who").fill("")
    page.evaluate("document.getElementById('run-form').noValidate = true")
    page.get_by_role("button", name="Start run").click()
    expect(page.locator("#run-problems")).to_contain_text("VALIDATION_ERROR")
    expect(page.locator("#run-problems")).to_contain_text("who")


def test_publish_versions_and_the_diff_between_two(
    page: Page, console_server: ServerProcess, admin: Api
) -> None:
    slug = f"pub-{uuid.uuid4().hex[:8]}"
    first = {"slug": slug, "steps": [{"id": "a", "type": "template", "template": "first"}]}
    admin.put_flow(first)
    sign_in(page, console_server, console_server.dev_key)
    open_flow(page, console_server, slug)
    expect(page.get_by_text("No version yet.")).to_be_visible()
    page.get_by_role("button", name="Publish the draft as v1").click()
    page.wait_for_selector("#versions li[data-version='1']")
    assert [v["version"] for v in admin.call("GET", f"flows/dev/main/{slug}/versions")["versions"]] == [1]

    admin.put_flow({**first, "steps": [{"id": "a", "type": "template", "template": "second"}]})
    open_flow(page, console_server, slug)
    page.get_by_label("Compare").select_option("1")
    page.get_by_label("with").select_option("draft")
    page.get_by_role("button", name="Compare").click()
    expect(page.locator("#diff .del")).to_have_text("-removed:     template: first")
    expect(page.locator("#diff .add")).to_have_text("+added:     template: second")
    page.get_by_role("button", name="Publish the draft as v2").click()
    page.wait_for_selector("#versions li[data-version='2']")
    page.get_by_label("Show").select_option("1")
    expect(page.locator("#document pre.yaml")).to_contain_text("template: first")


def test_a_run_key_cannot_publish(page: Page, console_server: ServerProcess, admin: Api) -> None:
    runner = admin.call("POST", "orgs/dev/keys", {"scope": "run"})["key"]
    sign_in(page, console_server, runner)
    open_flow(page, console_server, "echo")
    expect(page.get_by_role("button", name="Start run")).to_be_enabled()
    expect(page.locator("#publish")).to_have_count(0)
