"""Runs a flow's steps in order: `when` skips, `foreach` loops, retries, per-step accounting, and
the step events of the run's log. Run-level events (started, paused, completed) belong to the
caller, which knows the run's identity and transport; the engine only knows steps.

A step runs as one or more *attempts*. A transient provider failure ends an attempt with
`step_retrying` and, after a backoff, the next attempt starts with its own `step_started`; every
step event carries its `attempt`. A caller that finds a step interrupted (its worker was lost)
starts the engine at that step with `attempt` = the next number and `interrupted=True`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypedDict

from noukai.types import events as ev
from noukai.types.errors import ErrorCode
from noukai.types.events import (
    StepCompletedFields,
    StepErrorDetail,
    StepErrorFields,
    StepProgressFields,
    StepRetryingFields,
    StepStartedFields,
)
from noukai_server.engine.capture import redact
from noukai_server.engine.functions import FunctionRegistry
from noukai_server.engine.guards import GuardChecks
from noukai_server.engine.outcome import (
    AwaitingTools,
    Completed,
    Failed,
    Outcome,
    PausedBetweenSteps,
    PausedForTools,
    StepFailure,
    Yielded,
)
from noukai_server.engine.retry import MIN_ATTEMPTS_AFTER_INTERRUPTION, backoff_seconds
from noukai_server.engine.sink import CreditsExhausted, EventSink, UnstorableValue
from noukai_server.engine.state import AgentPause, RunInputs, RunState, ToolResult
from noukai_server.engine.steps import StepCall, StepExecutors, StepOutput
from noukai_server.engine.timeouts import StepTimeouts
from noukai_server.engine.tool_source import ToolSource
from noukai_server.engine.tools import ToolRegistry
from noukai_server.flows import FlowSpec, StepSpec, TemplateEngine, TemplateError, build_context
from noukai_server.providers import ModelRegistry, ToolSpec
from noukai_server.providers.pricing import format_cost
from noukai_server.telemetry import tracing


class FlowEngine:
    def __init__(
        self,
        models: ModelRegistry,
        functions: FunctionRegistry,
        templates: TemplateEngine,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
        tools: ToolSource | None = None,
        step_timeouts: StepTimeouts | None = None,
    ) -> None:
        self.models = models
        self.functions = functions
        self.templates = templates
        self.tools: ToolSource = tools or ToolRegistry()
        self._executors = StepExecutors(models, functions, templates, self.tools)
        self._guards = GuardChecks(models, functions, templates)
        self._sleep = sleep
        self._jitter = jitter
        self.step_timeouts = step_timeouts or StepTimeouts()
        """Every step attempt runs under one (`StepTimeouts.for_step`)."""

    async def run(
        self,
        flow: FlowSpec,
        inputs: RunInputs,
        state: RunState,
        sink: EventSink,
        *,
        run: Mapping[str, Any],
        start_index: int = 0,
        pause_after: int | None = None,
        attempt: int = 1,
        interrupted: bool = False,
        stop_between_steps: Callable[[], bool] | None = None,
    ) -> Outcome:
        """Run steps from `start_index`; with `pause_after`, stop once that step index is done.

        The step at `start_index` runs as attempt `attempt`; `interrupted` says the attempt before
        it never finished (it is reported as such, and counts against the step's attempts).
        `stop_between_steps` is asked after each step's checkpoint is stored: True ends the call
        with `Yielded` (a draining worker hands the run on at a clean point).
        """
        steps = flow.steps
        if flow.input_guards:  # guards hook (engine/guards.py): the first segment checks, later ones re-apply
            fresh = start_index == 0 and state.agent is None  # not resuming step 0's pause for tools
            refused = await self._guards.check_inputs(flow, inputs, state, sink, run, fresh=fresh)
            if refused is not None:
                return refused
        for index in range(start_index, len(steps)):
            step = steps[index]
            first = _Attempt(attempt, interrupted) if index == start_index else _Attempt(1, False)
            failure = await self._run_step(flow, step, index, inputs, state, sink, run, first)
            if failure is not None:
                return failure
            try:
                await sink.checkpoint(index + 1, state)
            except CreditsExhausted as exhausted:
                if index + 1 < len(steps):  # after the last step, the run simply completes
                    following = steps[index + 1]
                    message = f"{exhausted}: step '{following.id}' and the ones after it were not run"
                    return Failed(following.id, index + 1, ErrorCode.CREDITS_EXHAUSTED.value, message)
            if pause_after is not None and index >= pause_after and index + 1 < len(steps):
                return PausedBetweenSteps(step.id, index, index + 1)
            if stop_between_steps is not None and index + 1 < len(steps) and stop_between_steps():
                return Yielded(index + 1)
        return Completed(state.result)

    async def _run_step(
        self,
        flow: FlowSpec,
        step: StepSpec,
        index: int,
        inputs: RunInputs,
        state: RunState,
        sink: EventSink,
        run: Mapping[str, Any],
        first: _Attempt,
    ) -> Failed | PausedForTools | None:
        """All attempts of one step: None once it completed (or was skipped), else its failure or
        its pause for client tool results."""
        policy = flow.retry_policy(step)
        attempt = first.number
        if first.interrupted:
            lost: StepErrorDetail = {
                "code": ErrorCode.STEP_INTERRUPTED.value,
                "message": f"attempt {attempt - 1} of step '{step.id}' stopped when its worker was lost",
            }
            # Keys spelled out (not spread from a `StepRef`): mypy then checks that each optional
            # key of the event is left out on purpose.
            if attempt > max(policy.max_attempts, MIN_ATTEMPTS_AFTER_INTERRUPTION):
                gone: StepErrorFields = {
                    "stepId": step.id,
                    "name": step.name,
                    "stepIndex": index,
                    "type": step.type,
                    "attempt": attempt - 1,
                    "error": lost,
                }
                await sink.emit(ev.STEP_ERROR, gone)
                return Failed(step.id, index, lost["code"], lost["message"])
            again: StepRetryingFields = {
                "stepId": step.id,
                "name": step.name,
                "stepIndex": index,
                "type": step.type,
                "attempt": attempt - 1,
                "nextAttempt": attempt,
                "error": lost,
                "backoffMs": 0,
            }
            await sink.emit(ev.STEP_RETRYING, again)
        while True:
            started = time.perf_counter()
            try:
                model = getattr(step, "model", None)
                resumed = _resumes(state, step.id)
                with tracing.step_attempt(
                    flow, step, index, attempt, model=model, resumed=resumed, redact=redact
                ) as traced:
                    try:
                        await self._attempt(flow, step, index, inputs, state, sink, run, attempt)
                    except UnstorableValue as refused:
                        raise _unstorable_failure(step, refused) from refused
                    except AwaitingTools:
                        traced.paused()
                        raise
                return None
            except AwaitingTools as waiting:
                state.agent = {
                    "stepId": step.id,
                    "stepIndex": index,
                    "attempt": attempt,
                    "pause": waiting.pause,
                }
                return PausedForTools(step.id, index, attempt, waiting.pause)
            except StepFailure as failure:
                error: StepErrorFields = {
                    "stepId": step.id,
                    "name": step.name,
                    "stepIndex": index,
                    "type": step.type,
                    "attempt": attempt,
                    "error": {"code": failure.code, "message": failure.message},
                    "durationMs": _elapsed_ms(started),
                }
                if failure.loop_index is not None:
                    error["loopIndex"] = failure.loop_index
                if not failure.retryable or attempt >= policy.max_attempts:
                    await sink.emit(ev.STEP_ERROR, error)
                    return Failed(step.id, index, failure.code, failure.message)
                delay = backoff_seconds(policy, attempt, self._jitter())
                retrying: StepRetryingFields = {
                    **error,
                    "nextAttempt": attempt + 1,
                    "backoffMs": round(delay * 1000),
                }
                await sink.emit(ev.STEP_RETRYING, retrying)
                await self._sleep(delay)
                attempt += 1

    async def _attempt(
        self,
        flow: FlowSpec,
        step: StepSpec,
        index: int,
        inputs: RunInputs,
        state: RunState,
        sink: EventSink,
        run: Mapping[str, Any],
        attempt: int,
    ) -> None:
        """One attempt of a step; raises StepFailure when it fails."""
        started = time.perf_counter()
        context = build_context(
            message=inputs.message,
            messages=inputs.messages,
            parameters=inputs.parameters,
            attachments=inputs.attachments,
            outputs=state.outputs,
            skipped=state.skipped,
            run=run,
        )
        tool_call = _tool_call_fields(inputs, state, step.id)
        if tool_call.get("resume") is None:  # a resumed agent step already reported its start
            step_started: StepStartedFields = {
                "stepId": step.id,
                "name": step.name,
                "stepIndex": index,
                "type": step.type,
                "attempt": attempt,
            }
            await sink.emit(ev.STEP_STARTED, step_started)
        if not await self._should_run(step, context):
            state.outputs[step.id] = None
            if step.id not in state.skipped:
                state.skipped.append(step.id)
            # A skip is still reported as step_completed: clients of the paced protocol
            # advance their cursor on step_completed, so a skip must look like a finished step.
            skipped: StepCompletedFields = {
                "stepId": step.id,
                "name": step.name,
                "stepIndex": index,
                "type": step.type,
                "attempt": attempt,
                "output": None,
                "skipped": True,
                "durationMs": 0,
                "tokens": {"prompt": 0, "completion": 0, "total": 0},
                "costUsd": format_cost(Decimal(0)),
            }
            await sink.emit(ev.STEP_COMPLETED, skipped)
            return
        result = await self._execute_within_timeout(flow, step, index, context, sink, attempt, tool_call)
        total = result.prompt_tokens + result.completion_tokens
        completed: StepCompletedFields = {
            "stepId": step.id,
            "name": step.name,
            "stepIndex": index,
            "type": step.type,
            "attempt": attempt,
            "output": result.output,
            "durationMs": _elapsed_ms(started),
            "tokens": {
                "prompt": result.prompt_tokens,
                "completion": result.completion_tokens,
                "total": total,
            },
            "costUsd": format_cost(result.cost),
        }
        if result.model is not None:
            completed["model"] = result.model
        # Emitted before the state takes the output: an output the log refuses (UnstorableValue)
        # fails the step and never reaches the run's stored state or result.
        await sink.emit(ev.STEP_COMPLETED, completed)
        state.agent = None
        state.outputs[step.id] = result.output
        state.result_step = step.id
        state.prompt_tokens += result.prompt_tokens
        state.completion_tokens += result.completion_tokens
        state.cost_usd += result.cost

    async def _should_run(self, step: StepSpec, context: Mapping[str, Any]) -> bool:
        if step.when is None:
            return True
        if isinstance(step.when, bool):
            return step.when
        try:
            return self.templates.is_truthy(await self.templates.render_value_async(step.when, context))
        except TemplateError as exc:
            raise StepFailure(
                ErrorCode.TEMPLATE_ERROR, f"step '{step.id}', field 'when': {exc.message}"
            ) from exc

    async def _execute_within_timeout(
        self,
        flow: FlowSpec,
        step: StepSpec,
        index: int,
        context: dict[str, Any],
        sink: EventSink,
        attempt: int,
        tool_call: _ToolCallFields,
    ) -> StepOutput:
        """`_execute`, stopped after the step's timeout (`StepTimeouts.for_step`: the whole
        attempt, every model call, tool call, MCP call and `foreach` iteration in it). An in-flight
        model stream is closed by the cancellation; a sync python function's thread is abandoned
        (see FunctionRegistry)."""
        timeout = self.step_timeouts.for_step(flow, step)
        deadline = asyncio.timeout(timeout.seconds)
        try:
            async with deadline:
                result = await self._execute(flow, step, index, context, sink, attempt, tool_call)
                if step.guards:  # guards hook (engine/guards.py): within the attempt's timeout
                    await self._guards.check_output(step, index, attempt, result, context, sink)
                return result
        except TimeoutError:
            if not deadline.expired():  # a TimeoutError of the step's own making is its own error
                raise
            raise StepFailure(
                ErrorCode.STEP_TIMEOUT,
                f"step '{step.id}' attempt {attempt} ran past {timeout.source} "
                f"({timeout.seconds:g} s) and was stopped",
                retryable=True,
            ) from None

    async def _execute(
        self,
        flow: FlowSpec,
        step: StepSpec,
        index: int,
        context: dict[str, Any],
        sink: EventSink,
        attempt: int,
        tool_call: _ToolCallFields,
    ) -> StepOutput:
        capture = flow.trace_capture_mode
        redact_fields = tuple(flow.redact_fields)
        if step.foreach is None:
            call = StepCall(
                step,
                index,
                context,
                capture,
                attempt=attempt,
                redact_fields=redact_fields,
                **tool_call,
            )
            return await self._executors.execute(call, sink)
        try:
            items = await self.templates.render_value_async(step.foreach, context)
        except TemplateError as exc:
            raise StepFailure(
                ErrorCode.TEMPLATE_ERROR, f"step '{step.id}', field 'foreach': {exc.message}"
            ) from exc
        if not isinstance(items, list | tuple):
            raise StepFailure(
                ErrorCode.TEMPLATE_ERROR,
                f"step '{step.id}', field 'foreach': expected a list, got {type(items).__name__}",
            )
        outputs: list[Any] = []
        total = StepOutput(output=outputs)
        for loop_index, item in enumerate(items):
            started = time.perf_counter()
            loop_context = {**context, "item": item, "loop": {"index": loop_index, "length": len(items)}}
            call = StepCall(
                step,
                index,
                loop_context,
                capture,
                loop_index=loop_index,
                attempt=attempt,
                redact_fields=redact_fields,
                client_tools=tool_call.get("client_tools", ()),
                tool_choice=tool_call.get("tool_choice"),
            )
            try:
                part = await self._executors.execute(call, sink)
            except StepFailure as failure:
                failure.loop_index = loop_index
                raise
            outputs.append(part.output)
            total.prompt_tokens += part.prompt_tokens
            total.completion_tokens += part.completion_tokens
            total.cost += part.cost
            total.model = part.model or total.model
            progress: StepProgressFields = {
                "stepId": step.id,
                "stepIndex": index,
                "attempt": attempt,
                "loopIndex": loop_index,
                "output": part.output,
                "durationMs": _elapsed_ms(started),
                "tokens": {
                    "prompt": part.prompt_tokens,
                    "completion": part.completion_tokens,
                    "total": part.prompt_tokens + part.completion_tokens,
                },
                "costUsd": format_cost(part.cost),
            }
            if part.model is not None:
                progress["model"] = part.model
            await sink.emit(ev.STEP_PROGRESS, progress)
        return total


class _ToolCallFields(TypedDict, total=False):
    """`StepCall`'s tool arguments."""

    client_tools: tuple[ToolSpec, ...]
    tool_choice: Any
    resume: AgentPause | None
    tool_results: tuple[ToolResult, ...]


