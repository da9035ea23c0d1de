"""A fake Noukai server for unit tests: the paced step protocol over an in-memory event log."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx2

from tests.sdk.conftest import ScriptedStream, json_response

TOOL_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
}


@dataclass
class FakeRun:
    id: str
    log: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    cursor: int = 0
    tool_rounds: int = 0

    def emit(self, name: str, **data: Any) -> None:
        self.log.append((len(self.log) + 1, name, {"eventType": name, "seq": len(self.log) + 1, **data}))


@dataclass
class FakeStepServer:
    """Flow of `steps` template steps; `tool_step` pauses for tools `tool_pauses` times; `fail_step` fails.
    `drop_after` cuts the first /step answer after that many frames (the rest is read from the log)."""

    steps: list[str]
    tool_step: str | None = None
    tool_pauses: int = 1
    fail_step: str | None = None
    drop_after: int | None = None
    runs: dict[str, FakeRun] = field(default_factory=dict)
    requests: list[httpx2.Request] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        path = request.url.path
        if request.method == "POST" and path.endswith("/step"):
            body = json.loads(request.content)
            self.bodies.append(body)
            return self.step(body)
        if request.method == "GET" and path.startswith("/api/v1/runs/") and path.endswith("/events"):
            run = self.runs[path.split("/")[4]]
            since = int(request.headers.get("last-event-id") or request.url.params.get("since_id") or 0)
            return self.frames(run.log[since:])
        if request.method == "GET" and path.startswith("/api/v1/runs/"):
            run = self.runs[path.split("/")[4]]
            terminal = any(name in ("flow_completed", "run_failed") for _, name, _ in run.log)
            status = "completed" if terminal else "waiting"
            return json_response(200, {"executionId": run.id, "status": status, "lastSeq": len(run.log)})
        return json_response(404, {"detail": {"code": "NOT_FOUND", "message": path}})

    def frames(
        self, events: list[tuple[int, str, dict[str, Any]]], cut: int | None = None
    ) -> httpx2.Response:
        chunks = [
            f"id: {seq}\nevent: {name}\ndata: {json.dumps(data)}\n\n".encode() for seq, name, data in events
        ]
        error = None
        if cut is not None and cut < len(chunks):
            chunks, error = chunks[:cut], httpx2.ReadError("connection reset")
        return httpx2.Response(200, stream=ScriptedStream([b": ping\n\n", *chunks], error))

    def step(self, body: dict[str, Any]) -> httpx2.Response:
        if "executionId" not in body:
            run = FakeRun(str(uuid.uuid4()))
            self.runs[run.id] = run
            run.emit("run_started", runId=run.id, executionId=run.id, flowId="f", stepCount=len(self.steps))
        else:
            run = self.runs[body["executionId"]]
            if body["stepIndex"] != run.cursor:
                return json_response(400, {"detail": {"code": "INVALID_STEP_INDEX", "message": "cursor"}})
        start = len(run.log)
        first_segment = start == 1
        if first_segment:
            start = 0
        while run.cursor < len(self.steps):
            step = self.steps[run.cursor]
            run.emit("step_started", stepId=step, stepIndex=run.cursor, type="template")
            if step == self.tool_step and run.tool_rounds < self.tool_pauses:
                run.tool_rounds += 1
                run.emit(
                    "step_paused_for_tool_calls",
                    runId=run.id,
                    executionId=run.id,
                    stepId=step,
                    stepIndex=run.cursor,
                    iterationsUsed=run.tool_rounds,
                    toolCallMessages=[{"role": "assistant", "tool_calls": [TOOL_CALL]}],
                    toolCalls=[TOOL_CALL],
                    accumulatedOutputs={"earlier": "value"},
                )
                break
            if step == self.fail_step:
                error = {"code": "TEMPLATE_ERROR", "message": "undefined"}
                run.emit("step_error", stepId=step, stepIndex=run.cursor, error=error)
                run.emit("run_failed", runId=run.id, executionId=run.id, error={**error, "stepId": step})
                break
            run.emit("step_output", stepId=step, outputData=f"{step}!")
            run.emit(
                "step_completed",
                stepId=step,
                stepIndex=run.cursor,
                output=f"{step}!",
                durationMs=1,
                tokens={"prompt": 1, "completion": 1, "total": 2},
                costUsd="0.000001",
            )
            run.cursor += 1
            if run.cursor == len(self.steps):
                run.emit("flow_completed", runId=run.id, executionId=run.id, result=f"{step}!")
                break
            if not body.get("runRemaining"):
                run.emit(
                    "step_paused",
                    stepId=step,
                    stepIndex=run.cursor - 1,
                    nextStepIndex=run.cursor,
                    runId=run.id,
                    executionId=run.id,
                )
                break
        cut = self.drop_after if first_segment else None
        return self.frames(run.log[start:], cut)
