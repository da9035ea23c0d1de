"""Request bodies are parsed as JSON whatever their Content-Type says (curl's default form type
included), straight from bytes by pydantic-core, with errors in the contract's envelope."""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from noukai.types.errors import ErrorCode
from noukai_server.api.errors import ApiError

M = TypeVar("M", bound=BaseModel)
MAX_BODY_BYTES = 4 * 1024 * 1024


async def read_model(request: Request, model: type[M]) -> M:
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(ErrorCode.BODY_TOO_LARGE, "the request body exceeds 4 MiB")
    if not raw.strip():
        raise ApiError(ErrorCode.INVALID_JSON, "the request body is empty; send a JSON object")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        if any(err["type"] == "json_invalid" for err in errors):
            raise ApiError(ErrorCode.INVALID_JSON, "the request body is not valid JSON") from exc
        problems = [{"loc": [str(part) for part in err["loc"]], "message": err["msg"]} for err in errors]
        summary = "; ".join(f"{'.'.join(p['loc']) or 'body'}: {p['message']}" for p in problems)
        raise ApiError(
            ErrorCode.VALIDATION_ERROR, f"invalid request body: {summary}", errors=problems
        ) from exc


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` that documents a body read with `read_model`."""
    schema = model.model_json_schema(by_alias=True)
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    }
