"""Request bodies are parsed as JSON whatever their Content-Type says (curl's default form type
included), straight from bytes by pydantic-core, with errors in the contract's envelope.

JSON numbers have no size limit, but a run's inputs are stored and streamed as JSON by orjson,
which holds integers of 64 bits at most: a body with a wider integer is refused here (422
`VALIDATION_ERROR`), where it can be named, instead of failing later as it is stored."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Final, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from noukai.types.errors import ErrorCode
from noukai_server.api.errors import ApiError

M = TypeVar("M", bound=BaseModel)
MAX_BODY_BYTES = 4 * 1024 * 1024
MIN_INTEGER: Final = -(2**63)
MAX_INTEGER: Final = 2**64 - 1
"""The integers orjson (and so the store and every stream) can write: signed or unsigned 64 bits."""
_LONG_DIGITS: Final = re.compile(rb"[0-9]{19}")
"""Any integer outside that range has at least 19 digits; bodies without such a run skip the walk."""


async def read_model(request: Request, model: type[M]) -> M:
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(ErrorCode.BODY_TOO_LARGE, "the request body exceeds 4 MiB")
    if not raw.strip():
        raise ApiError(ErrorCode.INVALID_JSON, "the request body is empty; send a JSON object")
    try:
        body = model.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        if any(err["type"] == "json_invalid" for err in errors):
            raise ApiError(ErrorCode.INVALID_JSON, "the request body is not valid JSON") from exc
        problems = [{"loc": [str(part) for part in err["loc"]], "message": err["msg"]} for err in errors]
        raise _invalid(problems) from exc
    if _LONG_DIGITS.search(raw) is not None:
        too_wide = f"integer out of range: at most 64 bits ({MIN_INTEGER} to {MAX_INTEGER})"
        wide = [
            {"loc": list(loc), "message": too_wide}
            for name, field in type(body).model_fields.items()
            for loc in _wide_integers(getattr(body, name), (field.alias or name,))
        ]
        if wide:
            raise _invalid(wide)
    return body


def _invalid(problems: list[dict[str, Any]]) -> ApiError:
    summary = "; ".join(f"{'.'.join(p['loc']) or 'body'}: {p['message']}" for p in problems)
    return ApiError(ErrorCode.VALIDATION_ERROR, f"invalid request body: {summary}", errors=problems)


def _wide_integers(value: Any, loc: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    """Where `value` holds an integer that does not fit in 64 bits."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not MIN_INTEGER <= value <= MAX_INTEGER:
            yield loc
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _wide_integers(item, (*loc, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _wide_integers(item, (*loc, str(index)))


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` that documents a body read with `read_model`."""
    schema = model.model_json_schema(by_alias=True)
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    }
