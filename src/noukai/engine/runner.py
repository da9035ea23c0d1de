"""Runs a flow's steps in order: `when` skips, `foreach` loops, per-step accounting, and the step
events of the run's log. Run-level events (started, paused, completed) belong to the caller, which
knows the run's identity and transport; the engine only knows steps."""

from __future__ import annotations

import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from noukai.engine.functions import FunctionRegistry
from noukai.engine.outcome import Completed, Failed, Outcome, PausedBetweenSteps, StepFailure
from noukai.engine.sink import EventSink
from noukai.engine.state import RunInputs, RunState
from noukai.engine.steps import StepCall, StepExecutors, StepOutput
from noukai.flows import FlowSpec, StepSpec, TemplateEngine, TemplateError, build_context
from noukai.providers import ModelRegistry
from noukai.providers.pricing import format_cost
from noukai.types import events as ev
from noukai.types.errors import ErrorCode

_MICRO = Decimal(1_000_000)


class FlowEngine:
    def __init__(self, models: ModelRegistry, functions: FunctionRegistry, templates: TemplateEngine) -> None:
        self.models = models
        self.functions = functions
        self.templates = templates
        self._executors = StepExecutors(models, functions, templates)

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
    ) -> Outcome:
        """Run steps from `start_index`; with `pause_after`, stop once that step index is done."""
        steps = flow.steps
        for index in range(start_index, len(steps)):
            step = steps[index]
            failure = await self._run_step(flow, step, index, inputs, state, sink, run)
            if failure is not None:
                return failure
            await sink.checkpoint(index + 1, state)
            if pause_after is not None and index >= pause_after and index + 1 < len(steps):
                return PausedBetweenSteps(step.id, index, index + 1)
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
    ) -> Failed | None:
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
        base = {"stepId": step.id, "name": step.name, "stepIndex": index, "type": step.type}
        await sink.emit(ev.STEP_STARTED, dict(base))
        try:
            if not self._should_run(step, context):
                state.outputs[step.id] = None
                state.skipped.append(step.id)
                # A skip is still reported as step_completed: clients of the paced protocol
                # advance their cursor on step_completed, so a skip must look like a finished step.
                await sink.emit(
                    ev.STEP_COMPLETED,
                    {
                        **base,
                        "output": None,
                        "skipped": True,
                        "durationMs": 0,
                        "tokens": {"prompt": 0, "completion": 0, "total": 0},
                        "costUsd": format_cost(Decimal(0)),
                    },
                )
                return None
            result = await self._execute(flow, step, index, context, sink)
        except StepFailure as failure:
            await sink.emit(
                ev.STEP_ERROR,
                {
                    **base,
                    "error": {"code": failure.code, "message": failure.message},
                    "durationMs": _elapsed_ms(started),
                },
            )
            return Failed(step.id, index, failure.code, failure.message)
        state.outputs[step.id] = result.output
        state.result_step = step.id
        state.prompt_tokens += result.prompt_tokens
        state.completion_tokens += result.completion_tokens
        state.cost_micro_usd += int(result.cost * _MICRO)
        total = result.prompt_tokens + result.completion_tokens
        completed: dict[str, Any] = {
            **base,
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
        await sink.emit(ev.STEP_COMPLETED, completed)
        return None

    def _should_run(self, step: StepSpec, context: Mapping[str, Any]) -> bool:
        if step.when is None:
            return True
        if isinstance(step.when, bool):
            return step.when
        try:
            return self.templates.is_truthy(self.templates.render_value(step.when, context))
        except TemplateError as exc:
            raise StepFailure(
                ErrorCode.TEMPLATE_ERROR, f"step '{step.id}', field 'when': {exc.message}"
            ) from exc

    async def _execute(
        self,
        flow: FlowSpec,
        step: StepSpec,
        index: int,
        context: dict[str, Any],
        sink: EventSink,
    ) -> StepOutput:
        capture = flow.trace_capture_mode
        if step.foreach is None:
            return await self._executors.execute(StepCall(step, index, context, capture), sink)
        try:
            items = self.templates.render_value(step.foreach, context)
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
            loop_context = {**context, "item": item, "loop": {"index": loop_index, "length": len(items)}}
            call = StepCall(step, index, loop_context, capture, loop_index=loop_index)
            part = await self._executors.execute(call, sink)
            outputs.append(part.output)
            total.prompt_tokens += part.prompt_tokens
            total.completion_tokens += part.completion_tokens
            total.cost += part.cost
            total.model = part.model or total.model
            await sink.emit(
                ev.STEP_PROGRESS,
                {"stepId": step.id, "stepIndex": index, "loopIndex": loop_index, "output": part.output},
            )
        return total


def _elapsed_ms(start: float) -> int:
    return int((time.perf_counter() - start) * 1000)
