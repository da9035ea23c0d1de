"""Evaluates guards: a flow's `input_guards` before its first step, a step's `guards` on its output.

A guard that passes leaves no trace. One that trips emits `guard_tripped`, then, by its `on_fail`:
`fail` fails the step (or, for an input, the run) with `GUARD_FAILED`; `retry` fails the attempt
with a retryable `GUARD_FAILED`, so the runner's retry policy decides whether another attempt
follows; `replace` renders the guard's `replacement` and goes on with it (later guards check the
replaced value). A guard that cannot be evaluated at all (its template fails, its function raises,
its judge's provider is down) is not a trip: the step fails with that error's own code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

import anyio.to_thread
import orjson
import regex  # type: ignore[import-untyped]  # no stubs published

from noukai.types import events as ev
from noukai.types.errors import ErrorCode
from noukai.types.events import GuardTrippedFields
from noukai_server.engine.functions import FunctionRegistry
from noukai_server.engine.outcome import Failed, StepFailure
from noukai_server.engine.sink import EventSink
from noukai_server.engine.state import RunInputs, RunState
from noukai_server.engine.steps import StepOutput
from noukai_server.flows import (
    GUARD_VALUE_NAME,
    FlowSpec,
    GuardSpec,
    InputGuardSpec,
    StepSpec,
    TemplateEngine,
    TemplateError,
    build_context,
)
from noukai_server.providers import ModelRegistry
from noukai_server.providers.base import ChatMessage, ModelError, ModelRequest, ModelResponse

REGEX_SECONDS: Final = 1.0
"""How long one regex match (a `regex` guard's, or a schema's `pattern`) may run; past it the
guard trips (the `regex` engine checks its own deadline, so a catastrophic pattern cannot stall)."""
JUDGE_MAX_TOKENS: Final = 256
JUDGE_SYSTEM: Final = (
    "You are a strict checker. Answer with PASS or FAIL as the first word, optionally followed "
    "by a colon and a one-line reason."
)
MAX_REASON_CHARS: Final = 500
_VERDICT = re.compile(r"\s*(pass|fail)\b[ \t]*[:.\-]?\s*(.*)", re.IGNORECASE | re.DOTALL)


def parse_verdict(answer: str) -> tuple[bool, str] | None:
    """A judge's answer as (passed, reason): its first word must be PASS or FAIL (any case), then
    optionally `:`, `.` or `-` and a reason. Anything else is None: no verdict."""
    found = _VERDICT.match(answer)
    if found is None:
        return None
    return found.group(1).lower() == "pass", found.group(2).strip()[:MAX_REASON_CHARS]


@dataclass(slots=True)
class _Cost:
    """What a judge's model calls cost, to add to the step's (or the run's) totals."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: Decimal = Decimal(0)


class GuardChecks:
    """The guard evaluator the engine calls; it shares the engine's models, functions, templates."""

    def __init__(self, models: ModelRegistry, functions: FunctionRegistry, templates: TemplateEngine) -> None:
        self._models = models
        self._functions = functions
        self._templates = templates

    async def check_inputs(
        self,
        flow: FlowSpec,
        inputs: RunInputs,
        state: RunState,
        sink: EventSink,
        run: Mapping[str, Any],
        *,
        fresh: bool,
    ) -> Failed | None:
        """Run the flow's input guards on `inputs` (replacing values in place), or, when not
        `fresh` (the run resumes after its first step), put back the replacements they made then.
        A Failed outcome (with the first step's id) when a guard refuses the input."""
        if not fresh:
            _apply(inputs, state.guarded_inputs)
            return None
        first = flow.steps[0]
        cost = _Cost()
        for guard in flow.input_guards:
            value = _input_value(inputs, guard)
            context = build_context(
                message=inputs.message,
                messages=inputs.messages,
                parameters=inputs.parameters,
                attachments=inputs.attachments,
                outputs={},
                skipped=[],
                run=run,
            )
            where = f"input guard '{guard.name}' on {guard.input}"
            try:
                reason = await self._evaluate(guard, value, context, where, cost, attempt=1)
                if reason is None:
                    continue
                tripped: GuardTrippedFields = {
                    "guard": guard.name,
                    "kind": guard.kind,
                    "target": "input",
                    "onFail": guard.on_fail,
                    "reason": reason,
                    "input": guard.input,
                }
                await sink.emit(ev.GUARD_TRIPPED, tripped)
                if guard.on_fail != "replace":
                    message = f"{where} refused it ({guard.kind}): {reason}"
                    return Failed(first.id, 0, ErrorCode.GUARD_FAILED.value, message)
                replaced = await self._replacement(guard, value, context, where)
            except StepFailure as failure:
                return Failed(first.id, 0, failure.code, failure.message)
            finally:
                _charge(state, cost)
                cost = _Cost()
            if guard.parameter is None and not isinstance(replaced, str | None):
                replaced = orjson.dumps(replaced).decode()  # the message is text
            state.guarded_inputs[guard.input] = replaced
            _apply(inputs, {guard.input: replaced})
        return None

    async def check_output(
        self,
        step: StepSpec,
        index: int,
        attempt: int,
        result: StepOutput,
        context: Mapping[str, Any],
        sink: EventSink,
    ) -> None:
        """Run the step's guards on its output: replace `result.output` in place, add a judge's
        tokens to it, or raise StepFailure (GUARD_FAILED, retryable for `on_fail: retry`)."""
        cost = _Cost()
        try:
            for guard in step.guards:
                where = f"guard '{guard.name}' of step '{step.id}'"
                reason = await self._evaluate(guard, result.output, context, where, cost, attempt=attempt)
                if reason is None:
                    continue
                tripped: GuardTrippedFields = {
                    "guard": guard.name,
                    "kind": guard.kind,
                    "target": "step",
                    "onFail": guard.on_fail,
                    "reason": reason,
                    "stepId": step.id,
                    "stepIndex": index,
                    "attempt": attempt,
                }
                await sink.emit(ev.GUARD_TRIPPED, tripped)
                if guard.on_fail == "replace":
                    result.output = await self._replacement(guard, result.output, context, where)
                    continue
                raise StepFailure(
                    ErrorCode.GUARD_FAILED,
                    f"{where} refused its output ({guard.kind}): {reason}",
                    retryable=guard.on_fail == "retry",
                )
        finally:
            result.prompt_tokens += cost.prompt_tokens
            result.completion_tokens += cost.completion_tokens
            result.cost += cost.cost

    async def _evaluate(
        self,
        guard: GuardSpec,
        value: Any,
        context: Mapping[str, Any],
        where: str,
        cost: _Cost,
        *,
        attempt: int,
    ) -> str | None:
        """None when `value` passes the guard, else why it does not."""
        if guard.condition is not None:
            passed = self._templates.is_truthy(
                await self._render(guard.condition, value, context, where, "condition")
            )
            return None if passed else f"the condition {guard.condition!r} is false"
        if guard.json_schema is not None:
            return await anyio.to_thread.run_sync(_schema_problem, guard.json_schema, value)
        if guard.regex is not None:
            check = guard.regex
            return await anyio.to_thread.run_sync(
                _regex_problem, check.pattern, check.mode, check.expect, value
            )
        if guard.function is not None:
            return await self._function(guard.function, value, where)
        if guard.judge is not None:
            return await self._judge(guard, value, context, where, cost, attempt)
        raise AssertionError(f"guard {guard.name!r} has no check")  # the spec refuses this

    async def _render(
        self, source: str, value: Any, context: Mapping[str, Any], where: str, field: str
    ) -> Any:
        try:
            return await self._templates.render_value_async(source, {**context, GUARD_VALUE_NAME: value})
        except TemplateError as exc:
            raise StepFailure(ErrorCode.TEMPLATE_ERROR, f"{where}, field '{field}': {exc.message}") from exc

    async def _replacement(self, guard: GuardSpec, value: Any, context: Mapping[str, Any], where: str) -> Any:
        try:
            return await self._templates.render_structure_async(
                guard.replacement, {**context, GUARD_VALUE_NAME: value}
            )
        except TemplateError as exc:
            raise StepFailure(ErrorCode.TEMPLATE_ERROR, f"{where}, field 'replacement': {exc}") from exc

    async def _function(self, name: str, value: Any, where: str) -> str | None:
        if name not in self._functions:
            raise StepFailure(ErrorCode.INVALID_TREE, f"{where}: no function named {name!r}")
        try:
            answer = await self._functions.call(name, {GUARD_VALUE_NAME: value})
        except Exception as exc:  # the operator's function may raise anything
            raise StepFailure(
                ErrorCode.FUNCTION_ERROR, f"{where}: {name} raised {type(exc).__name__}: {exc}"
            ) from exc
        if answer is True:
            return None
        if answer is False:
            return f"{name} returned false"
        if isinstance(answer, str):
            return answer[:MAX_REASON_CHARS] or f"{name} refused the value"
        raise StepFailure(
            ErrorCode.FUNCTION_ERROR,
            f"{where}: {name} returned {type(answer).__name__}; a guard function returns true, "
            "false or a reason (a string, meaning it failed)",
        )

    async def _judge(
        self, guard: GuardSpec, value: Any, context: Mapping[str, Any], where: str, cost: _Cost, attempt: int
    ) -> str | None:
        judge = guard.judge
        assert judge is not None
        prompt = await self._render(judge.prompt, value, context, where, "judge.prompt")
        text = prompt if isinstance(prompt, str) else orjson.dumps(prompt).decode()
        try:
            resolved = self._models.resolve(judge.model)
            request = ModelRequest(
                model=resolved.model,
                messages=(ChatMessage(role="user", content=text),),
                system=JUDGE_SYSTEM,
                temperature=0,
                max_tokens=JUDGE_MAX_TOKENS,
                attempt=attempt,
            )
            response: ModelResponse | None = None
            async for item in resolved.client.stream(request):
                if isinstance(item, ModelResponse):
                    response = item
        except ModelError as exc:
            raise StepFailure(
                exc.code, f"{where}, its judge: {exc.message}", retryable=exc.retryable
            ) from exc
        if response is None:
            raise StepFailure(
                ErrorCode.PROVIDER_ERROR, f"{where}: the judge's stream ended without an answer"
            )
        cost.prompt_tokens += response.usage.prompt_tokens
        cost.completion_tokens += response.usage.completion_tokens
        cost.cost += self._models.price_table.cost_usd(resolved.provider, resolved.model, response.usage)
        verdict = parse_verdict(response.text)
        if verdict is None:
            # No verdict is not a pass: a guard fails closed.
            return f"the judge answered neither PASS nor FAIL: {response.text.strip()[:80]!r}"
        passed, reason = verdict
        return None if passed else (reason or "the judge answered FAIL")


def _input_value(inputs: RunInputs, guard: InputGuardSpec) -> Any:
    name = guard.parameter
    return inputs.message if name is None else inputs.parameters.get(name)


def _apply(inputs: RunInputs, replaced: Mapping[str, Any]) -> None:
    for key, value in replaced.items():
        if key == "message":
            inputs.message = value
        else:
            inputs.parameters = {**inputs.parameters, key.removeprefix("parameters."): value}


def _charge(state: RunState, cost: _Cost) -> None:
    state.prompt_tokens += cost.prompt_tokens
    state.completion_tokens += cost.completion_tokens
    state.cost_usd += cost.cost


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return str(value)


def _regex_problem(pattern: str, mode: str, expect: str, value: Any) -> str | None:
    """Runs on a worker thread: `regex` releases the GIL (`concurrent=True`) and stops itself."""
    match = regex.search if mode == "search" else regex.fullmatch
    try:
        found = match(pattern, _as_text(value), timeout=REGEX_SECONDS, concurrent=True)
    except TimeoutError:
        return f"the pattern ran past {REGEX_SECONDS:g} s on this value"
    if expect == "match" and found is None:
        return f"the value does not match /{pattern}/ ({mode})"
    if expect == "no_match" and found is not None:
        return f"the value matches /{pattern}/ at position {found.start()}"
    return None


def _schema_problem(schema: dict[str, Any], value: Any) -> str | None:
    """Runs on a worker thread; the first (most relevant) error, located."""
    import jsonschema  # only schema guards pay for its import
    from referencing.exceptions import Unresolvable

    validator = _bounded_validator(jsonschema)(schema)
    try:
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    except RecursionError:
        return "the schema refers to itself without end"
    except Unresolvable as exc:  # a `$ref` to nothing the schema holds (nothing is fetched)
        return f"the schema cannot be applied: {exc}"
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path)
    return f"{where or 'the value'}: {error.message}"[:MAX_REASON_CHARS]


_VALIDATOR: list[Any] = []


def _bounded_validator(jsonschema: Any) -> Any:
    """Draft 2020-12 with `pattern` matched by the `regex` engine under `REGEX_SECONDS` (the stock
    keyword uses `re`, which no deadline can stop). Built once."""
    if _VALIDATOR:
        return _VALIDATOR[0]

    def pattern(validator: Any, expected: str, instance: Any, schema: Any) -> Any:
        if not validator.is_type(instance, "string"):
            return
        try:
            found = regex.search(expected, instance, timeout=REGEX_SECONDS, concurrent=True)
        except TimeoutError:
            yield jsonschema.ValidationError(f"pattern {expected!r} ran past {REGEX_SECONDS:g} s")
            return
        except regex.error as exc:
            yield jsonschema.ValidationError(f"pattern {expected!r} does not compile: {exc}")
            return
        if found is None:
            yield jsonschema.ValidationError(f"{instance!r:.80} does not match {expected!r}")

    bounded = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": pattern})
    _VALIDATOR.append(bounded)
    return bounded
