"""The flow document as typed, immutable models: FlowSpec and one model per step type."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from jinja2 import TemplateSyntaxError
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from noukai_server.flows._analysis import inspect_template
from noukai_server.flows._guards import GuardSpec, InputGuardSpec
from noukai_server.flows._paths import Path, format_path

TraceCaptureMode = Literal["off", "metadata_only", "redacted", "full"]
STEP_TYPES: tuple[str, ...] = ("llm", "agent", "template", "python", "flow")

SLUG_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
STEP_ID_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
# `provider:model`; model names may hold '/', ':' or '.', never whitespace.
MODEL_PATTERN = r"^[a-z][a-z0-9_-]*:\S+$"
FUNCTION_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.]*$"
# `org/project/slug`: the address of another flow (a `flow` step, or an agent's `flow:` tool).
_ADDRESS_PART = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
FLOW_ADDRESS_PATTERN = rf"^{_ADDRESS_PART}/{_ADDRESS_PART}/[a-z0-9][a-z0-9_-]{{0,63}}$"


def _json_problem(value: Any) -> str | None:
    stack: list[tuple[Path, Any]] = [((), value)]
    while stack:
        path, item = stack.pop()
        where = f" at '{format_path(path)}'" if path else ""
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    return f"key {key!r}{where} is not a string"
                stack.append(((*path, key), child))
        elif isinstance(item, list):
            stack.extend(((*path, i), child) for i, child in enumerate(item))
        elif isinstance(item, float) and not math.isfinite(item):
            return f"number {item!r}{where} is not allowed in JSON"
        elif item is not None and not isinstance(item, str | int | float | bool):
            return f"value{where} is a {type(item).__name__}; only JSON values are allowed"
    return None


def _json_data(value: Any) -> Any:
    # Flows are stored and served as JSON: YAML-only values (dates, sets, binary) must not slip in.
    problem = _json_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _template_or_bool(value: Any) -> Any:
    if value is not None and not isinstance(value, str | bool):
        raise ValueError(f"must be a template string or true/false, got {type(value).__name__}")
    return value


JsonData = Annotated[Any, AfterValidator(_json_data)]


class _Model(BaseModel):
    # Strict: a flow is a config language, so `max_tokens: "5"` or `when: 1` are mistakes, not coercions.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


InputType = Literal["string", "integer", "number", "boolean", "array", "object"]
INPUT_TYPES: tuple[str, ...] = ("string", "integer", "number", "boolean", "array", "object")
# An input is read as `parameters.<name>`, so its name is an identifier (letters, digits, '_').
INPUT_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"


def input_type_matches(kind: str, value: Any) -> bool:
    """Whether a (JSON) value is of an input type; booleans are not numbers, and vice versa."""
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "array":
        return isinstance(value, list)
    if kind == "object":
        return isinstance(value, dict)
    return False


class FlowInput(_Model):
    """One declared input of a flow: a parameter the flow reads as `parameters.<name>`.

    `required` defaults to true without a `default` and to false with one. A missing optional input
    takes its `default`, or null when it has none; a missing required one refuses the request.
    """

    type: InputType
    description: str | None = None
    default: JsonData = None
    required: bool | None = None

    @model_validator(mode="after")
    def _default_fits(self) -> FlowInput:
        if not self.has_default:
            return self
        if self.required:
            raise ValueError("an input with a default is optional; remove 'required: true' or the default")
        if self.default is not None and not input_type_matches(self.type, self.default):
            raise ValueError(f"default must be of type {self.type!r}, got {json_type_name(self.default)}")
        return self

    @property
    def has_default(self) -> bool:
        return "default" in self.model_fields_set

    @property
    def is_required(self) -> bool:
        return self.required if self.required is not None else not self.has_default


def json_type_name(value: Any) -> str:
    """The JSON name of a value's type, as a flow author or API caller would say it."""
    if value is None:
        return "null"
    for kind in ("boolean", "integer", "number", "string", "array", "object"):
        if input_type_matches(kind, value):
            return kind
    return type(value).__name__


MAX_ATTEMPTS_LIMIT = 20
MAX_BACKOFF_LIMIT_SECONDS = 300.0
REDACT_FIELD_PATTERN = r"^[A-Za-z0-9_.-]{1,128}$"


