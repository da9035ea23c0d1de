"""`GET /api/v1/keys/me`: what the calling key is (org, project, scope, expiry), never its secret.

The web console signs in with a key and shows only what that key may do; this is how it learns
it. Any valid key may ask about itself (scope `read`, which every scope grants)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from starlette.responses import Response

from noukai_server.api.auth import api_key, require_scope, services
from noukai_server.api.key_info import key_info
from noukai_server.api.responses import KEYED, answers, fails, json_response
from noukai_server.api.routes.keys import KeyView
from noukai_server.api.services import Services
from noukai_server.store import ApiKeyRecord

router = APIRouter(prefix="/keys", tags=["keys"])


@router.get("/me", responses={**answers(KeyView, "The calling key (never its secret)"), **fails(KEYED)})
async def who_am_i(
    svc: Annotated[Services, Depends(services)], key: Annotated[ApiKeyRecord, Depends(api_key)]
) -> Response:
    """The calling key: its id, name, org, project (null: the whole org), scope and state."""
    require_scope(key, "read")
    return json_response(key_info(key, svc.store.now()))
