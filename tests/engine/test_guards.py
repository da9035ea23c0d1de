"""Guards in the engine: each kind of check (condition, schema, regex, function, judge), each
`on_fail` (fail, retry, replace), on a step's output and on the run's inputs, with the
`guard_tripped` event and the GUARD_FAILED error; real templates, functions and builtin models."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from noukai.types import events as ev
from noukai_server.engine import (
    Completed,
    Failed,
    FlowEngine,
    RunInputs,
    RunState,
    default_functions,
    parse_verdict,
)
from noukai_server.engine import guards as guard_module
from noukai_server.engine.outcome import Outcome
from noukai_server.flows import TemplateEngine, load_flow
from noukai_server.providers import ModelRegistry, ProviderSettings
from tests.engine.conftest import MemorySink

pytestmark = pytest.mark.anyio

Document = dict[str, Any]


class Checks:
    """Guard functions registered for these tests; `calls` counts each one's calls."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    def count(self, name: str) -> int:
        self.calls[name] = self.calls.get(name, 0) + 1
        return self.calls[name]

    def second_time_lucky(self, value: Any) -> bool:
        return self.count("second_time_lucky") >= 2

    def polite(self, value: Any) -> bool | str:
        return True if "please" in str(value) else "no 'please' in it"

    def never(self, value: Any) -> bool:
        return False

    def broken(self, value: Any) -> bool:
        raise RuntimeError("the checker is broken")

    def undecided(self, value: Any) -> int:
        return 3


@pytest.fixture
def checks() -> Checks:
    return Checks()


@pytest.fixture
def engine(checks: Checks) -> FlowEngine:
    functions = default_functions()
    registered: dict[str, Callable[..., Any]] = {
        "checks.second_time_lucky": checks.second_time_lucky,
        "checks.polite": checks.polite,
        "checks.never": checks.never,
        "checks.broken": checks.broken,
        "checks.undecided": checks.undecided,
    }
    for name, function in registered.items():
        functions.register(name, function)

    async def no_sleep(seconds: float) -> None:
        return None

    return FlowEngine(
        ModelRegistry(ProviderSettings()), functions, TemplateEngine(), sleep=no_sleep, jitter=lambda: 0.5
    )


async def run(
    engine: FlowEngine,
    document: Document,
    *,
    message: str | None = "hello",
    parameters: dict[str, Any] | None = None,
    state: RunState | None = None,
    start_index: int = 0,
) -> tuple[Outcome, MemorySink, RunState]:
    spec = load_flow(document, known_functions=set(engine.functions.names()))
    sink = MemorySink()
    state = state or RunState()
    # The runtime binds declared inputs' defaults before the engine runs; here, `email` is "".
    inputs = RunInputs(message=message, parameters={"email": "", **(parameters or {})})
    outcome = await engine.run(spec, inputs, state, sink, run={"id": "r"}, start_index=start_index)
    return outcome, sink, state


def step_flow(guard: Document, *, template: Any = "{{ message }}", retry: Document | None = None) -> Document:
    step: Document = {"id": "make", "type": "template", "template": template, "guards": [guard]}
    if retry is not None:
        step["retry"] = retry
    after = {"id": "after", "type": "template", "template": "{{ steps.make.output }}"}
    return {"slug": "guarded", "steps": [step, after]}


def tripped(sink: MemorySink) -> list[dict[str, Any]]:
    return [payload for _, payload in sink.of(ev.GUARD_TRIPPED)]


# --- each kind: passing leaves no trace, failing trips with a reason ---------------------------------


async def test_a_passing_guard_leaves_no_event_and_the_output_untouched(engine: FlowEngine) -> None:
    guard = {"name": "short", "condition": "{{ value | length < 10 }}"}
    outcome, sink, state = await run(engine, step_flow(guard))
    assert outcome == Completed("hello")
    assert tripped(sink) == []
    assert state.outputs["make"] == "hello"


