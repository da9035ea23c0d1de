"""The console's pure modules, run in the browser: the YAML emitter (its output read back by
PyYAML must be the document it was given), the SSE parser (any split of a stream into chunks
gives the same events), the line diff (its operations rebuild both texts) and the run model."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from playwright.sync_api import Page

from tests.conftest import ServerProcess

DOCUMENTS: list[Any] = [
    {"slug": "a", "steps": [{"id": "x", "type": "template", "template": "{{ message }}"}]},
    {
        "slug": "tricky",
        "name": "Quotes ' and \" and: colons # hashes",
        "inputs": {"n": {"type": "integer", "default": 3}, "flag": {"type": "boolean", "default": False}},
        "steps": [
            {
                "id": "m",
                "type": "llm",
                "model": "openai:gpt-4o",
                "prompt": "line one\nline two\n",
                "temperature": 0.2,
            },
            {
                "id": "yes",
                "type": "template",
                "template": ["yes", "no", "null", "1.5", "", " padded ", "-dash", "a: b"],
            },
            {
                "id": "t",
                "type": "template",
                "template": {"empty": {}, "list": [], "nested": [[1, 2], {"k": None}]},
            },
            {"id": "u", "type": "template", "template": "ünïcödé ✓ and a tail:"},
        ],
    },
    "just text",
    [1, "two", {"three": 3}],
]


@pytest.fixture
def console(page: Page, console_server: ServerProcess) -> Page:
    page.goto(f"{console_server.base_url}/")
    page.wait_for_selector("main[data-ready=signin]")
    return page


@pytest.mark.parametrize("document", DOCUMENTS, ids=range(len(DOCUMENTS)))
def test_the_yaml_reads_back_as_the_document(console: Page, document: Any) -> None:
    text = console.evaluate("async (doc) => (await import('./console/static/yaml.js')).toYaml(doc)", document)
    assert yaml.safe_load(text) == document, text
    highlighted = console.evaluate(
        """async (text) => {
          const pre = document.createElement('pre');
          pre.append(...(await import('./console/static/yaml.js')).highlight(text));
          return pre.textContent;
        }""",
        text,
    )
    assert highlighted == text  # highlighting only wraps, never changes the text


def test_the_sse_parser_is_indifferent_to_chunking(console: Page) -> None:
    stream = (
        ': ping\n\nretry: 1000\n\nid: 1\nevent: a\ndata: {"x": 1}\n\n'
        "id: 2\r\nevent: b\r\ndata: line1\r\ndata: line2\r\n\r\n"
        "id: 3\revent: c\rdata:no-space\r\r"
    )
    events = console.evaluate(
        """async (stream) => {
          const { SseParser } = await import('./console/static/sse.js');
          const results = [];
          for (let cut = 0; cut <= stream.length; cut++) {
            const p = new SseParser();
            results.push(JSON.stringify([...p.feed(stream.slice(0, cut)), ...p.feed(stream.slice(cut))]));
          }
          return results;
        }""",
        stream,
    )
    expected = [
        {"id": "1", "event": "a", "data": '{"x": 1}'},
        {"id": "2", "event": "b", "data": "line1\nline2"},
        {"id": "3", "event": "c", "data": "no-space"},
    ]
    assert {json.dumps(expected, separators=(",", ":"))} == set(events)


@pytest.mark.parametrize(
    ("before", "after"),
    [("a\nb\nc", "a\nx\nc"), ("", "one\ntwo"), ("same", "same"), ("1\n2\n3\n4", "0\n2\n4\n5"), ("x\ny", "")],
)
def test_the_diff_rebuilds_both_texts(console: Page, before: str, after: str) -> None:
    ops: list[dict[str, str]] = console.evaluate(
        "async ([a, b]) => (await import('./console/static/diff.js')).lineDiff(a, b)", [before, after]
    )
    assert "\n".join(o["text"] for o in ops if o["op"] != "add") == before
    assert "\n".join(o["text"] for o in ops if o["op"] != "del") == after
    if before == after:
        assert all(o["op"] == "same" for o in ops)


def test_the_run_model_follows_retries_tools_and_pauses(console: Page) -> None:
    events = [
        {"eventType": "run_started", "seq": 1, "stepCount": 1},
        {"eventType": "step_started", "seq": 2, "stepId": "s", "stepIndex": 0, "type": "agent", "attempt": 1},
        {
            "eventType": "step_retrying",
            "seq": 3,
            "stepId": "s",
            "stepIndex": 0,
            "attempt": 1,
            "error": {"code": "PROVIDER_ERROR", "message": "503"},
            "nextAttempt": 2,
            "backoffMs": 10,
        },
        {"eventType": "step_started", "seq": 4, "stepId": "s", "stepIndex": 0, "type": "agent", "attempt": 2},
        {
            "eventType": "tool_call_started",
            "seq": 5,
            "stepId": "s",
            "stepIndex": 0,
            "toolCallId": "c1",
            "name": "f",
            "arguments": "{}",
            "side": "client",
        },
        {
            "eventType": "step_paused_for_tool_calls",
            "seq": 6,
            "stepId": "s",
            "stepIndex": 0,
            "attempt": 2,
            "toolCalls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        },
        {
            "eventType": "tool_call_completed",
            "seq": 7,
            "stepId": "s",
            "stepIndex": 0,
            "toolCallId": "c1",
            "name": "f",
            "side": "client",
            "result": "ok",
            "durationMs": 500,
        },
        {
            "eventType": "step_output",
            "seq": 8,
            "stepId": "s",
            "stepIndex": 0,
            "attempt": 2,
            "outputData": "do",
        },
        {
            "eventType": "step_output",
            "seq": 9,
            "stepId": "s",
            "stepIndex": 0,
            "attempt": 2,
            "outputData": "ne",
        },
    ]
    states = console.evaluate(
        """async (events) => {
          const { RunModel } = await import('./console/static/runmodel.js');
          const m = new RunModel();
          const seen = events.map((e) => { m.apply(e); return [m.status, Boolean(m.pause)]; });
          const s = m.steps.get('s');
          const attempts = [...s.attempts.values()].map((a) => [a.attempt, a.status, a.error?.code ?? null]);
          const last = s.attempts.get(2);
          return { seen, attempts, output: last.output, wait: RunModel.waitMs(last) };
        }""",
        events,
    )
    assert states["seen"][5] == ["waiting", True]  # paused for the client's tool
    assert states["seen"][6] == ["running", False]  # its result came back
    assert states["attempts"] == [[1, "retried", "PROVIDER_ERROR"], [2, "running", None]]
    assert states["output"] == "done" and states["wait"] == 500
