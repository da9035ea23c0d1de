"""Guards: checks on a run's inputs (`input_guards`) and on a step's output (a step's `guards`).

The models here check each guard's shape (exactly one kind of check, a compilable bounded regex, a
valid JSON Schema, a `replacement` exactly when `on_fail: replace`); `guard_problems` and
`input_guard_problems` do the checks that need the rest of the flow or the server's registries
(template names, step order, declared inputs, functions, model providers). Evaluation is the
engine's (`noukai_server.engine.guards`).

This module imports nothing of `_spec` or `_checks` at import time, because `_spec` imports it to
declare the `guards` fields; the few names it shares with them are imported inside functions.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Annotated, Any, Literal, TypedDict

import regex  # type: ignore[import-untyped]  # no stubs published
from jinja2 import TemplateSyntaxError
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
    model_validator,
)

from noukai_server.flows._analysis import inspect_template
from noukai_server.flows._issues import Problem
from noukai_server.flows._paths import Path, step_reference

GuardKind = Literal["condition", "schema", "regex", "function", "judge"]
GUARD_KINDS: tuple[GuardKind, ...] = ("condition", "schema", "regex", "function", "judge")
OnFail = Literal["fail", "retry", "replace"]

GUARD_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
GUARD_INPUT_PATTERN = r"^(message|parameters\.[A-Za-z_][A-Za-z0-9_]{0,63})$"
MAX_REGEX_CHARS = 1_000
"""The longest `regex.pattern`: long enough for any real check, short enough to read."""
GUARD_VALUE_NAME = "value"
"""What a guard's templates call the value under check (the input, or the step's output)."""
_UNBOUNDED_SCHEMA_KEYWORDS = ("patternProperties",)
"""JSON Schema keywords whose regular expressions the validator runs without a time bound; `pattern`
is bounded (see engine/guards.py), these are refused."""


def _json_value(value: Any) -> Any:
    from noukai_server.flows._spec import _json_data  # _spec imports this module

    return _json_data(value)


def _model_name(value: str) -> str:
    from noukai_server.flows._spec import MODEL_PATTERN  # _spec imports this module

    if not re.match(MODEL_PATTERN, value):
        raise ValueError(f"{value!r} is not a model: write 'provider:model', e.g. 'builtin:echo'")
    return value


def _function_name(value: str) -> str:
    from noukai_server.flows._spec import FUNCTION_PATTERN  # _spec imports this module

    if not re.match(FUNCTION_PATTERN, value):
        raise ValueError(f"{value!r} is not a function name: a dotted Python name, e.g. 'checks.polite'")
    return value


class _GuardModel(BaseModel):
    # As strict as the rest of the flow language (see _spec._Model); `schema` is an alias, since a
    # field of that name would shadow BaseModel's own `schema`, and documents are written with it.
    model_config = ConfigDict(
        extra="forbid", strict=True, frozen=True, allow_inf_nan=False, serialize_by_alias=True
    )

    @model_serializer(mode="wrap")
    def _as_written(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Only the fields the author set: a dumped default (`replacement: null`) would change what
        # the guard means when the stored document is loaded again.
        data: dict[str, Any] = handler(self)
        fields = type(self).model_fields
        written = {fields[name].alias or name for name in self.model_fields_set}
        return {key: value for key, value in data.items() if key in written}


class RegexCheck(_GuardModel):
    """`regex:` a pattern of the `regex` package; `search` looks anywhere in the value, `fullmatch`
    needs the whole value to match; `expect: no_match` passes when the pattern does not match."""

    pattern: str = Field(min_length=1, max_length=MAX_REGEX_CHARS)
    mode: Literal["search", "fullmatch"] = "search"
    expect: Literal["match", "no_match"] = "match"

    @model_validator(mode="after")
    def _compiles(self) -> RegexCheck:
        try:
            regex.compile(self.pattern)
        except regex.error as exc:
            raise ValueError(f"pattern does not compile: {exc}") from None
        return self


class JudgeCheck(_GuardModel):
    """`judge:` a model asked whether the value passes; its answer must start with PASS or FAIL."""

    model: Annotated[str, AfterValidator(_model_name)]
    prompt: str = Field(min_length=1)


class GuardSpec(_GuardModel):
    """One guard: a name, exactly one check, and what to do when the check fails."""

    name: str = Field(pattern=GUARD_NAME_PATTERN)
    condition: str | None = None
    json_schema: Annotated[dict[str, Any], AfterValidator(_json_value)] | None = Field(
        default=None, alias="schema"
    )
    regex: RegexCheck | None = None
    function: Annotated[str, AfterValidator(_function_name)] | None = None
    judge: JudgeCheck | None = None
    on_fail: OnFail = "fail"
    replacement: Annotated[Any, AfterValidator(_json_value)] = None
    """With `on_fail: replace`: the value used instead (string leaves are templates)."""

    @model_validator(mode="after")
    def _one_check_and_a_replacement(self) -> GuardSpec:
        kinds = [kind for kind in GUARD_KINDS if self.check(kind) is not None]
        if len(kinds) != 1:
            found = f"found {', '.join(kinds)}" if kinds else "found none"
            raise ValueError(f"a guard has exactly one of {', '.join(GUARD_KINDS)}; {found}")
        has_replacement = "replacement" in self.model_fields_set
        if self.on_fail == "replace" and not has_replacement:
            raise ValueError("on_fail: replace needs a 'replacement' (the value used instead)")
        if self.on_fail != "replace" and has_replacement:
            raise ValueError(f"'replacement' is only used with on_fail: replace, not {self.on_fail}")
        if self.json_schema is not None:
            _check_schema(self.json_schema)
        return self

    def check(self, kind: GuardKind) -> Any:
        """The guard's setting for `kind` (None when it is not of that kind)."""
        return self.json_schema if kind == "schema" else getattr(self, kind)

    @property
    def kind(self) -> GuardKind:
        return next(kind for kind in GUARD_KINDS if self.check(kind) is not None)

    def templates(self) -> Iterator[tuple[Path, str]]:
        """Every template of the guard with its path inside the guard."""
        if self.condition is not None:
            yield ("condition",), self.condition
        if self.judge is not None:
            yield ("judge", "prompt"), self.judge.prompt
        if self.on_fail == "replace":
            yield from _leaves(self.replacement, ("replacement",))


