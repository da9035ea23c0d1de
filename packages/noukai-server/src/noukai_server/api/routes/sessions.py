"""`GET /seq/sessions/{id}` (contract 6.2): the runs a caller tagged with `X-Session-Id`, with the
snapshots the published SDK replays. Not scoped by org/project in the path: the key decides."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from starlette.responses import Response

from noukai.types.errors import ErrorCode
from noukai.types.wire import SessionResponse
from noukai_server.api.auth import api_key, services
from noukai_server.api.responses import KEYED, answers, fails, json_response
from noukai_server.api.services import Services
from noukai_server.store import ApiKeyRecord

router = APIRouter(tags=["sessions"])


@router.get(
    "/seq/sessions/{session_id}",
    responses={
        **answers(SessionResponse, "The session's executions, in start order"),
        **fails(KEYED, (ErrorCode.FORBIDDEN, ErrorCode.SESSION_NOT_FOUND, ErrorCode.SESSION_EXPIRED)),
    },
)
async def get_session(
    session_id: str,
    svc: Annotated[Services, Depends(services)],
    key: Annotated[ApiKeyRecord, Depends(api_key)],
) -> Response:
    """Executions in start order, each with the final attempt of every step it ran. 403 when the
    session is another org's or project's, 404 when unknown, 410 after the retention period."""
    return json_response(await svc.sessions.get(session_id, org=key.org_id, project=key.project_id))
