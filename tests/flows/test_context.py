"""build_context: the names templates see, and how skipped steps look."""

from __future__ import annotations

from noukai_server.flows import TemplateEngine, build_context


def test_context_names() -> None:
    ctx = build_context(
        message="hi",
        messages=[{"role": "user", "content": "hi"}],
        parameters={"p": 1},
        attachments=[{"name": "a.txt"}],
        outputs={"check": "ok"},
        run={"id": "r1"},
    )
    assert ctx == {
        "message": "hi",
        "messages": [{"role": "user", "content": "hi"}],
        "parameters": {"p": 1},
        "attachments": [{"name": "a.txt"}],
        "steps": {"check": {"output": "ok", "skipped": False}},
        "run": {"id": "r1"},
    }


def test_missing_inputs_become_empty() -> None:
    ctx = build_context(message=None, messages=None, parameters=None, attachments=None, outputs={}, run={})
    assert (ctx["message"], ctx["messages"], ctx["parameters"], ctx["attachments"], ctx["steps"]) == (
        None,
        [],
        {},
        [],
        {},
    )


def test_skipped_steps_have_null_output_and_a_flag() -> None:
    ctx = build_context(
        message="m",
        messages=[],
        parameters={},
        attachments=[],
        outputs={"a": 1, "b": None},
        run={},
        skipped=["b", "c"],
    )
    assert ctx["steps"] == {
        "a": {"output": 1, "skipped": False},
        "b": {"output": None, "skipped": True},
        "c": {"output": None, "skipped": True},
    }
    engine = TemplateEngine()
    assert (
        engine.render_text("{{ steps.b.output }}|{{ steps.b.skipped }}|{{ steps.a.skipped }}", ctx)
        == "|true|false"
    )
