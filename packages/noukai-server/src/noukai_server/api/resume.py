"""Where a reader of a run's log resumes: `since_id` (query) and `Last-Event-ID` (header).

One parser for both, used by every route that serves the native stream (the plain Starlette route
and the FastAPI one), so a bad position is refused the same way, before any streaming starts.
Pure: no I/O, no HTTP; the routes turn `InvalidResumePosition` into their error answer."""

from __future__ import annotations

from typing import Final

MAX_SEQ: Final = 2**63 - 1
"""The largest event seq a store can hold (a signed 64-bit column)."""
_MAX_DIGITS: Final = len(str(MAX_SEQ))
_DIGITS: Final = frozenset("0123456789")


class InvalidResumePosition(ValueError):
    """`where` is the input's location (`["query", "since_id"]`), `reason` what is wrong with it."""

    def __init__(self, where: tuple[str, str], reason: str) -> None:
        super().__init__(f"{where[1]}: {reason}")
        self.where = where
        self.reason = reason


def parse_event_seq(raw: str) -> int:
    """An event seq written in ASCII digits: `0 <= n <= MAX_SEQ` (`< 2**63`).

    Surrounding whitespace is ignored; anything else that is not `0`-`9` (a sign, a decimal point,
    `_`, a Unicode digit such as `²`) is refused with `ValueError`, as is an empty value or one that
    does not fit the store. Leading zeros are allowed; the value is checked without converting a
    long string of digits first."""
    text = raw.strip()
    if not text or not _DIGITS.issuperset(text):
        raise ValueError(f"must be an event seq: ASCII digits 0-9 only, from 0 to {MAX_SEQ}")
    significant = text.lstrip("0")
    if len(significant) > _MAX_DIGITS or (significant and int(significant) > MAX_SEQ):
        raise ValueError(f"must be an event seq from 0 to {MAX_SEQ}: it is too large")
    return int(text)


def resume_position(since_id: str | None, last_event_id: str | None) -> int:
    """The seq to resume after: the larger of `since_id` and `Last-Event-ID`, 0 with neither.

    `since_id`, when given, must be an event seq (an empty value too is refused); a blank
    `Last-Event-ID` means none, as for a browser's first `EventSource` request."""
    after = 0
    if since_id is not None:
        try:
            after = parse_event_seq(since_id)
        except ValueError as exc:
            raise InvalidResumePosition(("query", "since_id"), str(exc)) from None
    if last_event_id is not None and last_event_id.strip():
        try:
            after = max(after, parse_event_seq(last_event_id))
        except ValueError as exc:
            raise InvalidResumePosition(("header", "Last-Event-ID"), str(exc)) from None
    return after