async def test_a_false_condition_fails_the_step_with_guard_failed(engine: FlowEngine) -> None:
    guard = {"name": "short", "condition": "{{ value | length < 3 }}"}
    outcome, sink, _ = await run(engine, step_flow(guard))
    message = (
        "guard 'short' of step 'make' refused its output (condition): "
        "the condition '{{ value | length < 3 }}' is false"
    )
    assert outcome == Failed("make", 0, "GUARD_FAILED", message)
    assert tripped(sink) == [
        {
            "guard": "short",
            "kind": "condition",
            "target": "step",
            "onFail": "fail",
            "reason": "the condition '{{ value | length < 3 }}' is false",
            "stepId": "make",
            "stepIndex": 0,
            "attempt": 1,
        }
    ]
    [(_, error)] = sink.of(ev.STEP_ERROR)
    assert error["error"] == {"code": "GUARD_FAILED", "message": message}
    # The guard stands between the step's work and its completion: no step_completed, no retry.
    assert sink.of(ev.STEP_COMPLETED, ev.STEP_RETRYING) == []
    # The event comes before the step's error.
    types = [t for t, _ in sink.events]
    assert types.index(ev.GUARD_TRIPPED) < types.index(ev.STEP_ERROR)


async def test_a_condition_reads_the_run_context_too(engine: FlowEngine) -> None:
    guard = {"name": "echoes", "condition": "{{ value == message and run.id == 'r' }}"}
    outcome, sink, _ = await run(engine, step_flow(guard))
    assert outcome == Completed("hello") and tripped(sink) == []


async def test_a_schema_guard_names_where_the_output_breaks_it(engine: FlowEngine) -> None:
    schema = {
        "type": "object",
        "required": ["score"],
        "properties": {"score": {"type": "integer", "minimum": 0, "maximum": 10}},
    }
    guard = {"name": "shape", "schema": schema}
    good, _, _ = await run(engine, step_flow(guard, template={"score": "{{ 7 }}"}))
    assert good == Completed({"score": 7})
    outcome, sink, _ = await run(engine, step_flow(guard, template={"score": "{{ 11 }}"}))
    assert isinstance(outcome, Failed) and outcome.code == "GUARD_FAILED"
    [event] = tripped(sink)
    assert event["kind"] == "schema"
    assert event["reason"] == "score: 11 is greater than the maximum of 10"


