"""Request-rate limits per API key and per org (`[limits]` of noukai.toml; docs/deployment.md).

Every authenticated request counts against its key's rate, then its org's (key first: a runaway key
refused by its own limit does not eat the budget its org's other keys share). Over either:
429 RATE_LIMITED with `Retry-After` and `X-RateLimit-*`, before the route does anything. Requests
that pass carry `X-RateLimit-Limit` and `X-RateLimit-Remaining` (and `-Reset`) of the tighter limit.

- **Strategy**: `limits`' sliding window counter. The moving window is exact but keeps one entry
  per request (a 6000/min org is 6000 rows or list items per minute); the fixed window lets a
  client send twice its rate across a window boundary. The sliding window counter keeps two
  counters per identity and weighs the previous window by how much of it still overlaps, so
  bursts stay within the rate at constant cost.
- **Storage**: Redis when `redis_url` is set (what scaled-out deployments already run), else the
  store's `rate_counters` table (`store.rate_counters`): either way every process counts together.
- **Never limited**: what needs no key (`/health`, `/openapi.json`, the docs), and a stream's
  reconnect (a GET with `Last-Event-ID`): the server itself ends streams (lifetime, shutdown) and
  tells clients to come back; refusing the reconnect would cut a run's events off halfway for a
  request the client was told to make. Opening a stream counts.
- **A counter store that fails** lets requests through (logged): an outage of Redis must not
  become an outage of the API.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from redis.asyncio import ConnectionPool
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from noukai.types.errors import ErrorCode
from noukai_server.api.errors import ApiError
from noukai_server.config import ServerConfig
from noukai_server.store import ApiKeyRecord, Store
from noukai_server.store.rate_counters import StoreRateStorage

log = logging.getLogger(__name__)

STATE_KEY = "rate_limit"
"""Where a request's verdict waits in the ASGI scope's state for `RateLimitHeaders`."""


@dataclass(frozen=True, slots=True)
class RatePolicy:
    """Requests per minute per key and per org; None: not limited."""

    per_key: int | None = None
    per_org: int | None = None
    key_overrides: Mapping[str, int] | None = None
    org_overrides: Mapping[str, int] | None = None

    @classmethod
    def of(cls, config: ServerConfig) -> RatePolicy:
        return cls(
            config.requests_per_minute,
            config.org_requests_per_minute,
            dict(config.key_requests_per_minute_overrides),
            dict(config.org_requests_per_minute_overrides),
        )

    @property
    def active(self) -> bool:
        return bool(self.per_key or self.per_org or self.key_overrides or self.org_overrides)

    def for_key(self, key_id: str) -> int | None:
        return (self.key_overrides or {}).get(key_id, self.per_key)

    def for_org(self, org_id: str) -> int | None:
        return (self.org_overrides or {}).get(org_id, self.per_org)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The tighter limit's state after a request was counted (or refused)."""

    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int
    """Whole seconds until the limit has room again (at least 1)."""

    def headers(self) -> dict[str, str]:
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_seconds),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.reset_seconds)
        return headers


def redis_storage(url: str) -> tuple[Storage, ConnectionPool]:
    """`limits`' own Redis storage (on redis-py) over a pool of ours, which `RateLimits.aclose`
    closes (the storage itself has no close)."""
    pool = ConnectionPool.from_url(url)
    # `limits` types its pass-through options as scalars; a pool is what redis-py expects here.
    storage = RedisStorage(f"async+{url}", implementation="redispy", connection_pool=pool)  # type: ignore[arg-type]
    return storage, pool


class RateLimits:
    def __init__(self, policy: RatePolicy, storage: Storage, pool: ConnectionPool | None = None) -> None:
        self.policy = policy
        self._limiter = SlidingWindowCounterRateLimiter(storage)
        self._pool = pool

    @classmethod
    def of(cls, config: ServerConfig, store: Store) -> RateLimits | None:
        """The server's limits, or None when nothing is limited (the self-hosted default). The
        counters live in Redis when `redis_url` is set, else in the store."""
        policy = RatePolicy.of(config)
        if not policy.active:
            return None
        if config.redis_url:
            return cls(policy, *redis_storage(config.redis_url))
        return cls(policy, StoreRateStorage(store))

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()

    async def count(self, key: ApiKeyRecord) -> Verdict | None:
        """Count one request of `key` against its key's and its org's rate: the tighter verdict,
        or None when neither is limited (or the counters could not be reached)."""
        limits: list[tuple[RateLimitItem, tuple[str, str]]] = []
        if (per_key := self.policy.for_key(key.id)) is not None:
            limits.append((RateLimitItemPerMinute(per_key), ("key", key.id)))
        if (per_org := self.policy.for_org(key.org_id)) is not None:
            limits.append((RateLimitItemPerMinute(per_org), ("org", key.org_id)))
        verdicts: list[Verdict] = []
        try:
            for item, identity in limits:
                allowed = await self._limiter.hit(item, *identity)
                verdicts.append(await self._verdict(item, identity, allowed))
                if not allowed:  # key first: a refused key spends nothing of its org's rate
                    return verdicts[-1]
        except Exception:
            log.warning("rate-limit counters unavailable; request let through", exc_info=True)
            return None
        return min(verdicts, key=lambda v: v.remaining, default=None)

    async def _verdict(self, item: RateLimitItem, identity: tuple[str, str], allowed: bool) -> Verdict:
        stats = await self._limiter.get_window_stats(item, *identity)
        reset = max(1, math.ceil(stats.reset_time - time.time()))
        return Verdict(allowed, item.amount, max(0, stats.remaining), reset)


async def enforce(request: Request, key: ApiKeyRecord) -> None:
    """The hook `api.auth.api_key` calls once a key is known: count the request, or refuse it
    (429 RATE_LIMITED, nothing done)."""
    limits: RateLimits | None = getattr(request.app.state, "rate_limits", None)
    if limits is None or (request.method == "GET" and "last-event-id" in request.headers):
        return
    verdict = await limits.count(key)
    if verdict is None:
        return
    if not verdict.allowed:
        raise ApiError(
            ErrorCode.RATE_LIMITED,
            f"too many requests: at most {verdict.limit} a minute; retry in {verdict.reset_seconds} s",
            headers=verdict.headers(),
        )
    request.scope.setdefault("state", {})[STATE_KEY] = verdict


class RateLimitHeaders:
    """ASGI middleware: a counted request's response carries its `X-RateLimit-*` headers, whatever
    route answered (FastAPI routes, plain routes and streams alike)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                verdict = scope.get("state", {}).get(STATE_KEY)
                if isinstance(verdict, Verdict):
                    raw = [(k.lower().encode(), v.encode()) for k, v in verdict.headers().items()]
                    message = {**message, "headers": [*message.get("headers", []), *raw]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
