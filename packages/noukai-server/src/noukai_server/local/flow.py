"""`load_flow` and `LocalFlow`: a flow run in the caller's process by the server's engine, with
no server, database or network of its own.

Every run executes on the flow's engine loop (a daemon thread: `loop_thread.py`); the sync calls
wait on a thread-safe queue and the async ones on an asyncio queue of the caller's loop, so
neither ever runs a loop on the caller's thread.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
import uuid
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from noukai import StreamEvent
from noukai._constants import DEFAULT_MAX_TOOL_ROUNDS
from noukai._tools import AsyncToolHandler, ToolHandler, check_sync_handler
from noukai_server.engine.state import ToolResult
from noukai_server.flows import FlowSpec
from noukai_server.local import driver
from noukai_server.local.assembly import EngineParts, ToolsOption, build_parts, read_config
from noukai_server.local.driver import END, LocalRun
from noukai_server.local.granularity import Granularity, checked_granularity
from noukai_server.local.inputs import CallInputs, prepared
from noukai_server.local.log import LogEntry
from noukai_server.local.log_file import LogFile
from noukai_server.local.loop_thread import LoopThread
from noukai_server.local.result import LocalResult, result_of
from noukai_server.local.source import FlowSource, read_flow
from noukai_server.local.stream import AsyncLocalStream, LocalStream, async_events, sync_events, typed
from noukai_server.mcp.config import McpServerConfig
from noukai_server.providers.registry import NamedProvider

STOP_WAIT_SECONDS = 10.0
"""How long `stop` waits, by default, for the run's `run_cancelled` to be written."""


def load_flow(
    source: FlowSource,
    *,
    functions: Mapping[str, Callable[..., Any]] | None = None,
    tools: ToolsOption | None = None,
    providers: Mapping[str, NamedProvider] | None = None,
    mcp_servers: Mapping[str, McpServerConfig] | None = None,
    config: str | os.PathLike[str] | None = None,
    granularity: Granularity = "all",
    log_path: str | os.PathLike[str] | None = None,
) -> LocalFlow:
    """Load and check a flow to run in this process.

    `source` is a file path, a flow document's YAML or JSON text, or its parsed dict. `config` is
    a noukai.toml whose providers, functions, tools, MCP servers and limits apply; `functions`,
    `tools`, `providers` and `mcp_servers` add the caller's own beside them. `granularity` is
    the default of `stream`/`astream`. With `log_path`, every run's events are also kept in
    that SQLite file (`LocalFlow.events` reads them back). A document a server would refuse
    raises the same `FlowValidationError` (`.code` INVALID_TREE or NO_STEPS, `.issues` located).
    """
    default = checked_granularity(granularity)
    parts = build_parts(
        read_config(config),
        functions=functions,
        tools=tools,
        providers=providers,
        mcp_servers=mcp_servers,
    )
    spec = read_flow(source, parts.check_options())
    return LocalFlow(spec, parts, default, None if log_path is None else LogFile(log_path))


