"""The optional SQLite log of in-process runs (`load_flow(..., log_path=...)`): every run's
entries, byte for byte as the in-memory log wrote them, kept after the run and the process end.

Writes come from the engine's thread and are committed at step boundaries and at the run's end
(a token stream costs one commit per step, not one per token), in WAL mode, so a reader on another
thread or process never waits for them.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path
from typing import Final

from noukai.types import events as ev
from noukai_server.local.log import LogEntry

_COMMIT_AFTER: Final = ev.STEP_BOUNDARY_EVENTS | ev.SEGMENT_END_EVENTS

_SCHEMA = """
CREATE TABLE IF NOT EXISTS local_run_events (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
)
"""


class LogFileError(ValueError):
    """The log file cannot be opened or is not one (the path and SQLite's reason are named)."""


class LogFile:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            # One connection, shared by the engine's thread (writes) and callers (reads) under a
            # lock: each call is short, and SQLite serialises a connection's use anyway.
            self._db = sqlite3.connect(self.path, timeout=5.0, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
            self._db.commit()
        except sqlite3.Error as exc:
            raise LogFileError(f"cannot use {self.path} as a run log: {exc}") from exc
        self._lock = threading.Lock()

    def append(self, run_id: str, entry: LogEntry) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO local_run_events (run_id, seq, type, data) VALUES (?, ?, ?, ?)",
                (run_id, entry.seq, entry.type, entry.data.decode()),
            )
            if entry.type in _COMMIT_AFTER:
                self._db.commit()

    def commit(self) -> None:
        with self._lock:
            self._db.commit()

    def has_run(self, run_id: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT 1 FROM local_run_events WHERE run_id = ? LIMIT 1", (run_id,))
            return row.fetchone() is not None

    def read(self, run_id: str) -> list[LogEntry]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, type, data FROM local_run_events WHERE run_id = ? ORDER BY seq", (run_id,)
            ).fetchall()
        return [LogEntry(seq, kind, data.encode()) for seq, kind, data in rows]

    def close(self) -> None:
        with self._lock:
            self._db.commit()
            self._db.close()
