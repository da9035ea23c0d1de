"""The caller's run metadata (`metadata=` on execute, steps, jobs and reruns): checked, never coerced.

The server enforces the limits (keys, sizes, count) and answers 422 VALIDATION_ERROR; here only
the types are checked, so that `metadata={"n": 1}` fails at the call site with a clear message
instead of a server refusal the caller has to decode.
"""

from __future__ import annotations

from collections.abc import Mapping


def metadata_body(metadata: Mapping[str, str] | None) -> dict[str, str] | None:
    """`metadata` as the JSON object to send, or None when not given (then nothing is sent)."""
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a mapping of str to str, got {type(metadata).__name__}")
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(
                f"metadata keys and values must be str (they are not converted), got {key!r}: {value!r}"
            )
    return dict(metadata)
