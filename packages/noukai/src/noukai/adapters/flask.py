"""`init_noukai_trace(app, client=...)`: a session per request for Flask apps (extra `[flask]`).

The same behaviour as the FastAPI middleware: capture by default (`X-Noukai-Session` on every
response), replay with `X-Noukai-Replay` when `NOUKAI_REPLAY_ENABLED=true`.
"""

from __future__ import annotations

from typing import Any

try:
    import flask  # type: ignore[import-not-found,unused-ignore]
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError('noukai.adapters.flask needs Flask: pip install "noukai[flask]"') from exc

from noukai._errors import ReplayError
from noukai._replay import TraceScope, enter_scope, exit_scope, request_scope_sync
from noukai.adapters._common import REPLAY_HEADER, RESPONSE_SESSION_HEADER, replay_error_answer

__all__ = ["init_noukai_trace"]

_SCOPE = "_noukai_scope"
_RESET = "_noukai_scope_reset"


def init_noukai_trace(app: Any, client: object | None = None) -> None:
    """Open a Noukai session around every request of `app`."""

    def open_session() -> Any:
        try:
            session = request_scope_sync(client, flask.request.headers.get(REPLAY_HEADER))
        except ReplayError as error:
            return _error_response(error, None)
        setattr(flask.g, _SCOPE, session)
        setattr(flask.g, _RESET, enter_scope(session))
        return None

    def close_session(response: Any) -> Any:
        session: TraceScope | None = getattr(flask.g, _SCOPE, None)
        if session is None:
            return response
        if response.status_code < 400:
            try:
                session.check_leftovers()
            except ReplayError as error:
                response = _error_response(error, session.session_id)
        response.headers[RESPONSE_SESSION_HEADER] = session.session_id
        return response

    def reset_session(_: BaseException | None) -> None:
        token = getattr(flask.g, _RESET, None)
        if token is not None:
            exit_scope(token)
            setattr(flask.g, _RESET, None)

    def replay_failed(error: ReplayError) -> Any:
        session: TraceScope | None = getattr(flask.g, _SCOPE, None)
        return _error_response(error, session.session_id if session else None)

    app.before_request(open_session)
    app.after_request(close_session)
    app.teardown_request(reset_session)
    app.register_error_handler(ReplayError, replay_failed)


def _error_response(error: ReplayError, session_id: str | None) -> Any:
    status, body = replay_error_answer(error)
    response = flask.jsonify(body)
    response.status_code = status
    if session_id is not None:
        response.headers[RESPONSE_SESSION_HEADER] = session_id
    return response
