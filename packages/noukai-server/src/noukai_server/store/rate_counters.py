"""Request-rate counters in our own database: `limits`' async storage interface over the
`rate_counters` table, for deployments without Redis (see docs/deployment.md, "Rate limits").

Only what the sliding-window-counter strategy needs is real work here: one counter per identity
and window (`<key>/<window number>`), expiring after two windows. An acquisition is ONE write
transaction on either store (the raw SQLite hot path, group-committed; SQLAlchemy on PostgreSQL):
add to the current window's counter, read the previous one, and take the addition back if the
weighted count went over the limit. On PostgreSQL the upsert holds the current counter's row lock
until commit, so concurrent acquisitions across processes queue on it and never both pass; on
SQLite the one writer serialises them. The statements are plain SQL both drivers take as they are.
"""

from __future__ import annotations

import math
import sqlite3
import time
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from limits.aio.storage import Storage
from limits.aio.storage.base import SlidingWindowCounterSupport
from sqlalchemy.ext.asyncio import AsyncConnection

if TYPE_CHECKING:
    from .store import Store

_UPSERT = """
INSERT INTO rate_counters (key, count, expires_at_ms) VALUES (:key, :amount, :expires)
ON CONFLICT (key) DO UPDATE SET
  count = CASE WHEN rate_counters.expires_at_ms <= :now THEN excluded.count
               ELSE rate_counters.count + excluded.count END,
  expires_at_ms = CASE WHEN rate_counters.expires_at_ms <= :now THEN excluded.expires_at_ms
                       ELSE rate_counters.expires_at_ms END
RETURNING count
"""
_READ = "SELECT count, expires_at_ms FROM rate_counters WHERE key = :key AND expires_at_ms > :now"
_TAKE_BACK = "UPDATE rate_counters SET count = count - :amount WHERE key = :key"
_DELETE = "DELETE FROM rate_counters WHERE key = :key"
_DELETE_ALL = "DELETE FROM rate_counters"
SWEEP = "DELETE FROM rate_counters WHERE expires_at_ms <= :now"
"""Drops expired counters (the retention sweep runs it)."""

SEEN_FRESH_SECONDS = 1.0
"""How long the window an acquisition saw answers the stats read that follows it."""
SEEN_MAX = 10_000
"""Windows kept for that read at most (each is popped by it; this only bounds leftovers)."""

Row = tuple[int, int]
"""A live counter: (count, expires_at_ms)."""


async def sweep_expired(store: Store) -> int:
    """Delete the counters of windows that have passed (the retention sweep calls this)."""
    params = {"now": _ms(time.time())}
    return await store.counters_write(
        lambda conn: conn.execute(SWEEP, params).rowcount, lambda conn: _sql_rowcount(conn, SWEEP, params)
    )


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def window_keys(key: str, expiry: int, at: float) -> tuple[str, str]:
    """The previous and the current window's counter keys (as `limits`' own storages name them)."""
    return f"{key}/{int((at - expiry) / expiry)}", f"{key}/{int(at / expiry)}"


def previous_weight_seconds(expiry: int, at: float) -> float:
    """How much of the previous window still counts: its count weighs this share of `expiry`."""
    return (1 - (((at - expiry) / expiry) % 1)) * expiry


def current_ttl_seconds(expiry: int, at: float) -> float:
    return (1 - ((at / expiry) % 1)) * expiry + expiry


def over(previous: int, previous_weight: float, current: int, limit: int, expiry: int) -> bool:
    return math.floor(previous * previous_weight / expiry + current) > limit


class _Sqlite:
    """The transaction bodies on a raw `sqlite3` connection (run by the SQLite hot path)."""

    @staticmethod
    def incr(conn: sqlite3.Connection, key: str, amount: int, expires: int, now: int) -> int:
        row = conn.execute(_UPSERT, {"key": key, "amount": amount, "expires": expires, "now": now}).fetchone()
        return int(row[0])

    @staticmethod
    def read(conn: sqlite3.Connection, key: str, now: int) -> Row | None:
        row = conn.execute(_READ, {"key": key, "now": now}).fetchone()
        return None if row is None else (int(row[0]), int(row[1]))

    @staticmethod
    def take_back(conn: sqlite3.Connection, key: str, amount: int) -> None:
        conn.execute(_TAKE_BACK, {"key": key, "amount": amount})


class _Sql:
    """The same bodies on a SQLAlchemy connection (PostgreSQL, or SQLite without the hot path)."""

    @staticmethod
    async def incr(conn: AsyncConnection, key: str, amount: int, expires: int, now: int) -> int:
        params = {"key": key, "amount": amount, "expires": expires, "now": now}
        return int((await conn.execute(sa.text(_UPSERT), params)).scalar_one())

    @staticmethod
    async def read(conn: AsyncConnection, key: str, now: int) -> Row | None:
        row = (await conn.execute(sa.text(_READ), {"key": key, "now": now})).first()
        return None if row is None else (int(row[0]), int(row[1]))

    @staticmethod
    async def take_back(conn: AsyncConnection, key: str, amount: int) -> None:
        await conn.execute(sa.text(_TAKE_BACK), {"key": key, "amount": amount})