class RetryPolicy(_Model):
    """How a step retries transient provider failures (rate limits, timeouts, 5xx).

    Attempt n waits `min(max_backoff_seconds, initial_backoff_seconds * 2**(n-1))` scaled by a
    random jitter before attempt n+1. `max_attempts: 1` turns retries off. A step's `retry`
    inherits every field it does not set from the flow's `retry`, which inherits from these defaults.
    """

    max_attempts: int = Field(default=3, ge=1, le=MAX_ATTEMPTS_LIMIT)
    initial_backoff_seconds: float = Field(default=0.5, ge=0, le=MAX_BACKOFF_LIMIT_SECONDS)
    max_backoff_seconds: float = Field(default=20.0, ge=0, le=MAX_BACKOFF_LIMIT_SECONDS)

    @model_validator(mode="after")
    def _backoffs_ordered(self) -> RetryPolicy:
        fields = self.model_fields_set
        if {
            "initial_backoff_seconds",
            "max_backoff_seconds",
        } <= fields and self.initial_backoff_seconds > self.max_backoff_seconds:
            raise ValueError("initial_backoff_seconds must not exceed max_backoff_seconds")
        return self

    def merged_over(self, base: RetryPolicy | None) -> RetryPolicy:
        """This policy with the fields it does not set taken from `base`."""
        if base is None:
            return self
        values = {name: getattr(base, name) for name in base.model_fields_set}
        values.update({name: getattr(self, name) for name in self.model_fields_set})
        # Each side was validated on its own; a mix (say, a step's initial backoff above the
        # flow's maximum) is fine, since every wait is capped at the maximum.
        return RetryPolicy.model_construct(set(values), **values)


class HistoryWindow(_Model):
    """How much of a thread's history a run of this flow sees as `messages` (its newest messages
    that fit both limits; the new turn is always added whole). Tokens are estimated: the message's
    JSON text length / 4, plus 4 per message."""

    max_messages: int | None = Field(default=None, ge=0, le=100_000)
    max_tokens: int | None = Field(default=None, ge=0, le=10_000_000)


class _StepBase(_Model):
    id: str = Field(pattern=STEP_ID_PATTERN)
    name: str | None = None
    when: Annotated[str | bool | None, BeforeValidator(_template_or_bool)] = None
    foreach: str | None = None
    timeout_seconds: float | None = Field(default=None, gt=0)
    retry: RetryPolicy | None = None
    guards: list[GuardSpec] = []
    """Checks on the step's output, in order, before it completes (flows/_guards.py)."""

    def templates(self) -> Iterator[tuple[Path, str]]:
        """Every template of the step with its field path, e.g. `(("template", "a"), "{{ x }}")`."""
        if isinstance(self.when, str):
            yield ("when",), self.when
        if self.foreach is not None:
            yield ("foreach",), self.foreach
        yield from self._own_templates()

    def _own_templates(self) -> Iterator[tuple[Path, str]]:
        return iter(())


