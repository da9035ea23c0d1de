"""An incremental `text/event-stream` decoder: bytes in, frames out, no I/O.

Unlike a plain event parser it also reports comment lines (the server's `: ping` heartbeats) and
frames that carry only `retry:`, because the reconnect logic needs both.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field


@dataclass(slots=True)
class Frame:
    """One block of lines ended by a blank line."""

    event: str | None = None
    data_lines: list[str] = field(default_factory=list)
    id: str | None = None
    retry: int | None = None
    comments: list[str] = field(default_factory=list)

    @property
    def has_data(self) -> bool:
        return bool(self.data_lines)

    @property
    def data(self) -> str:
        return "\n".join(self.data_lines)


class SSEDecoder:
    """Feed chunks of any size (they may split lines, CRLF pairs or UTF-8 sequences)."""

    def __init__(self) -> None:
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._frame = Frame()
        self._touched = False
        self._started = False

    def feed(self, chunk: bytes) -> list[Frame]:
        text = self._text.decode(chunk)
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        self._buffer += text
        frames: list[Frame] = []
        while True:
            end, skip = self._line_end()
            if end < 0:
                break
            line = self._buffer[:end]
            self._buffer = self._buffer[end + skip :]
            frame = self._line(line)
            if frame is not None:
                frames.append(frame)
        return frames

    def _line_end(self) -> tuple[int, int]:
        buffer = self._buffer
        lf, cr = buffer.find("\n"), buffer.find("\r")
        if cr < 0 or 0 <= lf < cr:
            return (lf, 1) if lf >= 0 else (-1, 0)
        if cr + 1 == len(buffer):
            return -1, 0  # maybe the first half of a CRLF: wait for the next chunk
        return cr, 2 if buffer[cr + 1] == "\n" else 1

    def _line(self, line: str) -> Frame | None:
        if not line:
            if not self._touched:
                return None
            frame, self._frame, self._touched = self._frame, Frame(), False
            return frame
        self._touched = True
        if line.startswith(":"):
            self._frame.comments.append(line[1:].strip())
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._frame.data_lines.append(value)
        elif name == "event":
            self._frame.event = value.strip() or None
        elif name == "id" and "\0" not in value:
            self._frame.id = value.strip()
        elif name == "retry" and value.strip().isdigit():
            self._frame.retry = int(value.strip())
        return None
