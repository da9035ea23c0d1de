"""`retry` policies on flows and steps, `redact_fields`: validation, inheritance, round trips."""

from __future__ import annotations

from typing import Any

import pytest

from noukai_server.flows import FlowValidationError, RetryPolicy, load_flow

STEP = {"id": "a", "type": "template", "template": "x"}


def only_issue(document: dict[str, Any]) -> tuple[str | None, str]:
    with pytest.raises(FlowValidationError) as caught:
        load_flow(document)
    [issue] = caught.value.issues
    return issue.field, issue.message


def test_defaults_without_any_policy() -> None:
    spec = load_flow({"slug": "r", "steps": [STEP]})
    assert spec.retry is None and spec.steps[0].retry is None
    policy = spec.retry_policy(spec.steps[0])
    assert (policy.max_attempts, policy.initial_backoff_seconds, policy.max_backoff_seconds) == (3, 0.5, 20)


def test_every_step_type_takes_a_policy() -> None:
    steps = [
        {"id": "a", "type": "llm", "model": "builtin:echo", "prompt": "p", "retry": {"max_attempts": 2}},
        {"id": "b", "type": "agent", "model": "builtin:test", "prompt": "p", "retry": {"max_attempts": 2}},
        {"id": "c", "type": "template", "template": "t", "retry": {"max_attempts": 2}},
        {"id": "d", "type": "python", "function": "f", "retry": {"max_attempts": 2}},
    ]
    spec = load_flow({"slug": "r", "steps": steps})
    assert [spec.retry_policy(step).max_attempts for step in spec.steps] == [2, 2, 2, 2]


def test_a_step_inherits_the_fields_it_does_not_set() -> None:
    spec = load_flow(
        {
            "slug": "r",
            "retry": {"max_attempts": 5, "initial_backoff_seconds": 1},
            "steps": [{**STEP, "retry": {"max_backoff_seconds": 2}}, {**STEP, "id": "b"}],
        }
    )
    own, inherited = (spec.retry_policy(step) for step in spec.steps)
    assert (own.max_attempts, own.initial_backoff_seconds, own.max_backoff_seconds) == (5, 1, 2)
    assert (inherited.max_attempts, inherited.initial_backoff_seconds, inherited.max_backoff_seconds) == (
        5,
        1,
        20,
    )


def test_a_mixed_policy_may_put_the_initial_backoff_above_the_maximum() -> None:
    spec = load_flow(
        {
            "slug": "r",
            "retry": {"max_backoff_seconds": 1},
            "steps": [{**STEP, "retry": {"initial_backoff_seconds": 5}}],
        }
    )
    policy = spec.retry_policy(spec.steps[0])
    assert (policy.initial_backoff_seconds, policy.max_backoff_seconds) == (5, 1)


def test_documents_keep_only_the_fields_set() -> None:
    document = {
        "slug": "r",
        "redact_fields": ["email", "user.ssn"],
        "retry": {"max_attempts": 4},
        "steps": [{**STEP, "retry": {"initial_backoff_seconds": 0.1}}],
    }
    spec = load_flow(document)
    canonical = spec.to_document()
    assert canonical["retry"] == {"max_attempts": 4}
    assert canonical["steps"][0]["retry"] == {"initial_backoff_seconds": 0.1}
    assert canonical["redact_fields"] == ["email", "user.ssn"]
    again = load_flow(canonical)
    assert again == spec
    assert again.retry_policy(again.steps[0]).max_attempts == 4


def test_integers_are_accepted_for_seconds() -> None:
    assert RetryPolicy.model_validate({"initial_backoff_seconds": 1}).initial_backoff_seconds == 1.0


@pytest.mark.parametrize(
    ("retry", "field", "message"),
    [
        (5, "retry", "must be a valid dictionary"),
        ({"max_attempts": 0}, "retry.max_attempts", "greater than or equal to 1"),
        ({"max_attempts": 21}, "retry.max_attempts", "less than or equal to 20"),
        ({"max_attempts": "3"}, "retry.max_attempts", "valid integer, got a string"),
        ({"max_attempts": True}, "retry.max_attempts", "valid integer, got a boolean"),
        ({"initial_backoff_seconds": -1}, "retry.initial_backoff_seconds", "greater than or equal to 0"),
        ({"max_backoff_seconds": 301}, "retry.max_backoff_seconds", "less than or equal to 300"),
        (
            {"initial_backoff_seconds": 5, "max_backoff_seconds": 1},
            "retry",
            "must not exceed max_backoff_seconds",
        ),
        ({"max_attemps": 2}, "retry.max_attemps", "did you mean 'max_attempts'?"),
    ],
)
def test_invalid_policies(retry: Any, field: str, message: str) -> None:
    got_field, got_message = only_issue({"slug": "r", "retry": retry, "steps": [STEP]})
    assert got_field == field and message in got_message
    got_field, got_message = only_issue({"slug": "r", "steps": [{**STEP, "retry": retry}]})
    assert got_field == field and message in got_message and got_message.startswith("step 'a' (steps[0])")


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ("email", "redact_fields", "must be a valid list"),
        (["ok", "bad field"], "redact_fields[1]", "a field name is 1-128 letters"),
        ([""], "redact_fields[0]", "a field name is"),
        ([3], "redact_fields[0]", "valid string"),
    ],
)
def test_invalid_redact_fields(fields: Any, field: str, message: str) -> None:
    got_field, got_message = only_issue({"slug": "r", "redact_fields": fields, "steps": [STEP]})
    assert got_field == field and message in got_message