class StoreRateStorage(Storage, SlidingWindowCounterSupport):
    """`limits` storage on the store: use it with `SlidingWindowCounterRateLimiter` (the moving
    window would need a row per request; the fixed window's `incr` works too)."""

    STORAGE_SCHEME = None  # built directly, never from a URI

    def __init__(self, store: Store) -> None:
        super().__init__()
        self._store = store
        self._seen: dict[str, tuple[float, tuple[int, float, int, float]]] = {}
        """Per counter key: the window as the last acquisition saw it (monotonic time, window)."""

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return (sqlite3.Error, sa.exc.SQLAlchemyError)

    # -- the sliding window counter --------------------------------------------------------------

    async def acquire_sliding_window_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        if amount > limit:
            return False
        at = time.time()
        previous_key, current_key = window_keys(key, expiry, at)
        weight = previous_weight_seconds(expiry, at)
        now, expires = _ms(at), _ms(at + 2 * expiry)

        def on_sqlite(conn: sqlite3.Connection) -> tuple[bool, int, int]:
            current = _Sqlite.incr(conn, current_key, amount, expires, now)
            row = _Sqlite.read(conn, previous_key, now)
            previous = row[0] if row else 0
            if over(previous, weight, current, limit, expiry):
                _Sqlite.take_back(conn, current_key, amount)
                return False, previous, current - amount
            return True, previous, current

        async def on_sql(conn: AsyncConnection) -> tuple[bool, int, int]:
            current = await _Sql.incr(conn, current_key, amount, expires, now)
            row = await _Sql.read(conn, previous_key, now)
            previous = row[0] if row else 0
            if over(previous, weight, current, limit, expiry):
                await _Sql.take_back(conn, current_key, amount)
                return False, previous, current - amount
            return True, previous, current

        allowed, previous, current = await self._store.counters_write(on_sqlite, on_sql)
        if len(self._seen) >= SEEN_MAX:  # windows nobody read back (a failed request): forget them
            self._seen.clear()
        window = (previous, weight if previous else 0.0, current, current_ttl_seconds(expiry, at))
        self._seen[key] = (time.monotonic(), window)
        return allowed

    async def get_sliding_window(self, key: str, expiry: int) -> tuple[int, float, int, float]:
        # The strategy reads the window right after an acquisition (for the X-RateLimit headers):
        # the acquisition's transaction already saw it, so that read costs nothing. Measured on
        # PostgreSQL, this halves the check (two transactions instead of four per request).
        seen = self._seen.pop(key, None)
        if seen is not None and time.monotonic() - seen[0] < SEEN_FRESH_SECONDS:
            return seen[1]
        at = time.time()
        previous_key, current_key = window_keys(key, expiry, at)
        now = _ms(at)

        def on_sqlite(conn: sqlite3.Connection) -> tuple[Row | None, Row | None]:
            return _Sqlite.read(conn, previous_key, now), _Sqlite.read(conn, current_key, now)

        async def on_sql(conn: AsyncConnection) -> tuple[Row | None, Row | None]:
            return await _Sql.read(conn, previous_key, now), await _Sql.read(conn, current_key, now)

        previous, current = await self._store.counters_write(on_sqlite, on_sql)
        previous_count = previous[0] if previous else 0
        weight = previous_weight_seconds(expiry, at) if previous_count else 0.0
        return previous_count, weight, current[0] if current else 0, current_ttl_seconds(expiry, at)

    async def clear_sliding_window(self, key: str, expiry: int) -> None:
        for window in window_keys(key, expiry, time.time()):
            await self.clear(window)

    # -- the plain counter (fixed window) and housekeeping ---------------------------------------

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        at = time.time()
        now, expires = _ms(at), _ms(at + expiry)
        return await self._store.counters_write(
            lambda conn: _Sqlite.incr(conn, key, amount, expires, now),
            lambda conn: _Sql.incr(conn, key, amount, expires, now),
        )

    async def _read(self, key: str) -> Row | None:
        now = _ms(time.time())
        return await self._store.counters_write(
            lambda conn: _Sqlite.read(conn, key, now), lambda conn: _Sql.read(conn, key, now)
        )

    async def get(self, key: str) -> int:
        row = await self._read(key)
        return 0 if row is None else row[0]

    async def get_expiry(self, key: str) -> float:
        row = await self._read(key)
        return time.time() if row is None else row[1] / 1000

    async def check(self) -> bool:
        try:
            await self._read("health")
        except Exception:
            return False
        return True

    async def clear(self, key: str) -> None:
        params = {"key": key}
        await self._store.counters_write(
            lambda conn: conn.execute(_DELETE, params).rowcount,
            lambda conn: _sql_rowcount(conn, _DELETE, params),
        )

    async def reset(self) -> int | None:
        return await self._store.counters_write(
            lambda conn: conn.execute(_DELETE_ALL).rowcount,
            lambda conn: _sql_rowcount(conn, _DELETE_ALL, {}),
        )


async def _sql_rowcount(conn: AsyncConnection, sql: str, params: dict[str, Any]) -> int:
    result: Any = await conn.execute(sa.text(sql), params)
    return int(result.rowcount)
