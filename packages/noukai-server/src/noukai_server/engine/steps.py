"""Executors for each step type. Each one turns a step spec plus a template context into an output,
streaming deltas through the sink while it works; failures are raised as `StepFailure`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, TypeVar

import orjson

from noukai.types import events as ev
from noukai.types.errors import ErrorCode
from noukai.types.events import StepInputFields, StepOutputFields, StepReasoningFields, StepStreamRef
from noukai_server.engine.agent import AgentCall, AgentLoop, AgentLoopState
from noukai_server.engine.capture import CAPTURES_CONTENT, json_size, redact
from noukai_server.engine.functions import FunctionRegistry
from noukai_server.engine.outcome import AwaitingTools, StepFailure
from noukai_server.engine.sink import EventSink
from noukai_server.engine.state import AgentPause, ToolResult
from noukai_server.engine.subflow import ChildRequest, bind_flow_tools, current_host
from noukai_server.engine.tool_source import ToolSource
from noukai_server.engine.tools import ToolRegistry
from noukai_server.flows import (
    FLOW_TOOL_PREFIX,
    AgentStep,
    FlowStep,
    LlmStep,
    PythonStep,
    StepSpec,
    TemplateEngine,
    TemplateError,
    TemplateStep,
    TraceCaptureMode,
)
from noukai_server.providers import (
    ChatMessage,
    ModelError,
    ModelRegistry,
    ModelRequest,
    ModelResponse,
    ReasoningDelta,
    TextDelta,
    ToolSpec,
)
from noukai_server.telemetry import tracing

T = TypeVar("T")


@dataclass(slots=True)
class StepOutput:
    output: Any
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: Decimal = Decimal(0)
    model: str | None = None


@dataclass(frozen=True, slots=True)
class StepCall:
    """Everything one execution of a step needs, besides the step spec itself."""

    step: StepSpec
    index: int
    context: Mapping[str, Any]
    capture: TraceCaptureMode
    loop_index: int | None = None
    attempt: int = 1
    redact_fields: tuple[str, ...] = ()
    client_tools: tuple[ToolSpec, ...] = ()
    tool_choice: Any = None
    resume: AgentPause | None = None
    """For an agent step waiting for tools: the stored loop to continue from."""
    tool_results: tuple[ToolResult, ...] = ()


class StepExecutors:
    def __init__(
        self,
        models: ModelRegistry,
        functions: FunctionRegistry,
        templates: TemplateEngine,
        tools: ToolSource | None = None,
    ) -> None:
        self._models = models
        self._functions = functions
        self._templates = templates
        self._tools: ToolSource = tools or ToolRegistry()
        self._agents = AgentLoop(self._tools)

    async def execute(self, call: StepCall, sink: EventSink) -> StepOutput:
        step = call.step
        if isinstance(step, LlmStep):
            return await self._llm(step, call, sink)
        if isinstance(step, TemplateStep):
            return StepOutput(
                await self._render(call, "template", self._templates.render_structure_async, step.template)
            )
        if isinstance(step, PythonStep):
            return await self._python(step, call, sink)
        if isinstance(step, AgentStep):
            return await self._agent(step, call, sink)
        if isinstance(step, FlowStep):
            return await self._flow(step, call, sink)
        raise StepFailure(
            ErrorCode.INVALID_TREE, f"step type {step.type!r} is not supported by this server yet"
        )

    async def _render(
        self,
        call: StepCall,
        field: str,
        render: Callable[[Any, Mapping[str, Any]], Awaitable[T]],
        source: Any,
    ) -> T:
        """Render one field off the event loop (see TemplateEngine); a failure fails the step."""
        try:
            return await render(source, call.context)
        except TemplateError as exc:
            # For a structure the error's field is the path inside it, e.g. `a[1].b`.
            where = field
            if exc.field and exc.field != field:
                where += exc.field if exc.field.startswith("[") else f".{exc.field}"
            raise StepFailure(
                ErrorCode.TEMPLATE_ERROR, f"step '{call.step.id}', field '{where}': {exc.message}"
            ) from exc

    async def _python(self, step: PythonStep, call: StepCall, sink: EventSink) -> StepOutput:
        if step.function not in self._functions:
            raise StepFailure(ErrorCode.INVALID_TREE, f"no function named {step.function!r}")
        arguments = await self._render(call, "args", self._templates.render_structure_async, step.args)
        await _emit_input(sink, call, {"function": step.function}, {"args": arguments})
        try:
            return StepOutput(await self._functions.call(step.function, arguments))
        except TypeError as exc:
            raise StepFailure(ErrorCode.FUNCTION_ERROR, f"{step.function}: {exc}") from exc
        except Exception as exc:  # the operator's function may raise anything
            raise StepFailure(
                ErrorCode.FUNCTION_ERROR, f"{step.function} raised {type(exc).__name__}: {exc}"
            ) from exc

    async def _llm(self, step: LlmStep, call: StepCall, sink: EventSink) -> StepOutput:
        render_text = self._templates.render_text_async
        system = await self._render(call, "system", render_text, step.system) if step.system else None
        prompt = await self._render(call, "prompt", render_text, step.prompt)
        content: dict[str, Any] = {"prompt": prompt}
        if system is not None:
            content["system"] = system
        await _emit_input(sink, call, {"model": step.model}, content)
        request = ModelRequest(
            model="",
            messages=(ChatMessage(role="user", content=prompt),),
            system=system,
            temperature=step.temperature,
            max_tokens=step.max_tokens,
            extra=dict(step.params),
            attempt=call.attempt,
        )
        try:
            resolved = self._models.resolve(step.model)
            request = _with_model(request, resolved.model)
            with tracing.model_call(resolved.provider, request) as traced:
                response = await self._stream(resolved.client.stream(request), call, sink)
                traced.response(response)
        except ModelError as exc:
            raise StepFailure(exc.code, exc.message, retryable=exc.retryable) from exc
        output: Any = response.text
        if step.output == "json":
            try:
                output = orjson.loads(response.text)
            except orjson.JSONDecodeError as exc:
                raise StepFailure(
                    ErrorCode.PROVIDER_BAD_REQUEST,
                    f"the model's answer is not valid JSON ({exc}); the step asks for output: json",
                ) from exc
        usage = response.usage
        return StepOutput(
            output=output,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cost=self._models.price_table.cost_usd(resolved.provider, resolved.model, usage),
            model=f"{resolved.provider}:{response.model or resolved.model}",
        )

    async def _agent(self, step: AgentStep, call: StepCall, sink: EventSink) -> StepOutput:
        flow_refs = [name for name in step.tools if name.startswith(FLOW_TOOL_PREFIX)]
        plain_refs = [name for name in step.tools if not name.startswith(FLOW_TOOL_PREFIX)]
        unknown = [name for name in plain_refs if name not in self._tools]
        if unknown:
            raise StepFailure(ErrorCode.INVALID_TREE, f"step '{step.id}': no server-side tool {unknown[0]!r}")
        render_text = self._templates.render_text_async
        system = await self._render(call, "system", render_text, step.system) if step.system else None
        prompt = await self._render(call, "prompt", render_text, step.prompt)
        if call.resume is None:
            content: dict[str, Any] = {"prompt": prompt}
            if system is not None:
                content["system"] = system
            tools = {"serverTools": list(step.tools), "clientTools": [t.name for t in call.client_tools]}
            await _emit_input(sink, call, {"model": step.model, **tools}, content)
        try:
            resolved = self._models.resolve(step.model)
        except ModelError as exc:
            raise StepFailure(exc.code, exc.message, retryable=exc.retryable) from exc

        async def model_call(request: ModelRequest) -> tuple[ModelResponse, Decimal]:
            request = replace(request, model=resolved.model, attempt=call.attempt)
            try:
                with tracing.model_call(resolved.provider, request) as traced:
                    response = await self._stream(resolved.client.stream(request), call, sink)
                    traced.response(response)
            except ModelError as exc:
                raise StepFailure(exc.code, exc.message, retryable=exc.retryable) from exc
            cost = self._models.price_table.cost_usd(resolved.provider, resolved.model, response.usage)
            return response, cost

        agent_call = AgentCall(
            step_id=step.id,
            step_index=call.index,
            model=resolved.model,
            system=system,
            prompt=prompt,
            server_tools=plain_refs,
            client_tools=list(call.client_tools),
            tool_choice=call.tool_choice,
            max_iterations=step.max_iterations,
            temperature=step.temperature,
            max_tokens=step.max_tokens,
            extra=dict(step.params),
            flow_tools=await bind_flow_tools(step.id, flow_refs),
            attempt=call.attempt,
            loop_index=call.loop_index,
        )
        resume = AgentLoopState.from_json(call.resume) if call.resume is not None else None
        result = await self._agents.run(
            agent_call, sink, model_call, resume=resume, results=call.tool_results
        )
        if isinstance(result, AgentLoopState):
            if call.loop_index is not None:
                raise StepFailure(
                    ErrorCode.TOOLS_IN_NON_SEQUENTIAL_STEP,
                    f"step '{step.id}' repeats with foreach, so it cannot pause for client tools",
                )
            raise AwaitingTools(result.to_json())
        return StepOutput(
            output=result.text,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            cost=result.cost,
            model=f"{resolved.provider}:{result.model or resolved.model}",
        )

    async def _flow(self, step: FlowStep, call: StepCall, sink: EventSink) -> StepOutput:
        """Run another flow as a child run; its result is the step's output. Its usage stays on
        the child run (charged there), so the step reports none of it."""
        host = current_host(step.id)
        render = self._templates.render_structure_async
        parameters = await self._render(call, "inputs", render, step.inputs)
        message = None
        if step.message is not None:
            message = await self._render(call, "message", self._templates.render_text_async, step.message)
        content: dict[str, Any] = {"inputs": parameters}
        if message is not None:
            content["message"] = message
        await _emit_input(sink, call, {"flow": step.flow, "version": step.version}, content)
        request = ChildRequest(
            step_id=step.id,
            step_index=call.index,
            attempt=call.attempt,
            key="0" if call.loop_index is None else str(call.loop_index),
            flow=step.flow,
            version=step.version,
            parameters=parameters,
            message=message,
        )
        return StepOutput((await host.run_child(request, sink)).output)

    async def _stream(self, stream: Any, call: StepCall, sink: EventSink) -> ModelResponse:
        final: ModelResponse | None = None
        # aclosing: a cancelled run must close the provider's HTTP stream, not leave it dangling.
        ref = _stream_ref(call)  # the same for every delta: built once per step
        async with aclosing(stream) as events:
            async for item in events:
                if isinstance(item, TextDelta):
                    if item.text:
                        output: StepOutputFields = {**ref, "outputData": item.text}
                        await sink.emit(ev.STEP_OUTPUT, output)
                elif isinstance(item, ReasoningDelta):
                    reasoning: StepReasoningFields = {**ref, "delta": item.text}
                    await sink.emit(ev.STEP_REASONING, reasoning)
                elif isinstance(item, ModelResponse):
                    final = item
        if final is None:
            raise StepFailure(ErrorCode.PROVIDER_ERROR, "the model stream ended without an answer")
        return final


def _with_model(request: ModelRequest, model: str) -> ModelRequest:
    return ModelRequest(
        model=model,
        messages=request.messages,
        system=request.system,
        temperature=request.temperature,
        max_tokens=request.max_tokens,
        tools=request.tools,
        tool_choice=request.tool_choice,
        extra=request.extra,
        attempt=request.attempt,
    )


async def _emit_input(
    sink: EventSink, call: StepCall, metadata: dict[str, Any], content: dict[str, Any]
) -> None:
    """`step_input`: what the step was given, as far as the flow's capture mode allows it to be
    kept (a `redacted` flow's secrets never reach the log), and its full size in bytes."""
    data = {**metadata, **content}
    size = json_size(data)
    if call.capture == "redacted":
        data = {**metadata, **redact(content, call.redact_fields)}
    elif call.capture not in CAPTURES_CONTENT:
        data = dict(metadata)
    payload: StepInputFields = {**_stream_ref(call), "inputData": data, "inputSizeBytes": size}
    await sink.emit(ev.STEP_INPUT, payload)


def _stream_ref(call: StepCall) -> StepStreamRef:
    """The keys every streamed event of this step call starts with."""
    ref: StepStreamRef = {"stepId": call.step.id, "stepIndex": call.index, "attempt": call.attempt}
    if call.loop_index is not None:
        ref["loopIndex"] = call.loop_index
    return ref