class LocalFlow:
    """A checked flow and the engine that runs it. `close()` (or `with`) stops its runs and its
    engine thread; an unclosed flow's thread is a daemon and dies with the process."""

    def __init__(
        self,
        spec: FlowSpec,
        parts: EngineParts,
        granularity: Granularity = "all",
        log_file: LogFile | None = None,
    ) -> None:
        self.spec = spec
        self.granularity: Granularity = granularity
        self._parts = parts
        self._file = log_file
        self._thread = LoopThread(f"noukai-local-{spec.slug}")
        self._runs: dict[str, LocalRun] = {}
        self._lock = threading.Lock()

    @property
    def slug(self) -> str:
        return self.spec.slug

    @property
    def running(self) -> list[str]:
        """The ids of the runs started and not yet ended."""
        with self._lock:
            return list(self._runs)

    def __repr__(self) -> str:
        return f"LocalFlow({self.slug!r})"

    # Sync calls -----------------------------------------------------------------------------

    def invoke(
        self,
        message: str | None = None,
        *,
        messages: list[dict[str, Any]] | None = None,
        parameters: Mapping[str, Any] | None = None,
        attachments: list[dict[str, Any]] | None = None,
        block_overrides: dict[str, dict[str, Any]] | None = None,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        tool_handler: ToolHandler | None = None,
        max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS,
        run_id: str | None = None,
    ) -> LocalResult:
        """Run the flow and wait for its result (raises the SDK's error for a failed or stopped
        run). `result.events` holds what `stream(granularity="all")` would have yielded."""
        call = CallInputs(message, messages, parameters, attachments, block_overrides, tools, tool_choice)
        stream = self._sync(call, "execute", "all", tool_handler, max_tool_rounds, run_id)
        return result_of(stream.run_id, list(stream))

    def stream(
        self,
        message: str | None = None,
        *,
        messages: list[dict[str, Any]] | None = None,
        parameters: Mapping[str, Any] | None = None,
        attachments: list[dict[str, Any]] | None = None,
        block_overrides: dict[str, dict[str, Any]] | None = None,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        tool_handler: ToolHandler | None = None,
        max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS,
        run_id: str | None = None,
        granularity: Granularity | None = None,
    ) -> LocalStream:
        """Start a run and iterate its events as they happen; the run has started when this
        returns (its id is `stream.run_id`). A failed run's stream ends with `step_error` and
        `run_failed`, as the SDK's `events()` does."""
        call = CallInputs(message, messages, parameters, attachments, block_overrides, tools, tool_choice)
        shown = self.granularity if granularity is None else checked_granularity(granularity)
        return self._sync(call, "step", shown, tool_handler, max_tool_rounds, run_id)

    def stop(self, run_id: str, *, timeout: float | None = STOP_WAIT_SECONDS) -> bool:
        """Stop a run from any thread, mid-step included, and wait (up to `timeout` seconds)
        until its `run_cancelled` is written. False when no such run is running."""
        run = self._request_stop(run_id)
        if run is None:
            return False
        if not self._thread.on_loop_thread():  # a tool stopping its own run cannot wait for it
            run.ended.wait(timeout)
        return True

    def events(self, run_id: str) -> list[StreamEvent]:
        """A run's events as kept in the log file (`log_path`), ended or not, from this process or
        an earlier one. RuntimeError without a log file; LookupError for a run it does not hold."""
        if self._file is None:
            raise RuntimeError("this flow keeps no log file: pass log_path= to load_flow")
        entries = self._file.read(run_id)
        if not entries:
            raise LookupError(f"no run {run_id!r} in {self._file.path}")
        return [typed(entry) for entry in entries]

    def close(self) -> None:
        """Stop every run, close the model clients and MCP sessions, end the engine thread."""
        if self._thread.closed:
            return
        for run_id in self.running:
            self.stop(run_id)
        if not self._thread.on_loop_thread():
            self._thread.submit(self._parts.aclose()).result(STOP_WAIT_SECONDS)
        self._thread.close()
        if self._file is not None:
            self._file.close()

    def __enter__(self) -> LocalFlow:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # Async calls ----------------------------------------------------------------------------

    async def ainvoke(
        self,
        message: str | None = None,
        *,
        messages: list[dict[str, Any]] | None = None,
        parameters: Mapping[str, Any] | None = None,
        attachments: list[dict[str, Any]] | None = None,
        block_overrides: dict[str, dict[str, Any]] | None = None,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        tool_handler: AsyncToolHandler | None = None,
        max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS,
        run_id: str | None = None,
    ) -> LocalResult:
        """`invoke` for async code; `tool_handler` may be sync or async."""
        call = CallInputs(message, messages, parameters, attachments, block_overrides, tools, tool_choice)
        stream = self._async(call, "execute", "all", tool_handler, max_tool_rounds, run_id)
        return result_of(stream.run_id, [event async for event in stream])

    def astream(
        self,
        message: str | None = None,
        *,
        messages: list[dict[str, Any]] | None = None,
        parameters: Mapping[str, Any] | None = None,
        attachments: list[dict[str, Any]] | None = None,
        block_overrides: dict[str, dict[str, Any]] | None = None,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        tool_handler: AsyncToolHandler | None = None,
        max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS,
        run_id: str | None = None,
        granularity: Granularity | None = None,
    ) -> AsyncLocalStream:
        """`stream` for async code (call it from a running event loop); `async for` the result."""
        call = CallInputs(message, messages, parameters, attachments, block_overrides, tools, tool_choice)
        shown = self.granularity if granularity is None else checked_granularity(granularity)
        return self._async(call, "step", shown, tool_handler, max_tool_rounds, run_id)

    async def astop(self, run_id: str, *, timeout: float | None = STOP_WAIT_SECONDS) -> bool:
        """`stop` for async code: waits without blocking the caller's loop."""
        run = self._request_stop(run_id)
        if run is None:
            return False
        await asyncio.to_thread(run.ended.wait, timeout)
        return True

    async def aclose(self) -> None:
        if self._thread.closed:
            return
        for run_id in self.running:
            await self.astop(run_id)
        await asyncio.wrap_future(self._thread.submit(self._parts.aclose()))
        await asyncio.to_thread(self._thread.close)
        if self._file is not None:
            self._file.close()

    async def __aenter__(self) -> LocalFlow:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # Plumbing -------------------------------------------------------------------------------

    def _sync(
        self,
        call: CallInputs,
        trigger: str,
        granularity: Granularity,
        handler: ToolHandler | None,
        max_rounds: int,
        run_id: str | None,
    ) -> LocalStream:
        check_sync_handler(handler)
        inbox: queue.SimpleQueue[LogEntry | None] = queue.SimpleQueue()
        run = self._start(call, trigger, run_id, inbox.put)
        events = sync_events(
            run,
            inbox,
            self._answerer(run),
            granularity=granularity,
            handler=handler,
            max_rounds=max_rounds,
        )
        return LocalStream(run.run_id, events)

    def _async(
        self,
        call: CallInputs,
        trigger: str,
        granularity: Granularity,
        handler: AsyncToolHandler | None,
        max_rounds: int,
        run_id: str | None,
    ) -> AsyncLocalStream:
        if handler is not None and not callable(handler):
            raise TypeError(f"tool_handler must be callable, got {type(handler).__name__}")
        caller = asyncio.get_running_loop()
        inbox: asyncio.Queue[LogEntry | None] = asyncio.Queue()

        def deliver(entry: LogEntry | None) -> None:
            if not caller.is_closed():  # a caller whose loop is gone hears nothing more
                caller.call_soon_threadsafe(inbox.put_nowait, entry)

        run = self._start(call, trigger, run_id, deliver)
        events = async_events(
            run,
            inbox,
            self._answerer(run),
            granularity=granularity,
            handler=handler,
            max_rounds=max_rounds,
        )
        return AsyncLocalStream(run.run_id, events)

    def _start(
        self,
        call: CallInputs,
        trigger: str,
        run_id: str | None,
        deliver: Callable[[LogEntry | None], None],
    ) -> LocalRun:
        spec, inputs = prepared(self.spec, call)
        run_id = run_id or str(uuid.uuid4())
        file = self._file

        def deliver_and_forget(entry: LogEntry | None) -> None:
            if file is not None and entry is not END:  # kept before it is shown
                file.append(run_id, entry)
            elif file is not None:
                file.commit()
            if entry is END:
                with self._lock:
                    self._runs.pop(run_id, None)
            deliver(entry)

        run = LocalRun(run_id, spec, inputs, trigger, deliver_and_forget)
        with self._lock:
            if run_id in self._runs:
                raise ValueError(f"a run with id {run_id!r} is already running")
            if file is not None and file.has_run(run_id):
                raise ValueError(f"a run with id {run_id!r} is already in {file.path}")
            self._runs[run_id] = run
        try:
            self._thread.call_or_fail(lambda: driver.start(self._parts, run))
        except BaseException:
            with self._lock:
                self._runs.pop(run_id, None)
            raise
        return run

    def _answerer(self, run: LocalRun) -> Callable[[list[ToolResult] | None], None]:
        def answer(results: list[ToolResult] | None) -> None:
            self._thread.call(lambda: run.answer(results))

        return answer

    def _request_stop(self, run_id: str) -> LocalRun | None:
        with self._lock:
            run = self._runs.get(run_id)
        if run is not None:
            self._thread.call(lambda: driver.stop(run))
        return run
