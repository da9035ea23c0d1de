"""The floor: a bare Starlette app that streams, pre-encoded, the frames a Noukai run of the same
bench flow would stream, on the same uvicorn settings (uvloop, httptools, no access log).

It answers Noukai's paths (`POST /api/v1/seq/{org}/{project}/{slug}/step` and
`GET /api/v1/runs/{id}/events`), renders `{{ message }}` in the bench flows' prompts, cuts them into
words like `builtin:echo`, and builds each frame once per (flow, message). No engine, no store, no
bus: what is left is HTTP, SSE framing and the event loop, i.e. close to what the hardware allows for
this protocol in Python.

Run: `python -m bench.floor --port 8090`.
"""

from __future__ import annotations

import argparse
import json
import re
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import uvicorn
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

FLOWS_DIR = Path(__file__).resolve().parent / "flows"
MESSAGE = re.compile(r"\{\{\s*message\s*\}\}")
CHUNK = re.compile(r"\s*\S+\s*|\s+")  # the word chunks of builtin:echo
SSE_HEADERS = {"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"}
RUNS_KEPT = 10_000


def _frame(seq: int, kind: str, payload: dict[str, Any]) -> bytes:
    data = json.dumps({"eventType": kind, "seq": seq, **payload}, separators=(",", ":"))
    return f"id: {seq}\nevent: {kind}\ndata: {data}\n\n".encode()


def build_frames(flow: dict[str, Any], message: str, run_id: str) -> list[bytes]:
    """The frames of one run of `flow`, shaped like Noukai's."""
    steps = flow["steps"]
    frames: list[bytes] = []

    def add(kind: str, payload: dict[str, Any]) -> None:
        frames.append(_frame(len(frames) + 1, kind, payload))

    ids = {"runId": run_id, "executionId": run_id}
    add("run_started", {**ids, "flowId": flow["slug"], "stepCount": len(steps), "flowVersion": 0})
    output = ""
    for index, step in enumerate(steps):
        where = {"stepId": step["id"], "stepIndex": index}
        prompt = MESSAGE.sub(message, step.get("prompt", ""))
        add("step_started", {**where, "name": step.get("name"), "type": step["type"]})
        add("step_input", {**where, "inputData": {"model": step.get("model"), "prompt": prompt}})
        words = CHUNK.findall(prompt)
        for word in words:
            add("step_output", {**where, "outputData": word})
        output = prompt
        tokens = {"prompt": len(words), "completion": len(words), "total": 2 * len(words)}
        add("step_completed", {**where, "type": step["type"], "output": output, "tokens": tokens})
    add("flow_completed", {**ids, "result": output, "summary": {"stepCount": len(steps)}})
    return frames


class Floor:
    def __init__(self, flows_dir: Path) -> None:
        self.flows = {}
        for path in sorted(flows_dir.glob("*.yaml")):
            document = yaml.safe_load(path.read_text())
            self.flows[document["slug"]] = document
        self._frames: dict[tuple[str, str], list[bytes]] = {}
        self._runs: OrderedDict[str, tuple[str, str]] = OrderedDict()

    def frames(self, slug: str, message: str) -> list[bytes]:
        key = (slug, message)
        if key not in self._frames:
            self._frames[key] = build_frames(self.flows[slug], message, str(uuid.uuid4()))
        return self._frames[key]

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def step(self, request: Request) -> Response:
        slug = request.path_params["slug"]
        if slug not in self.flows:
            return JSONResponse({"error": "flow not found"}, status_code=404)
        message = json.loads(await request.body()).get("message", "")
        frames = self.frames(slug, message)
        # Every run of one (flow, message) streams the same pre-encoded frames (same run id too);
        # the id handed out maps back to them for the native stream.
        run_id = json.loads(frames[0].split(b"data: ", 1)[1])["executionId"]
        self._runs[run_id] = (slug, message)
        while len(self._runs) > RUNS_KEPT:
            self._runs.popitem(last=False)
        return StreamingResponse(_iterate(frames), media_type="text/event-stream", headers=SSE_HEADERS)

    async def events(self, request: Request) -> Response:
        key = self._runs.get(request.path_params["run_id"])
        if key is None:
            return JSONResponse({"error": "run not found"}, status_code=404)
        frames = [b"retry: 1000\n\n", *self.frames(*key)]
        return StreamingResponse(_iterate(frames), media_type="text/event-stream", headers=SSE_HEADERS)


async def _iterate(frames: list[bytes]) -> AsyncIterator[bytes]:
    for frame in frames:
        yield frame


def create_app(flows_dir: Path = FLOWS_DIR) -> Starlette:
    floor = Floor(flows_dir)
    return Starlette(
        routes=[
            Route("/api/v1/health", floor.health),
            Route("/api/v1/seq/{org}/{project}/{slug}/step", floor.step, methods=["POST"]),
            Route("/api/v1/runs/{run_id}/events", floor.events),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args()
    uvicorn.run(
        create_app(),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=5,
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