class InputGuardSpec(GuardSpec):
    """A guard on one of the run's inputs, checked before the first step: `message` (the default)
    or `parameters.<name>`. It cannot retry: nothing ran that could answer differently."""

    input: str = Field(default="message", pattern=GUARD_INPUT_PATTERN)

    @model_validator(mode="after")
    def _no_retry(self) -> InputGuardSpec:
        if self.on_fail == "retry":
            raise ValueError(
                "an input guard cannot retry (no step ran that could answer differently); "
                "use on_fail: fail or on_fail: replace"
            )
        return self

    @property
    def parameter(self) -> str | None:
        """The parameter the guard checks, None when it checks `message`."""
        return self.input.removeprefix("parameters.") if self.input != "message" else None


def _leaves(value: Any, path: Path) -> Iterator[tuple[Path, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, (*path, index))


def _check_schema(schema: dict[str, Any]) -> None:
    import jsonschema  # only schema guards pay for its import

    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(part) for part in exc.path)
        raise ValueError(
            f"not a valid JSON Schema{f' at {where!r}' if where else ''}: {exc.message}"
        ) from None
    found = _find_keyword(schema, _UNBOUNDED_SCHEMA_KEYWORDS)
    if found:
        raise ValueError(
            f"'{found}' is not supported in a guard's schema: its regular expressions could not be "
            "time-bounded (use a 'regex' guard, or 'pattern' on a property)"
        )


def _find_keyword(schema: Any, keywords: Sequence[str]) -> str | None:
    stack = [schema]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                if key in keywords:
                    return str(key)
                stack.append(child)
        elif isinstance(item, list):
            stack.extend(item)
    return None


class GuardRegistries(TypedDict):
    """What the server has, when the caller of the loader says so (None: not checked)."""

    known_functions: Collection[str] | None
    known_providers: Collection[str] | None
    function_signatures: Mapping[str, inspect.Signature] | None


def guard_problems(
    index: int,
    guards: Sequence[GuardSpec],
    order: Mapping[str, int],
    inputs: Collection[str] | None,
    *,
    known_functions: Collection[str] | None = None,
    known_providers: Collection[str] | None = None,
    function_signatures: Mapping[str, inspect.Signature] | None = None,
) -> Iterator[Problem]:
    """What is wrong with the guards of step `index` that their shape cannot say."""
    yield from _list_problems(
        ("steps", index, "guards"),
        guards,
        lambda ref: _step_ref_problem(ref, index, order),
        inputs,
        known_functions,
        known_providers,
        function_signatures,
    )