def _tool_call_fields(inputs: RunInputs, state: RunState, step_id: str) -> _ToolCallFields:
    """What an agent step needs from the request (client tools) and from a stored pause."""
    fields: _ToolCallFields = {
        "client_tools": tuple(client_tool_specs(inputs.tools)),
        "tool_choice": inputs.tool_choice,
        "resume": None,
    }
    agent = state.agent
    results = None if agent is None or agent["stepId"] != step_id else agent.get("results")
    if agent is not None and results is not None:
        fields["resume"] = agent["pause"]
        fields["tool_results"] = tuple(results)
    return fields


def _resumes(state: RunState, step_id: str) -> bool:
    """Whether the step's attempt continues its pause for client tools (their results came)."""
    agent = state.agent
    return agent is not None and agent["stepId"] == step_id and agent.get("results") is not None


def client_tool_specs(tools: list[dict[str, Any]] | None) -> list[ToolSpec]:
    """The request's tools (OpenAI function format, validated by the API) as model tool specs."""
    specs = []
    for tool in tools or ():
        function = tool.get("function") or {}
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        specs.append(ToolSpec(function["name"], function.get("description") or "", parameters))
    return specs


@dataclass(frozen=True, slots=True)
class _Attempt:
    number: int
    interrupted: bool


def _unstorable_failure(step: StepSpec, refused: UnstorableValue) -> StepFailure:
    """A step whose output (or input, progress, tool call) the log cannot store fails at once:
    running it again would produce the same value."""
    failure = StepFailure(
        ErrorCode.OUTPUT_NOT_SERIALIZABLE,
        f"step '{step.id}' produced a value the run's log cannot store as JSON "
        f"({refused.event_type} at {refused.where}): {refused.problem}",
        retryable=False,
    )
    failure.loop_index = refused.loop_index
    return failure


def _elapsed_ms(start: float) -> int:
    return int((time.perf_counter() - start) * 1000)
