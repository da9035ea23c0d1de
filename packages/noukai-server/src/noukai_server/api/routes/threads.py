"""Threads: conversations whose history the server keeps across runs (`threadId` on execute, step
and jobs), their messages, erasure, forks, and one resumable event stream across all their runs.

Not addressed by org/project in the path: a thread belongs to the key's org and project, and
any other tenant gets 404 THREAD_NOT_FOUND, as for a thread that does not exist."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi import Header as HeaderParam
from starlette.responses import Response

from noukai.types.errors import ErrorCode
from noukai.types.wire import (
    ThreadCreate,
    ThreadErased,
    ThreadFork,
    ThreadInfo,
    ThreadMessagePage,
)
from noukai_server.api.auth import api_key, require_scope, services
from noukai_server.api.body import openapi_body, read_model
from noukai_server.api.errors import ApiError
from noukai_server.api.responses import JSON_BODY, KEYED, answers, fails, json_response, streams
from noukai_server.api.services import Services
from noukai_server.api.sse import PING, SseResponse, sse_response
from noukai_server.eventlog.thread_follower import ThreadCursor, ThreadEventFollower
from noukai_server.runtime.threads import Tenant, ThreadService, message_info, thread_info
from noukai_server.store import ApiKeyRecord

router = APIRouter(tags=["threads"])

Svc = Annotated[Services, Depends(services)]
Key = Annotated[ApiKeyRecord, Depends(api_key)]
ThreadId = Annotated[str, Path(description="The thread's id.")]

_FOUND = (ErrorCode.THREAD_NOT_FOUND,)
_LIVE = (ErrorCode.THREAD_NOT_FOUND, ErrorCode.THREAD_EXPIRED)


def _service(svc: Services) -> ThreadService:
    return ThreadService(svc.store, default_ttl_seconds=svc.config.thread_ttl_seconds)


def _tenant(key: ApiKeyRecord) -> Tenant:
    return Tenant(key.org_id, key.project_id)


@router.post(
    "/threads",
    status_code=201,
    responses={
        **answers(ThreadInfo, "The new, empty thread", 201),
        **fails(KEYED, JSON_BODY, (ErrorCode.FORBIDDEN,)),
    },
    openapi_extra=openapi_body(ThreadCreate),
)
async def create_thread(request: Request, svc: Svc, key: Key) -> Response:
    """Create a thread of the key's project (an org-wide key names the `project`). It expires
    `ttlSeconds` after its last activity (the server's `thread_ttl_seconds` by default)."""
    require_scope(key, "run")
    body = await read_model(request, ThreadCreate)
    project = key.project_slug
    if project is None:
        if body.project is None:
            raise ApiError(
                ErrorCode.VALIDATION_ERROR,
                "invalid request: an org-wide key must name the thread's project",
                errors=[{"loc": ["body", "project"], "message": "required for an org-wide key"}],
            )
        project = body.project
    elif body.project is not None and body.project != project:
        raise ApiError(ErrorCode.FORBIDDEN, f"this API key cannot access project {key.org_id}/{body.project}")
    thread = await _service(svc).create(
        _tenant(key), project, metadata=body.metadata, ttl_seconds=body.ttl_seconds
    )
    return json_response(thread_info(thread), status_code=201)


@router.get(
    "/threads/{thread_id}",
    responses={**answers(ThreadInfo, "The thread"), **fails(KEYED, _LIVE)},
)
async def get_thread(thread_id: ThreadId, svc: Svc, key: Key) -> Response:
    """The thread: metadata, its active run, counts and expiry."""
    return json_response(thread_info(await _service(svc).get(_tenant(key), thread_id)))


@router.get(
    "/threads/{thread_id}/messages",
    responses={
        **answers(ThreadMessagePage, "A page of the thread's messages, oldest first"),
        **fails(KEYED, _LIVE, (ErrorCode.VALIDATION_ERROR,)),
    },
)
async def list_messages(
    thread_id: ThreadId,
    svc: Svc,
    key: Key,
    cursor: Annotated[str | None, Query(description="The previous page's `nextCursor`.")] = None,
    limit: Annotated[int | None, Query(description="Messages per page (1 to 500; 100).")] = None,
) -> Response:
    """The thread's history, a page at a time; `nextCursor` is null on the last page."""
    page, next_cursor = await _service(svc).messages(_tenant(key), thread_id, cursor=cursor, limit=limit)
    return json_response({"messages": [message_info(m) for m in page], "nextCursor": next_cursor})


@router.delete(
    "/threads/{thread_id}",
    responses={
        **answers(ThreadErased, "What was erased"),
        **fails(KEYED, _FOUND, (ErrorCode.THREAD_BUSY, ErrorCode.FORBIDDEN)),
    },
)
async def delete_thread(thread_id: ThreadId, svc: Svc, key: Key) -> Response:
    """Erase the thread (the right to erasure): its messages and the thread itself are deleted,
    its runs' event logs are deleted, and its runs' inputs, states, results and errors are blanked
    (the run rows stay: id, flow, status, times). 409 THREAD_BUSY while one of its runs is active:
    cancel it first. An expired thread can be deleted too."""
    require_scope(key, "run")
    erased = await _service(svc).delete(_tenant(key), thread_id)
    return json_response(
        {
            "threadId": thread_id,
            "deleted": True,
            "messages": erased.messages,
            "runs": erased.runs,
            "events": erased.events,
        }
    )


@router.post(
    "/threads/{thread_id}/fork",
    status_code=201,
    responses={
        **answers(ThreadInfo, "The new thread", 201),
        **fails(KEYED, JSON_BODY, _LIVE, (ErrorCode.THREAD_POSITION_INVALID, ErrorCode.FORBIDDEN)),
    },
    openapi_extra=openapi_body(ThreadFork),
)
async def fork_thread(thread_id: ThreadId, request: Request, svc: Svc, key: Key) -> Response:
    """A new thread of the same project whose history is a copy of this one's messages 1..`position`
    (all of them without it): branch a conversation from any point."""
    require_scope(key, "run")
    body = await read_model(request, ThreadFork) if (await request.body()).strip() else ThreadFork()
    thread = await _service(svc).fork(
        _tenant(key),
        thread_id,
        position=body.position,
        metadata=body.metadata,
        ttl_seconds=body.ttl_seconds,
    )
    return json_response(thread_info(thread), status_code=201)


def _resume_cursor(since_id: str | None, last_event_id: str | None) -> ThreadCursor:
    after = ThreadCursor()
    for where, raw in (("query", since_id), ("header", last_event_id)):
        if raw is None or (where == "header" and not raw.strip()):
            continue
        try:
            after = max(after, ThreadCursor.parse(raw))
        except ValueError as exc:
            name = "since_id" if where == "query" else "Last-Event-ID"
            raise ApiError(
                ErrorCode.VALIDATION_ERROR,
                f"invalid request: {name}: {exc}",
                errors=[{"loc": [where, name], "message": str(exc)}],
            ) from None
    return after


async def _thread_frames(
    follower: ThreadEventFollower,
    *,
    heartbeat_seconds: float,
    lifetime_seconds: float | None,
    retry_ms: int | None,
    types: Collection[str] | None,
) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + lifetime_seconds if lifetime_seconds else None
    if retry_ms is not None:
        yield b"retry: %d\n\n" % retry_ms
    async with follower:
        while True:
            wait = heartbeat_seconds
            if deadline is not None:
                wait = min(wait, deadline - loop.time())
                if wait <= 0:
                    return  # planned close: the client resumes with Last-Event-ID
            batch = await follower.next_batch(wait)
            if not batch:
                if deadline is None or loop.time() < deadline:
                    yield PING
                continue
            frames = [event.frame for event in batch if types is None or event.type in types]
            if frames:
                yield b"".join(frames)


@router.get(
    "/threads/{thread_id}/events",
    response_class=SseResponse,
    status_code=200,
    responses={
        **streams(
            "The events of every run of the thread, run after run, each with `id: <runOrdinal>-<seq>`;"
            " then the live tail, with heartbeats. The stream does not end by itself."
        ),
        **fails(KEYED, _LIVE, (ErrorCode.VALIDATION_ERROR,)),
    },
)
async def thread_events(
    thread_id: ThreadId,
    svc: Svc,
    key: Key,
    since_id: Annotated[
        str | None, Query(description="Resume after this thread event id (`<runOrdinal>-<seq>`).")
    ] = None,
    types: Annotated[str | None, Query(description="Comma-separated event types to keep.")] = None,
    last_event_id: Annotated[
        str | None, HeaderParam(alias="Last-Event-ID", description="The `id:` of the last event received.")
    ] = None,
) -> Response:
    """One resumable stream across all the thread's runs (as a session stream): resume with
    `Last-Event-ID` or `since_id` (the later of the two wins) and nothing is lost or repeated."""
    after = _resume_cursor(since_id, last_event_id)
    thread = await _service(svc).get(_tenant(key), thread_id)
    wanted = frozenset(t.strip() for t in types.split(",") if t.strip()) if types else None
    config = svc.config
    follower = ThreadEventFollower(svc.store, svc.bus, thread.id, after)
    return sse_response(
        _thread_frames(
            follower,
            heartbeat_seconds=config.heartbeat_seconds,
            lifetime_seconds=config.stream_lifetime_seconds,
            retry_ms=config.retry_ms,
            types=wanted,
        ),
        svc.streams,
    )
