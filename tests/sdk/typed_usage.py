"""Every public name of `noukai`, used the way an application would. Never run: `test_public_api`
type-checks it with `mypy --strict`, so a change to the SDK's types that breaks callers fails."""

from __future__ import annotations

import asyncio
from typing import Any

import noukai
from noukai import (
    APIConnectionError,
    APITimeoutError,
    AsyncFlow,
    AsyncJob,
    AsyncNoukai,
    AsyncPausedResult,
    AsyncRun,
    AsyncRuns,
    AsyncStream,
    AuthenticationError,
    CancelResult,
    ExecuteResult,
    Flow,
    FlowCompleted,
    FlowExecutionError,
    FlowNotFoundError,
    FlowTransfer,
    GuardTripped,
    InsufficientCreditsError,
    Job,
    JobAccepted,
    JobStatus,
    Noukai,
    NoukaiError,
    PausedResult,
    PermissionDeniedError,
    RateLimitError,
    ReplayDisabledError,
    ReplayError,
    ReplayForbiddenError,
    ReplayInvalidSessionError,
    ReplayLeftoverError,
    ReplayMissError,
    ReplayNoSnapshotsError,
    ReplaySessionExpiredError,
    ReplaySessionNotFoundError,
    Run,
    RunCancelled,
    RunFailed,
    RunInfo,
    Runs,
    RunStarted,
    RunSummary,
    StepAttempts,
    StepCompleted,
    StepFailed,
    StepInput,
    StepOutput,
    StepPaused,
    StepProgress,
    StepReasoning,
    StepRetrying,
    StepStarted,
    StepTrace,
    Stream,
    StreamEvent,
    SubflowEvent,
    TokenUsage,
    ToolCallCompleted,
    ToolCallLimitError,
    ToolCallsRequired,
    ToolCallStarted,
    Trace,
    TraceScope,
    UnknownEvent,
    trace,
    trace_scope,
    trace_scope_sync,
)
from noukai.adapters.fastapi import NoukaiTraceMiddleware

VERSION: str = noukai.__version__


def my_tools(tool_calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"tool_call_id": call["id"], "output": "sunny"} for call in tool_calls]


