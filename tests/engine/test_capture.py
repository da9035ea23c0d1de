"""Capture modes: what a step's `step_input` keeps, redaction of secrets, and the size cap."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from noukai.types import events as ev
from noukai_server.engine.capture import REDACTED, captured, json_size, redact, truncate
from tests.engine.conftest import Harness

SECRET_PROMPT = "key sk-abcdef123456 and nk_live_0123456789 for {{ message }}"


def flow(mode: str, **extra: Any) -> dict[str, Any]:
    return {
        "slug": "cap",
        "trace_capture_mode": mode,
        **extra,
        "steps": [
            {"id": "ask", "type": "llm", "model": "builtin:echo", "system": "sys", "prompt": SECRET_PROMPT},
            {"id": "fn", "type": "python", "function": "text.upper", "args": {"text": "{{ message }}"}},
        ],
    }


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("mode", "ask_input", "fn_input"),
    [
        (
            "full",
            {
                "model": "builtin:echo",
                "prompt": "key sk-abcdef123456 and nk_live_0123456789 for hi",
                "system": "sys",
            },
            {"function": "text.upper", "args": {"text": "hi"}},
        ),
        (
            "redacted",
            {"model": "builtin:echo", "prompt": f"key {REDACTED} and {REDACTED} for hi", "system": "sys"},
            {"function": "text.upper", "args": {"text": "hi"}},
        ),
        ("metadata_only", {"model": "builtin:echo"}, {"function": "text.upper"}),
        ("off", {"model": "builtin:echo"}, {"function": "text.upper"}),
    ],
)
async def test_step_input_follows_the_capture_mode(
    harness: Harness, mode: str, ask_input: dict[str, Any], fn_input: dict[str, Any]
) -> None:
    _, sink, _ = await harness.run(flow(mode))
    inputs = {p["stepId"]: p for _, p in sink.of(ev.STEP_INPUT)}
    assert inputs["ask"]["inputData"] == ask_input
    assert inputs["fn"]["inputData"] == fn_input
    full_prompt = {
        "model": "builtin:echo",
        "prompt": "key sk-abcdef123456 and nk_live_0123456789 for hi",
        "system": "sys",
    }
    # The size is always the size of what the step really got.
    assert inputs["ask"]["inputSizeBytes"] == len(orjson.dumps(full_prompt))


@pytest.mark.anyio
async def test_redact_fields_mask_named_arguments(harness: Harness) -> None:
    _, sink, _ = await harness.run(flow("redacted", redact_fields=["TEXT"]))
    inputs = {p["stepId"]: p for _, p in sink.of(ev.STEP_INPUT)}
    assert inputs["fn"]["inputData"] == {"function": "text.upper", "args": {"text": REDACTED}}


class TestRedact:
    def test_secret_keys_any_case_and_separator(self) -> None:
        value = {
            "API_KEY": "x",
            "api-key": "x",
            "apikey": "x",
            "clientSecret": "x",
            "access_token": {"nested": 1},
            "Password": "x",
            "authorization": "Bearer abc",
            "keep": "plain",
        }
        assert redact(value) == {**{k: REDACTED for k in value if k != "keep"}, "keep": "plain"}

    def test_secret_values_inside_text_at_any_depth(self) -> None:
        value = {"list": ["use sk-proj-abcdef12 now", {"deep": "nk_abc_defghijk"}], "n": 3, "ok": None}
        assert redact(value) == {"list": [f"use {REDACTED} now", {"deep": REDACTED}], "n": 3, "ok": None}

    def test_bearer_tokens_in_text(self) -> None:
        assert redact("header: Bearer abc.def-ghi") == f"header: {REDACTED}"

    def test_short_lookalikes_are_kept(self) -> None:
        assert redact("task-list and sk-1 and nk_") == "task-list and sk-1 and nk_"

    def test_configured_fields(self) -> None:
        assert redact({"Email": "a@b", "x": {"email": 1}}, ["email"]) == {
            "Email": REDACTED,
            "x": {"email": REDACTED},
        }

    def test_captured_per_mode(self) -> None:
        context = {"prompt": "sk-secretsecret"}
        assert captured(context, "full") == context
        assert captured(context, "redacted") == {"prompt": REDACTED}
        assert captured(context, "metadata_only") is None
        assert captured(context, "off") is None


class TestTruncate:
    def test_small_contexts_are_kept(self) -> None:
        assert truncate({"a": "b"}, 100) == ({"a": "b"}, False)

    def test_long_strings_are_shortened_first(self) -> None:
        context = {"output": "x" * 10_000, "meta": {"k": 1}}
        cut, truncated = truncate(context, 1000)
        assert truncated and json_size(cut) <= 1000
        assert cut["meta"] == {"k": 1} and cut["output"].startswith("xxx") and cut["output"].endswith("…")

    def test_a_big_structure_becomes_a_preview(self) -> None:
        context = {"numbers": list(range(10_000))}
        cut, truncated = truncate(context, 500)
        assert truncated and set(cut) == {"preview"} and json_size(cut) <= 500
        assert cut["preview"].startswith('{"numbers":[0,1,2')

    @settings(max_examples=60, deadline=None)
    @given(
        st.recursive(
            st.text() | st.integers(-(2**63), 2**63 - 1),
            lambda inner: st.lists(inner, max_size=8) | st.dictionaries(st.text(), inner, max_size=8),
            max_leaves=40,
        )
    )
    def test_the_cap_always_holds(self, value: Any) -> None:
        cut, _ = truncate({"v": value}, 300)
        assert json_size(cut) <= 300
