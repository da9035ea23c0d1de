"""Threads as the API sees them: tenancy, expiry, paging, erasure, forks, and the turn a run takes.

The store does the atomic parts (`store/threads_repo.py`); here requests are checked and store
errors become wire errors. A thread belongs to one org and project: any other tenant is told it
does not exist (404 THREAD_NOT_FOUND), exactly as for a thread that never existed.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from noukai.types.errors import ErrorCode
from noukai_server.engine import RunInputs
from noukai_server.runtime.credits import refuse_without_credit
from noukai_server.runtime.errors import RequestRejected
from noukai_server.store import (
    HistoryWindow,
    RunRecord,
    Store,
    ThreadBusy,
    ThreadErasure,
    ThreadExpired,
    ThreadMessage,
    ThreadNotFound,
    ThreadRecord,
    ThreadTurn,
)
from noukai_server.store.records import Multitask

MAX_PAGE = 500
DEFAULT_PAGE = 100
MULTITASK_MODES: tuple[Multitask, ...] = ("reject", "enqueue")


@contextlib.contextmanager
def thread_errors() -> Iterator[None]:
    """Store errors about threads as the wire's errors."""
    try:
        yield
    except ThreadNotFound as exc:
        raise RequestRejected(ErrorCode.THREAD_NOT_FOUND, str(exc)) from None
    except ThreadExpired as exc:
        raise RequestRejected(ErrorCode.THREAD_EXPIRED, str(exc)) from None
    except ThreadBusy as exc:
        raise RequestRejected(ErrorCode.THREAD_BUSY, str(exc), activeRunId=exc.active_run_id) from None


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def thread_turn(
    thread_id: str,
    inputs: RunInputs,
    window: HistoryWindow,
    multitask: str | None,
) -> ThreadTurn:
    """The turn a run takes on a thread: the request's `messages`, else its `message` as a user
    message."""
    if not is_uuid(thread_id):
        raise RequestRejected(ErrorCode.THREAD_NOT_FOUND, f"no thread {thread_id}")
    mode = multitask or "reject"
    if mode not in MULTITASK_MODES:  # the wire model already refuses others; kept for direct callers
        raise RequestRejected(
            ErrorCode.VALIDATION_ERROR, f"multitask must be reject or enqueue, not {mode!r}"
        )
    if inputs.messages:
        messages = tuple(dict(message) for message in inputs.messages)
    elif inputs.message is not None:
        messages = ({"role": "user", "content": inputs.message},)
    else:
        messages = ()
    return ThreadTurn(thread_id, messages, window, "enqueue" if mode == "enqueue" else "reject")