def _leaf_templates(value: Any, path: Path) -> Iterator[tuple[Path, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _leaf_templates(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaf_templates(item, (*path, index))


class _ModelStep(_StepBase):
    model: str = Field(pattern=MODEL_PATTERN)
    prompt: str
    system: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, gt=0)
    params: dict[str, JsonData] = {}

    def _own_templates(self) -> Iterator[tuple[Path, str]]:
        if self.system is not None:
            yield ("system",), self.system
        yield ("prompt",), self.prompt


class LlmStep(_ModelStep):
    """One model call; `output: json` asks the provider for JSON and parses the answer."""

    type: Literal["llm"] = "llm"
    output: Literal["text", "json"] = "text"


class AgentStep(_ModelStep):
    """A tool loop: the model may call the named server-side tools (and the request's client tools)."""

    type: Literal["agent"] = "agent"
    tools: list[str] = []
    max_iterations: int = Field(default=10, ge=1, le=100)


class TemplateStep(_StepBase):
    """Builds its output from a template string, or a dict/list whose string leaves are templates."""

    type: Literal["template"] = "template"
    template: JsonData

    def _own_templates(self) -> Iterator[tuple[Path, str]]:
        return _leaf_templates(self.template, ("template",))


class PythonStep(_StepBase):
    """Calls an operator-registered Python function with `args` (string leaves are templates)."""

    type: Literal["python"] = "python"
    function: str = Field(pattern=FUNCTION_PATTERN)
    args: dict[str, JsonData] = {}

    def _own_templates(self) -> Iterator[tuple[Path, str]]:
        return _leaf_templates(self.args, ("args",))


class FlowStep(_StepBase):
    """Runs another flow of the same org as a child run (`flow: org/project/slug`), with `inputs`
    (string leaves are templates) as its parameters and `message` as its message; its output is
    the child's result. `version`: unset, the latest published version (else the draft); 0, the
    draft; N, version N."""

    type: Literal["flow"] = "flow"
    flow: str = Field(pattern=FLOW_ADDRESS_PATTERN)
    version: int | None = Field(default=None, ge=0)
    inputs: dict[str, JsonData] = {}
    message: str | None = None

    def _own_templates(self) -> Iterator[tuple[Path, str]]:
        if self.message is not None:
            yield ("message",), self.message
        yield from _leaf_templates(self.inputs, ("inputs",))


StepSpec = Annotated[LlmStep | AgentStep | TemplateStep | PythonStep | FlowStep, Field(discriminator="type")]
STEP_MODELS: dict[str, type[_StepBase]] = {
    "llm": LlmStep,
    "agent": AgentStep,
    "template": TemplateStep,
    "python": PythonStep,
    "flow": FlowStep,
}


class FlowSpec(_Model):
    """A validated flow. Build it with `load_flow`: the constructor alone checks shape, not templates.

    Template context of every step: `message`, `messages`, `parameters`, `attachments`, `run` and
    `steps.<id>.output` / `steps.<id>.skipped` of earlier steps; a step with `foreach` also sees
    `item` and `loop` (`loop.index` counts from 0, `loop.length` is the number of items) in every
    field but `foreach` and `when`: both are decided once for the whole step, before the loop.
    """

    slug: str = Field(pattern=SLUG_PATTERN)
    name: str | None = None
    description: str | None = None
    trace_capture_mode: TraceCaptureMode = "full"
    redact_fields: list[Annotated[str, Field(pattern=REDACT_FIELD_PATTERN)]] = []
    """Keys whose values traces and sessions show as `[redacted]` (any depth, any case), in
    `redacted` capture mode; secret-looking keys and values are masked there anyway."""
    inputs: dict[Annotated[str, Field(pattern=INPUT_NAME_PATTERN)], FlowInput] = {}
    """The parameters the flow reads, by name. Empty (no `inputs:`): any parameters are accepted
    and nothing is checked. Declared: runs are refused a missing required input or a value of the
    wrong type, missing optional ones take their default, and templates may read only
    declared names under `parameters` (undeclared extra parameters are still accepted)."""
    retry: RetryPolicy | None = None
    step_timeout_seconds: float | None = Field(default=None, gt=0)
    """Each step attempt's timeout when the step sets no `timeout_seconds`; unset: the server's
    `[limits] step_timeout_seconds`. Clamped to the server's `max_step_timeout_seconds`."""
    run_timeout_seconds: float | None = Field(default=None, gt=0)
    """The run's total deadline, counted from its creation; unset: the server's
    `[limits] max_run_seconds`, which also caps it (larger values are clamped)."""
    history: HistoryWindow | None = None
    """The thread history window of a run started on a thread (`threadId`); all of it without."""
    input_guards: list[InputGuardSpec] = []
    """Checks on the run's inputs, in order, before the first step (flows/_guards.py)."""
    steps: list[StepSpec] = Field(min_length=1)

    def to_document(self) -> dict[str, Any]:
        """Canonical JSON-able document: defaults left out, `id` and `type` first in every step."""
        document = _without_defaults(self)
        document["steps"] = [_step_document(step) for step in self.steps]
        return document

    def step_index(self, step_id: str) -> int:
        """Position of the step with this id; KeyError when there is none."""
        for index, step in enumerate(self.steps):
            if step.id == step_id:
                return index
        raise KeyError(step_id)

    def retry_policy(self, step: StepSpec) -> RetryPolicy:
        """The retry policy in force for `step`: its own fields, then the flow's, then the defaults."""
        policy = step.retry or self.retry
        if policy is None:
            return RetryPolicy()
        return policy.merged_over(self.retry) if step.retry is not None else policy

    def uses_message(self) -> bool:
        """Whether any template of any step reads `message` or `messages`."""
        for step in self.steps:
            for _, source in step.templates():
                try:
                    names = inspect_template(source).names
                except TemplateSyntaxError:
                    # load_flow rejects these; a hand-built spec's broken template fails when run.
                    continue
                if "message" in names or "messages" in names:
                    return True
        return False


def _without_defaults(model: BaseModel) -> dict[str, Any]:
    dumped = model.model_dump(mode="json")
    document: dict[str, Any] = {}
    for name, info in type(model).model_fields.items():
        if name == "steps":
            continue
        value = getattr(model, name)
        if name == "inputs" and isinstance(model, FlowSpec):  # a `flow` step's inputs are plain data
            if value:
                # As written: a `default: null` the author set is not the same as no default.
                document[name] = {
                    key: item.model_dump(mode="json", exclude_unset=True) for key, item in value.items()
                }
        elif isinstance(value, RetryPolicy):
            # Only the fields the author set: an unset field inherits (from the flow's policy), so
            # writing the defaults out would change what the document means.
            document[name] = value.model_dump(mode="json", exclude_unset=True)
        elif info.is_required() or name == "type" or value != info.get_default(call_default_factory=True):
            document[name] = dumped[name]
    return document


def _step_document(step: _StepBase) -> dict[str, Any]:
    body = _without_defaults(step)
    return {"id": body.pop("id"), "type": body.pop("type"), **body}