def valid_input_guards(raw: Any) -> list[InputGuardSpec | None]:
    """The raw `input_guards` of a flow that is invalid elsewhere, each validated on its own (None
    where it is invalid: that was reported already), so their other problems show in the same run."""
    if not isinstance(raw, list):
        return []
    guards: list[InputGuardSpec | None] = []
    for item in raw:
        try:
            guards.append(InputGuardSpec.model_validate(item))
        except ValidationError:
            guards.append(None)
    return guards


def input_guard_problems(
    guards: Sequence[InputGuardSpec | None],
    inputs: Collection[str] | None,
    *,
    known_functions: Collection[str] | None = None,
    known_providers: Collection[str] | None = None,
    function_signatures: Mapping[str, inspect.Signature] | None = None,
) -> Iterator[Problem]:
    """What is wrong with the flow's `input_guards` that their shape cannot say."""
    yield from _list_problems(
        ("input_guards",),
        guards,
        lambda ref: f"{step_reference(ref)}: input guards run before any step, so no step output exists",
        inputs,
        known_functions,
        known_providers,
        function_signatures,
    )
    for position, guard in enumerate(guards):
        name = guard.parameter if guard is not None else None
        if name is not None and inputs and name not in inputs:
            yield Problem(
                ("input_guards", position, "input"),
                f"parameters.{name} is not a declared input; declared inputs: {', '.join(inputs)}",
            )


def _list_problems(
    base: Path,
    guards: Sequence[GuardSpec | None],
    step_ref_problem: Callable[[str], str | None],
    inputs: Collection[str] | None,
    known_functions: Collection[str] | None,
    known_providers: Collection[str] | None,
    function_signatures: Mapping[str, inspect.Signature] | None,
) -> Iterator[Problem]:
    # _checks imports _spec, which imports this module.
    from noukai_server.flows._checks import CONTEXT_NAMES, argument_problems

    seen: dict[str, int] = {}
    for position, guard in enumerate(guards):
        if guard is None:
            continue
        where: Path = (*base, position)
        if guard.name in seen:
            text = f"duplicate guard name {guard.name!r}; guard [{seen[guard.name]}] already uses it"
            yield Problem((*where, "name"), text)
        seen.setdefault(guard.name, position)
        for field, source in guard.templates():
            yield from _template_problems((*where, *field), source, CONTEXT_NAMES, step_ref_problem, inputs)
        if guard.function is not None:
            if known_functions is not None and guard.function not in known_functions:
                text = f"unknown function {guard.function!r}"
                yield Problem(
                    (*where, "function"), f"{text}; registered functions: {_listed(known_functions)}"
                )
            elif function_signatures is not None and guard.function in function_signatures:
                signature = function_signatures[guard.function]
                for text in argument_problems(guard.function, signature, {GUARD_VALUE_NAME: None}):
                    yield Problem((*where, "function"), f"{text} (a guard function is called with 'value')")
        if guard.judge is not None and known_providers is not None:
            provider = guard.judge.model.partition(":")[0]
            if provider not in known_providers:
                yield Problem(
                    (*where, "judge", "model"),
                    f"unknown provider {provider!r} in {guard.judge.model!r}; "
                    f"available providers: {_listed(known_providers)} (write 'provider:model')",
                )


def _template_problems(
    path: Path,
    source: str,
    context_names: Sequence[str],
    step_ref_problem: Callable[[str], str | None],
    inputs: Collection[str] | None,
) -> Iterator[Problem]:
    try:
        info = inspect_template(source)
    except TemplateSyntaxError as exc:
        yield Problem(path, f"template syntax error at line {exc.lineno}: {exc.message}")
        return
    known = (*context_names, GUARD_VALUE_NAME)
    for name in sorted(info.names):
        if name not in known:
            yield Problem(path, f"unknown name {name!r}; available in a guard: {', '.join(known)}")
    for ref in info.step_refs:
        text = step_ref_problem(ref)
        if text:
            yield Problem(path, text)
    if inputs:
        for name in info.parameter_refs:
            if name not in inputs:
                yield Problem(
                    path, f"parameters.{name} is not a declared input; declared: {', '.join(inputs)}"
                )


def _step_ref_problem(ref: str, index: int, order: Mapping[str, int]) -> str | None:
    target = order.get(ref)
    where = step_reference(ref)
    if target is None:
        return f"{where} names no step"
    if target == index:
        return f"{where} is this step; a guard reads this step's output as 'value'"
    if target > index:
        return f"{where} is a later step (steps[{target}]); a guard can only read earlier steps"
    return None


def _listed(names: Collection[str]) -> str:
    return ", ".join(sorted(names)) or "none"
