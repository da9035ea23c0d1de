"""`NoukaiTraceMiddleware`: a session per request for FastAPI and Starlette apps (extra `[fastapi]`).

```python
app.add_middleware(NoukaiTraceMiddleware, client=noukai)
```

Every request runs in a capture session whose id the response reports in `X-Noukai-Session`.
With `NOUKAI_REPLAY_ENABLED=true`, a request carrying `X-Noukai-Replay: <session id>` is served
from that recording instead (the Noukai calls only: the handler itself runs for real). Replayed
responses are buffered, so that a replay that ends with unused recorded calls answers 500.
"""

from __future__ import annotations

import json

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from noukai._errors import ReplayError
from noukai._replay import enter_scope, exit_scope, request_scope
from noukai.adapters._common import REPLAY_HEADER, RESPONSE_SESSION_HEADER, replay_error_answer

__all__ = ["NoukaiTraceMiddleware"]


class NoukaiTraceMiddleware:
    """Pure ASGI middleware (the session's context variable reaches the endpoint unchanged)."""

    def __init__(self, app: ASGIApp, client: object | None = None) -> None:
        self.app = app
        self.client = client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        replay_id = Headers(scope=scope).get(REPLAY_HEADER)
        try:
            session = await request_scope(self.client, replay_id)
        except ReplayError as error:
            await _send_error(send, error, None)
            return
        buffered: list[Message] | None = [] if session.mode == "replay" else None
        started = False

        async def send_with_session(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                MutableHeaders(scope=message)[RESPONSE_SESSION_HEADER] = session.session_id
            if buffered is not None:
                buffered.append(message)
            else:
                await send(message)

        token = enter_scope(session)
        try:
            await self.app(scope, receive, send_with_session)
            session.check_leftovers()
        except ReplayError as error:
            if started and buffered is None:
                raise  # the answer is already on its way; nothing better can be said
            await _send_error(send, error, session.session_id)
            return
        finally:
            exit_scope(token)
        for message in buffered or ():
            await send(message)


async def _send_error(send: Send, error: ReplayError, session_id: str | None) -> None:
    status, body = replay_error_answer(error)
    headers = [(b"content-type", b"application/json")]
    if session_id is not None:
        headers.append((RESPONSE_SESSION_HEADER.lower().encode(), session_id.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})