async def my_async_tools(tool_calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return my_tools(tool_calls)


def log_handler(event: dict[str, Any]) -> None:
    print(event["phase"])


def describe(event: StreamEvent) -> str:
    match event:
        case RunStarted(execution_id=execution_id):
            return f"run {execution_id}"
        case StepStarted() | StepInput() | StepReasoning() | StepProgress() | StepPaused():
            return event.type
        case StepOutput():
            return event.text
        case StepCompleted(tokens=TokenUsage(total=total)):
            return f"{event.step_id}: {event.output!r} ({event.duration_ms} ms, {total} tokens)"
        case StepCompleted():
            return event.step_id
        case StepFailed() | RunFailed() | StepRetrying():
            return f"{event.code}: {event.message}"
        case ToolCallsRequired():
            return str(len(event.tool_calls))
        case ToolCallStarted() | ToolCallCompleted():
            return str(event.tool_call_id)
        case FlowCompleted(result=result):
            return str(result)
        case RunCancelled():
            return "cancelled"
        case GuardTripped(guard=guard, reason=reason):
            return f"{guard}: {reason}"
        case SubflowEvent(child_run_id=child, depth=depth):
            return f"{child} (depth {depth}): {event.child_event().type}"
        case FlowTransfer(flow=flow, child_run_id=child):
            return f"{flow} as {child}"
        case UnknownEvent(type=name, data=data):
            return f"{name}: {data}"


def sync_usage() -> None:
    with Noukai(
        api_key="nk_...",
        env="production",
        org="acme",
        project="spelling",
        timeout=300.0,
        max_retries=1,
        log_handler=log_handler,
        log_payloads=False,
    ) as client:
        flow: Flow = client.flow("grade-3")
        client.flow("other-org/x/grade-3")
        client.flow(org="acme", project="spelling", slug="grade-3")
        result = flow.execute(
            message="Input text",
            parameters={"difficulty": "hard"},
            block_overrides={"step-id": {"temperature": 0.5}},
            attachments=[{"url": "https://x", "mime_type": "image/png"}],
            trace=False,
            version="draft",
            timeout=60.0,
            tools=[{"type": "function", "function": {"name": "get_weather"}}],
            tool_choice="auto",
            tool_handler=my_tools,
            max_tool_rounds=10,
            session_id="s",
            idempotency_key="k",
        )
        if result.status == "tool_calls_required":
            assert isinstance(result, PausedResult)
            resumed: ExecuteResult | PausedResult = result.resume(tool_results=my_tools(result.tool_calls))
            print(resumed.status)
        else:
            final: ExecuteResult = result
            print(final.result, final.output, final.execution_id, final.session_id)
        flow.execute(messages=[{"role": "user", "content": "hi"}], version=3)
        steps: Stream[StepCompleted] = flow.steps(message="...")
        for step in steps:
            print(step.name, step.output, step.duration_ms, step.tokens)
        events: Stream[StreamEvent] = flow.events(message="...", run_remaining=True)
        with events:
            for event in events:
                print(describe(event), events.execution_id, events.last_event_id)
                if isinstance(event, ToolCallsRequired):
                    event.resume(tool_results=[])
        job: Job = flow.execute_async(message="...", trace=True, version="production")
        accepted: JobAccepted = job.accepted
        status: JobStatus = job.wait(timeout=600.0, poll_interval=5.0)
        snapshot: JobStatus = job.poll()
        print(accepted.status, status.result, snapshot.done)
        run: Run = flow.run("exec_abc123")
        whole: Trace = run.trace()
        summary: RunSummary = whole.summary
        latest: StepTrace = run.step_trace("step-1", attempt="latest")
        numbered: StepTrace = run.step_trace("step-1", attempt=2, loop_index=0)
        attempts: StepAttempts = run.step_trace("step-1", attempt="all")
        print(summary, latest, numbered, attempts.attempts, whole.steps)
        for live in run.live_trace():
            print(live)
        runs: Runs = client.runs
        for resumed_event in runs.events("exec_abc123", since_id=12, types=["step_completed"]):
            print(resumed_event.seq)
        info: RunInfo = runs.retrieve("exec_abc123")
        cancelled: CancelResult = run.cancel()
        print(info.terminal, cancelled.cancel_requested, run.retrieve().status, run.events(since_id=3))
        with trace_scope_sync(client, replay_session_id="abc-123-def") as scope:
            scoped: TraceScope = scope
            print(scoped.session_id, scoped.mode)
    manual = Noukai()
    try:
        print(manual.base_url, manual.org, manual.project, manual.timeout, manual.max_retries)
    finally:
        manual.close()


@trace
def traced_sync(message: str) -> str:
    return message


@trace
async def handle(client: AsyncNoukai, message: str) -> dict[str, Any]:
    result = await client.flow("grade-3").execute(message=message, tool_handler=my_async_tools)
    return {"output": result.result, "session_id": result.session_id}


async def async_usage() -> None:
    async with AsyncNoukai(org="acme", project="spelling") as client:
        flow: AsyncFlow = client.flow("grade-3")
        result = await flow.execute(message="...", tools=[], tool_handler=my_tools)
        while result.status == "tool_calls_required":
            assert isinstance(result, AsyncPausedResult)
            result = await result.resume(tool_results=await my_async_tools(result.tool_calls))
        print(result.result)
        steps: AsyncStream[StepCompleted] = flow.steps(message="...")
        async for step in steps:
            print(step.output)
        async with flow.events(message="...") as events:
            async for event in events:
                if isinstance(event, ToolCallsRequired):
                    await event.resume(tool_results=[])
        job: AsyncJob = await flow.execute_async(message="...")
        status: JobStatus = await job.wait(timeout=600.0)
        print(status.status, (await job.poll()).error)
        run: AsyncRun = flow.run("exec_abc123")
        print(await run.trace(), await run.step_trace("s", attempt="all"), await run.step_trace("s"))
        async for live in run.live_trace():
            print(live)
        runs: AsyncRuns = client.runs
        async for resumed in runs.events(
            "exec_abc123", since_id=None, heartbeat_seconds=15.0, max_reconnects=5
        ):
            print(resumed)
        print(await runs.retrieve("x"), await runs.cancel("x"), await run.cancel(), await run.retrieve())
        async with trace_scope(transport=client._transport, replay_session_id="abc-123-def"):
            await client.flow("grade-3").execute(message="any input")
        print(await handle(client, "hi"), traced_sync("x"))
    manual = AsyncNoukai()
    await manual.aclose()


def errors() -> None:
    try:
        sync_usage()
    except AuthenticationError as err:
        print(err.www_authenticate)
    except RateLimitError as err:
        print(err.retry_after)
    except FlowExecutionError as err:
        if err.code == "BYOK_KEY_REJECTED":
            print(err.status_code, err.execution_id, err.request_id, err.response_body, err.step_id)
        raise
    except (PermissionDeniedError, FlowNotFoundError, InsufficientCreditsError) as err:
        print(err.message)
    except APITimeoutError as err:
        print(err)
    except APIConnectionError as err:
        print(err)
    except ToolCallLimitError as err:
        print(err.code)
    except (
        ReplayMissError,
        ReplayLeftoverError,
        ReplayForbiddenError,
        ReplaySessionNotFoundError,
        ReplaySessionExpiredError,
        ReplayInvalidSessionError,
        ReplayNoSnapshotsError,
        ReplayDisabledError,
    ) as err:
        print(err)
    except ReplayError as err:
        print(err)
    except NoukaiError as err:
        print(err)


def adapters() -> None:
    from fastapi import FastAPI

    app = FastAPI()
    app.add_middleware(NoukaiTraceMiddleware, client=AsyncNoukai())


if __name__ == "__main__":  # pragma: no cover
    asyncio.run(async_usage())
