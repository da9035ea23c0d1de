"""What the Redis bus puts in a PUBLISH: compact binary messages, one per published batch.

Every message starts with a one-byte version and the 8-byte id of the bus that sent it, so a
process drops its own messages when Redis echoes them back (it delivered them locally already)
and a process running an older format drops, rather than misreads, a newer one.

A batch of events (on the run's channel, which names the run, so the run id is not repeated):

    version(1) origin(8) count(u32) then per event: seq(u64) type_len(u16) data_len(u32) type data

The SSE `frame` is not sent: the receiver rebuilds it with `LogEvent.create`, which costs less
than the bytes it would add to every message. A work announcement is the header alone; a cancel
notice is the header and the run id.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from noukai_server.bus.base import LogEvent

VERSION = 1
ORIGIN_SIZE = 8
_HEADER = struct.Struct("!B8s")
_COUNT = struct.Struct("!I")
_EVENT = struct.Struct("!QHI")


class WireError(ValueError):
    """A message this version cannot read (corrupt, or written by another format version)."""


def encode_batch(origin: bytes, events: Sequence[LogEvent]) -> bytes:
    parts = [_HEADER.pack(VERSION, origin), _COUNT.pack(len(events))]
    for event in events:
        event_type = event.type.encode()
        parts.append(_EVENT.pack(event.seq, len(event_type), len(event.data)))
        parts.append(event_type)
        parts.append(event.data)
    return b"".join(parts)


def decode_batch(run_id: str, message: bytes) -> tuple[bytes, list[LogEvent]]:
    """The sender's origin id and the events of a batch message."""
    origin, offset = _read_header(message)
    try:
        (count,) = _COUNT.unpack_from(message, offset)
        offset += _COUNT.size
        events: list[LogEvent] = []
        for _ in range(count):
            seq, type_len, data_len = _EVENT.unpack_from(message, offset)
            offset += _EVENT.size
            event_type = message[offset : offset + type_len].decode()
            offset += type_len
            data = message[offset : offset + data_len]
            offset += data_len
            if len(data) != data_len:
                raise WireError("truncated event data")
            events.append(LogEvent.create(run_id, seq, event_type, data))
    except (struct.error, UnicodeDecodeError) as exc:
        raise WireError(str(exc)) from exc
    if offset != len(message):
        raise WireError("trailing bytes after the last event")
    return origin, events


def encode_notice(origin: bytes, body: bytes = b"") -> bytes:
    """A work announcement (no body) or a cancel notice (the run id as body)."""
    return _HEADER.pack(VERSION, origin) + body


def decode_notice(message: bytes) -> tuple[bytes, bytes]:
    """The sender's origin id and the notice's body."""
    origin, offset = _read_header(message)
    return origin, message[offset:]


def _read_header(message: bytes) -> tuple[bytes, int]:
    if len(message) < _HEADER.size:
        raise WireError("shorter than the header")
    version, origin = _HEADER.unpack_from(message)
    if version != VERSION:
        raise WireError(f"format version {version}, this process reads {VERSION}")
    return origin, _HEADER.size
