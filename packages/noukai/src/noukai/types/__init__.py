"""Wire-level types shared by the server and the SDK: error codes, events, request/response models."""

from noukai.types.errors import ErrorCode, status_for_code

__all__ = ["ErrorCode", "status_for_code"]