async def test_a_schema_pattern_is_bounded_in_time(
    engine: FlowEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(guard_module, "REGEX_SECONDS", 0.05)
    guard = {"name": "shape", "schema": {"type": "string", "pattern": "^(a|aa)+$"}}
    outcome, sink, _ = await run(engine, step_flow(guard), message="a" * 60 + "b")
    assert isinstance(outcome, Failed) and outcome.code == "GUARD_FAILED"
    assert tripped(sink)[0]["reason"] == "the value: pattern '^(a|aa)+$' ran past 0.05 s"


async def test_a_schema_ref_to_nothing_trips_the_guard(engine: FlowEngine) -> None:
    guard = {"name": "shape", "schema": {"$ref": "#/$defs/missing"}}
    outcome, sink, _ = await run(engine, step_flow(guard))
    assert isinstance(outcome, Failed) and outcome.code == "GUARD_FAILED"
    assert tripped(sink)[0]["reason"].startswith("the schema cannot be applied:")


@pytest.mark.parametrize(
    ("check", "passes", "reason"),
    [
        ({"pattern": "ell"}, True, None),
        ({"pattern": "ell", "mode": "fullmatch"}, False, "the value does not match /ell/ (fullmatch)"),
        ({"pattern": "h.*o", "mode": "fullmatch"}, True, None),
        ({"pattern": "xyz"}, False, "the value does not match /xyz/ (search)"),
        ({"pattern": "l+", "expect": "no_match"}, False, "the value matches /l+/ at position 2"),
        ({"pattern": "xyz", "expect": "no_match"}, True, None),
    ],
)
async def test_a_regex_guard_searches_or_fullmatches(
    engine: FlowEngine, check: Document, passes: bool, reason: str | None
) -> None:
    outcome, sink, _ = await run(engine, step_flow({"name": "rx", "regex": check}))
    assert isinstance(outcome, Completed) is passes
    assert [e["reason"] for e in tripped(sink)] == ([] if passes else [reason])


async def test_a_regex_guard_matches_a_structured_output_as_json_text(engine: FlowEngine) -> None:
    guard = {"name": "rx", "regex": {"pattern": '^\\{"a":1\\}$', "mode": "fullmatch"}}
    outcome, _, _ = await run(engine, step_flow(guard, template={"a": "{{ 1 }}"}))
    assert outcome == Completed({"a": 1})


async def test_a_catastrophic_regex_trips_after_its_deadline(
    engine: FlowEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(guard_module, "REGEX_SECONDS", 0.05)
    guard = {"name": "rx", "regex": {"pattern": "^(a|aa)+$"}}
    outcome, sink, _ = await run(engine, step_flow(guard), message="a" * 60 + "b")
    assert isinstance(outcome, Failed) and outcome.code == "GUARD_FAILED"
    assert tripped(sink)[0]["reason"] == "the pattern ran past 0.05 s on this value"


async def test_a_function_guard_passes_fails_or_gives_its_reason(engine: FlowEngine) -> None:
    polite = {"name": "polite", "function": "checks.polite"}
    ok, _, _ = await run(engine, step_flow(polite), message="tea, please")
    assert ok == Completed("tea, please")
    outcome, sink, _ = await run(engine, step_flow(polite), message="tea")
    assert isinstance(outcome, Failed) and outcome.code == "GUARD_FAILED"
    assert tripped(sink)[0]["reason"] == "no 'please' in it"
    outcome, sink, _ = await run(engine, step_flow({"name": "no", "function": "checks.never"}))
    assert tripped(sink)[0]["reason"] == "checks.never returned false"


@pytest.mark.parametrize(
    ("function", "text"),
    [
        ("checks.broken", "checks.broken raised RuntimeError: the checker is broken"),
        (
            "checks.undecided",
            "checks.undecided returned int; a guard function returns true, false or a reason",
        ),
    ],
)
async def test_a_function_that_cannot_decide_fails_the_step_without_tripping(
    engine: FlowEngine, function: str, text: str
) -> None:
    outcome, sink, _ = await run(engine, step_flow({"name": "f", "function": function}))
    assert isinstance(outcome, Failed) and outcome.code == "FUNCTION_ERROR"
    assert text in outcome.message
    assert tripped(sink) == []


async def test_a_broken_condition_is_a_template_error_not_a_trip(engine: FlowEngine) -> None:
    guard = {"name": "bad", "condition": "{{ value.missing.deeper }}"}
    outcome, sink, _ = await run(engine, step_flow(guard))
    assert isinstance(outcome, Failed) and outcome.code == "TEMPLATE_ERROR"
    assert outcome.message.startswith("guard 'bad' of step 'make', field 'condition':")
    assert tripped(sink) == []


async def test_a_judge_guard_reads_the_models_verdict_and_counts_its_tokens(engine: FlowEngine) -> None:
    # builtin:echo answers with the prompt itself, so the prompt decides the verdict.
    prompt = "{{ 'PASS' if 'please' in value else 'FAIL: it is rude' }}"
    guard = {"name": "manners", "judge": {"model": "builtin:echo", "prompt": prompt}}
    ok, sink, state = await run(engine, step_flow(guard), message="please")
    assert ok == Completed("please")
    [(_, completed)] = [(t, p) for t, p in sink.of(ev.STEP_COMPLETED) if p["stepId"] == "make"]
    assert completed["tokens"]["total"] > 0 and state.prompt_tokens > 0
    outcome, sink, _ = await run(engine, step_flow(guard), message="now")
    assert isinstance(outcome, Failed) and outcome.code == "GUARD_FAILED"
    assert tripped(sink)[0] | {"reason": "it is rude", "kind": "judge"} == tripped(sink)[0]


async def test_a_judge_without_a_verdict_fails_closed(engine: FlowEngine) -> None:
    guard = {"name": "manners", "judge": {"model": "builtin:echo", "prompt": "Probably fine"}}
    outcome, sink, _ = await run(engine, step_flow(guard))
    assert isinstance(outcome, Failed) and outcome.code == "GUARD_FAILED"
    assert tripped(sink)[0]["reason"] == "the judge answered neither PASS nor FAIL: 'Probably fine'"


async def test_a_judge_whose_model_is_unknown_fails_with_the_providers_code(engine: FlowEngine) -> None:
    guard = {"name": "manners", "judge": {"model": "builtin:nope", "prompt": "PASS"}}
    outcome, sink, _ = await run(engine, step_flow(guard))
    assert isinstance(outcome, Failed) and outcome.code == "MODEL_NOT_FOUND"
    assert "guard 'manners' of step 'make', its judge:" in outcome.message
    assert tripped(sink) == []


@pytest.mark.parametrize(
    ("answer", "verdict"),
    [
        ("PASS", (True, "")),
        ("pass.", (True, "")),
        ("  Fail: too long\nmore", (False, "too long\nmore")),
        ("FAIL - rude", (False, "rude")),
        ("fail", (False, "")),
        ("Passed", None),
        ("It passes", None),
        ("", None),
        ("PASSFAIL", None),
    ],
)
def test_a_verdict_must_start_with_pass_or_fail(answer: str, verdict: tuple[bool, str] | None) -> None:
    assert parse_verdict(answer) == verdict


# --- on_fail -----------------------------------------------------------------------------------------


async def test_retry_runs_the_step_again_as_its_next_attempt(engine: FlowEngine, checks: Checks) -> None:
    guard = {"name": "lucky", "function": "checks.second_time_lucky", "on_fail": "retry"}
    outcome, sink, _ = await run(engine, step_flow(guard))
    assert outcome == Completed("hello")
    make = [(t, p["attempt"]) for t, p in sink.events if p.get("stepId") == "make"]
    assert make == [
        (ev.STEP_STARTED, 1),
        (ev.GUARD_TRIPPED, 1),
        (ev.STEP_RETRYING, 1),
        (ev.STEP_STARTED, 2),
        (ev.STEP_COMPLETED, 2),
    ]
    [(_, retrying)] = sink.of(ev.STEP_RETRYING)
    assert retrying["error"]["code"] == "GUARD_FAILED"
    assert checks.calls == {"second_time_lucky": 2}


async def test_retry_counts_against_the_steps_attempts(engine: FlowEngine) -> None:
    guard = {"name": "no", "function": "checks.never", "on_fail": "retry"}
    outcome, sink, _ = await run(engine, step_flow(guard, retry={"max_attempts": 2}))
    assert isinstance(outcome, Failed) and outcome.code == "GUARD_FAILED"
    assert [p["attempt"] for p in tripped(sink)] == [1, 2]
    assert [p["attempt"] for _, p in sink.of(ev.STEP_RETRYING)] == [1]
    [(_, error)] = sink.of(ev.STEP_ERROR)
    assert error["attempt"] == 2 and error["error"]["code"] == "GUARD_FAILED"


async def test_replace_substitutes_the_output_and_the_run_goes_on(engine: FlowEngine) -> None:
    guard = {
        "name": "short",
        "condition": "{{ value | length < 3 }}",
        "on_fail": "replace",
        "replacement": {"text": "{{ value[:2] }}", "cut": True},
    }
    outcome, sink, state = await run(engine, step_flow(guard))
    assert outcome == Completed({"text": "he", "cut": True})
    assert state.outputs["make"] == {"text": "he", "cut": True}
    [completed] = [p for _, p in sink.of(ev.STEP_COMPLETED) if p["stepId"] == "make"]
    assert completed["output"] == {"text": "he", "cut": True}
    assert [e["onFail"] for e in tripped(sink)] == ["replace"]


async def test_later_guards_check_the_replaced_value(engine: FlowEngine) -> None:
    document = step_flow(
        {"name": "first", "condition": "{{ false }}", "on_fail": "replace", "replacement": "x"}
    )
    document["steps"][0]["guards"].append({"name": "second", "condition": "{{ value == 'x' }}"})
    outcome, sink, _ = await run(engine, document)
    assert outcome == Completed("x")
    assert [e["guard"] for e in tripped(sink)] == ["first"]


# --- input guards ------------------------------------------------------------------------------------


def input_flow(*guards: Document) -> Document:
    return {
        "slug": "guarded-input",
        "inputs": {"email": {"type": "string", "default": ""}},
        "input_guards": list(guards),
        "steps": [
            {"id": "one", "type": "template", "template": "{{ message }}|{{ parameters.email }}"},
            {"id": "two", "type": "template", "template": "{{ message }}"},
        ],
    }


async def test_an_input_guard_refuses_the_run_before_its_first_step(engine: FlowEngine) -> None:
    guard = {
        "name": "email",
        "input": "parameters.email",
        "regex": {"pattern": "^[^@]+@[^@]+$", "mode": "fullmatch"},
    }
    outcome, sink, _ = await run(engine, input_flow(guard), parameters={"email": "nope"})
    message = (
        "input guard 'email' on parameters.email refused it (regex): "
        "the value does not match /^[^@]+@[^@]+$/ (fullmatch)"
    )
    assert outcome == Failed("one", 0, "GUARD_FAILED", message)
    assert sink.events == [
        (
            ev.GUARD_TRIPPED,
            {
                "guard": "email",
                "kind": "regex",
                "target": "input",
                "onFail": "fail",
                "reason": "the value does not match /^[^@]+@[^@]+$/ (fullmatch)",
                "input": "parameters.email",
            },
        )
    ]


async def test_an_input_guard_replaces_the_message_for_every_step(engine: FlowEngine) -> None:
    guard = {
        "name": "no-secrets",
        "regex": {"pattern": "sk-[A-Za-z0-9]+", "expect": "no_match"},
        "on_fail": "replace",
        "replacement": "{{ value | replace('sk-', '[key]-') }}",
    }
    outcome, sink, state = await run(engine, input_flow(guard), message="my sk-abc")
    assert outcome == Completed("my [key]-abc")
    assert state.outputs["one"] == "my [key]-abc|"
    assert state.guarded_inputs == {"message": "my [key]-abc"}
    assert state.to_json()["guardedInputs"] == {"message": "my [key]-abc"}
    assert [e["input"] for e in tripped(sink)] == ["message"]


async def test_a_resumed_run_reads_the_replaced_inputs_without_checking_again(engine: FlowEngine) -> None:
    guard = {"name": "never", "function": "checks.never", "on_fail": "replace", "replacement": "safe"}
    stored = RunState.from_json(RunState(guarded_inputs={"message": "safe"}).to_json())
    outcome, sink, _ = await run(engine, input_flow(guard), message="raw", state=stored, start_index=1)
    assert outcome == Completed("safe")
    assert tripped(sink) == []


async def test_resuming_the_first_steps_pause_does_not_check_the_input_again(engine: FlowEngine) -> None:
    guard = {"name": "never", "function": "checks.never", "on_fail": "replace", "replacement": "safe"}
    stored = RunState(guarded_inputs={"message": "safe"})
    # Step 0 paused for client tools (and nobody answered yet): the run resumes at step 0.
    stored.agent = {
        "stepId": "one",
        "stepIndex": 0,
        "attempt": 1,
        "pause": {"messages": [], "pending": [], "iterations": 1},
    }
    outcome, sink, _ = await run(engine, input_flow(guard), message="raw", state=stored)
    assert outcome == Completed("safe")
    assert tripped(sink) == []


async def test_a_non_text_replacement_of_the_message_is_json_text(engine: FlowEngine) -> None:
    guard = {"name": "n", "condition": "{{ false }}", "on_fail": "replace", "replacement": {"a": 1}}
    outcome, _, _ = await run(engine, input_flow(guard))
    assert outcome == Completed('{"a":1}')


async def test_an_input_guard_that_cannot_be_evaluated_fails_the_run_with_its_code(
    engine: FlowEngine,
) -> None:
    guard = {"name": "f", "function": "checks.broken"}
    outcome, sink, _ = await run(engine, input_flow(guard))
    assert isinstance(outcome, Failed) and outcome.code == "FUNCTION_ERROR"
    assert outcome.step_id == "one" and sink.events == []


async def test_a_judge_on_the_input_is_charged_to_the_run(engine: FlowEngine) -> None:
    guard = {"name": "j", "judge": {"model": "builtin:echo", "prompt": "PASS {{ value }}"}}
    outcome, _, state = await run(engine, input_flow(guard))
    assert outcome == Completed("hello")
    assert state.prompt_tokens > 0 and state.completion_tokens > 0


async def test_a_state_without_guarded_inputs_is_stored_as_before() -> None:
    assert "guardedInputs" not in RunState().to_json()
    assert RunState.from_json({"outputs": {}}).guarded_inputs == {}