def tool_turns(agent_pause: dict[str, Any], results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tool turns of a client tool round trip, as thread messages: the assistant's message
    that asked for the calls, then one `tool` message per result."""
    pending = agent_pause.get("pending") or []
    asked: dict[str, Any] | None = None
    for message in reversed(agent_pause.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "assistant":
            asked = message
            break
    if asked is None or not asked.get("tool_calls"):
        asked = {"role": "assistant", "content": (asked or {}).get("content") or "", "tool_calls": pending}
    return [
        dict(asked),
        *({"role": "tool", "tool_call_id": r["tool_call_id"], "content": r["content"]} for r in results),
    ]


@dataclass(frozen=True, slots=True)
class Tenant:
    org: str
    project_id: str | None
    """None for an org-wide key: every project of the org."""


class ThreadService:
    def __init__(self, store: Store, *, default_ttl_seconds: float) -> None:
        self._store = store
        self._default_ttl = max(1, int(default_ttl_seconds))

    async def create(
        self, tenant: Tenant, project_slug: str, *, metadata: dict[str, Any], ttl_seconds: int | None
    ) -> ThreadRecord:
        return await self._store.create_thread(
            tenant.org, project_slug, metadata=metadata, ttl_seconds=ttl_seconds or self._default_ttl
        )

    async def ensure(self, tenant: Tenant, project_slug: str, thread_id: str) -> ThreadRecord:
        """The tenant's thread named by the client (a UUID), created empty with the default TTL
        the first time it is named. 404 when another tenant holds the id, 410
        once past its TTL."""
        if not is_uuid(thread_id):
            raise RequestRejected(ErrorCode.THREAD_NOT_FOUND, f"no thread {thread_id}")
        # Named for a run about to start (AG-UI): an org out of credit gets no thread either.
        await refuse_without_credit(self._store, tenant.org)
        with thread_errors():
            thread, created = await self._store.ensure_thread(
                tenant.org, project_slug, thread_id, ttl_seconds=self._default_ttl
            )
        return thread if created else await self.get(tenant, thread_id)

    async def get(self, tenant: Tenant, thread_id: str, *, expired_ok: bool = False) -> ThreadRecord:
        """The tenant's thread; 404 for anyone else's or none, 410 once past its TTL."""
        thread = await self._store.get_thread(thread_id) if is_uuid(thread_id) else None
        if (
            thread is None
            or thread.org_id != tenant.org
            or (tenant.project_id is not None and thread.project_id != tenant.project_id)
        ):
            raise RequestRejected(ErrorCode.THREAD_NOT_FOUND, f"no thread {thread_id}")
        if not expired_ok and thread.expires_at <= self._store.now():
            raise RequestRejected(
                ErrorCode.THREAD_EXPIRED,
                f"thread {thread_id} expired at {thread.expires_at.isoformat()}",
                threadId=thread_id,
            )
        return thread

    async def messages(
        self, tenant: Tenant, thread_id: str, *, cursor: str | None, limit: int | None
    ) -> tuple[list[ThreadMessage], str | None]:
        """A page of messages after `cursor` (a position, as the previous page's `nextCursor`)."""
        thread = await self.get(tenant, thread_id)
        after = 0
        if cursor is not None and cursor != "":
            if not (cursor.isascii() and cursor.isdigit()) or len(cursor) > 12:
                raise RequestRejected(
                    ErrorCode.VALIDATION_ERROR,
                    "invalid request: cursor must be a nextCursor value",
                    errors=[{"loc": ["query", "cursor"], "message": "not a cursor"}],
                )
            after = int(cursor)
        size = DEFAULT_PAGE if limit is None else limit
        if not 1 <= size <= MAX_PAGE:
            raise RequestRejected(
                ErrorCode.VALIDATION_ERROR,
                f"invalid request: limit must be from 1 to {MAX_PAGE}",
                errors=[{"loc": ["query", "limit"], "message": f"from 1 to {MAX_PAGE}"}],
            )
        page = await self._store.list_thread_messages(thread.id, after_position=after, limit=size)
        more = bool(page) and page[-1].position < thread.message_count
        return page, (str(page[-1].position) if more else None)

    async def delete(self, tenant: Tenant, thread_id: str) -> ThreadErasure:
        thread = await self.get(tenant, thread_id, expired_ok=True)
        with thread_errors():
            return await self._store.delete_thread(thread.id)

    async def fork(
        self,
        tenant: Tenant,
        thread_id: str,
        *,
        position: int | None,
        metadata: dict[str, Any] | None,
        ttl_seconds: int | None,
    ) -> ThreadRecord:
        thread = await self.get(tenant, thread_id)
        if position is not None and position > thread.message_count:
            raise RequestRejected(
                ErrorCode.THREAD_POSITION_INVALID,
                f"position {position} is past the thread's last message ({thread.message_count})",
            )
        with thread_errors():
            try:
                return await self._store.fork_thread(
                    thread.id, position, metadata=metadata, ttl_seconds=ttl_seconds
                )
            except ValueError as exc:  # messages appended since the check above cannot shrink it
                raise RequestRejected(ErrorCode.THREAD_POSITION_INVALID, str(exc)) from None

    async def runs(self, thread: ThreadRecord, after_ordinal: int, limit: int = 100) -> list[RunRecord]:
        return await self._store.list_thread_runs(thread.id, after_ordinal=after_ordinal, limit=limit)


def thread_info(thread: ThreadRecord) -> dict[str, Any]:
    """A `ThreadInfo` body."""
    return {
        "threadId": thread.id,
        "metadata": thread.metadata,
        "activeRunId": thread.active_run_id,
        "runCount": thread.run_count,
        "messageCount": thread.message_count,
        "ttlSeconds": thread.ttl_seconds,
        "createdAt": thread.created_at.isoformat(),
        "updatedAt": thread.updated_at.isoformat(),
        "expiresAt": thread.expires_at.isoformat(),
    }


def message_info(message: ThreadMessage) -> dict[str, Any]:
    """A `ThreadMessageInfo` body."""
    return {
        "position": message.position,
        "role": message.role,
        "message": message.content,
        "runId": message.run_id,
        "createdAt": message.created_at.isoformat(),
    }
