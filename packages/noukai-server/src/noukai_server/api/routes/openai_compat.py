"""`/openai/v1`: flows as OpenAI chat models, for the official OpenAI SDKs and the tools built on
them (`base_url=".../openai/v1"`, `api_key=<a Noukai key>`). docs/protocols.md.

Thin: the key, the body and the response; the translation is `runtime.protocols.openai_chat`.
Every refusal, the key's included, is in OpenAI's error shape.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from noukai_server.api.auth import api_key, require_scope, services_of
from noukai_server.api.body import read_model
from noukai_server.api.errors import ApiError
from noukai_server.api.responses import json_response
from noukai_server.api.sse import sse_response
from noukai_server.runtime import RequestRejected
from noukai_server.runtime.protocols import FlowAddress, ProtocolRuns, Segment
from noukai_server.runtime.protocols.common import model_id_of
from noukai_server.runtime.protocols.openai_chat import (
    ChatCompletionBody,
    ChatTranslation,
    chat_request,
    complete,
    model_object,
    openai_error,
    stream_chunks,
)

OPENAI_PREFIX: Final = "/openai/v1"
THREAD_HEADER: Final = "x-noukai-thread-id"
"""Names a server-side thread (`POST /api/v1/threads`): the run's turn joins its history."""
EXECUTION_HEADER: Final = "x-noukai-execution-id"
"""Answered on every completion: the run (its trace, events and cancel are the native API's)."""

# Not in Noukai's OpenAPI document: the contract of these routes is OpenAI's API reference (and
# docs/protocols.md), whose error shape is not Noukai's envelope.
router = APIRouter(prefix=OPENAI_PREFIX, tags=["openai compatible"], include_in_schema=False)


def _error(
    code: str,
    message: str,
    *,
    param: str | None = None,
    during_run: bool = False,
    headers: dict[str, str] | None = None,
) -> Response:
    status, body = openai_error(code, message, param=param, during_run=during_run)
    response = Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="noukai"'
    return response


async def _answer(handler: Callable[[], Awaitable[Response]]) -> Response:
    try:
        return await handler()
    except (ApiError, RequestRejected) as exc:
        # Headers kept: a 429's `Retry-After` is what OpenAI clients wait on before retrying.
        return _error(exc.code, exc.message, param=_param(exc.details), headers=exc.headers or None)


def _param(details: dict[str, Any]) -> str | None:
    """The field an error is about: the runtime's `param`, or the first invalid place of the body."""
    param = details.get("param")
    if isinstance(param, str):
        return param
    errors = details.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        loc = errors[0].get("loc")
        if isinstance(loc, list) and loc:
            return ".".join(str(part) for part in loc)
    return None


def _runs(request: Request) -> ProtocolRuns:
    svc = services_of(request)
    return ProtocolRuns(svc.store, svc.bus, svc.runs, heartbeat_seconds=svc.config.heartbeat_seconds)


@router.get("/models")
async def list_models(request: Request) -> Response:
    """The flows the key may run, as models: `id` is `org/project/slug`."""

    async def handle() -> Response:
        key = await api_key(request)
        flows = await _runs(request).runnable_flows(key)
        data = [model_object(model_id_of(f), int(f.created_at.timestamp()), f.org_id) for f in flows]
        return json_response({"object": "list", "data": data})

    return await _answer(handle)


@router.get("/models/{model:path}")
async def retrieve_model(model: str, request: Request) -> Response:
    """One flow as a model (`org/project/slug` or `org/project/slug/vN`); 404 if there is none."""

    async def handle() -> Response:
        key = await api_key(request)
        address = FlowAddress.parse(model)
        flow = await _runs(request).flow_record(key, address)
        return json_response(model_object(address.model_id, int(flow.created_at.timestamp()), address.org))

    return await _answer(handle)


@router.post("/chat/completions")
async def chat_completions(request: Request) -> Response:
    """Run the flow named by `model` with the conversation (its last user message is `message`),
    or resume the run paused for the client tools the trailing `tool` messages answer. With
    `X-Noukai-Thread-Id`, the run is a turn of that thread: only the last user message is taken,
    the history is the thread's."""

    async def handle() -> Response:
        key = await api_key(request)
        require_scope(key, "run")
        body = await read_model(request, ChatCompletionBody)
        thread_id = request.headers.get(THREAD_HEADER) or None
        chat = chat_request(body, on_thread=thread_id is not None)
        runs = _runs(request)
        target = await runs.target(key, chat.address)
        segment: Segment
        if chat.tool_results:
            segment = await runs.resume(target, key, chat.tool_results)
        else:
            session_id = request.headers.get("x-session-id")
            segment = await runs.start(
                target,
                chat.inputs,
                session_id=session_id,
                thread_id=thread_id,
                key=key,
                traceparent=request.headers.get("traceparent"),
            )
        translation = ChatTranslation(segment, chat.model)
        events = runs.events(segment)
        run_header = (EXECUTION_HEADER.encode(), segment.run_id.encode())
        if chat.stream:
            body_stream = stream_chunks(translation, events, include_usage=chat.include_usage)
            streamed = sse_response(body_stream, services_of(request).streams)
            streamed.raw_headers.append(run_header)
            return streamed
        await complete(translation, events)
        failure = translation.unfinished()
        response = (
            json_response(translation.completion())
            if failure is None
            else _error(failure[0], failure[1], during_run=True)
        )
        response.raw_headers.append(run_header)
        return response

    return await _answer(handle)
