"""HTTP for both clients: headers, retries, time budgets, error mapping and the logging hook.

Everything that decides (what to send, whether to retry, how long to wait, which error to raise,
what to log) lives in `_TransportBase`; `SyncTransport` and `AsyncTransport` only send and sleep.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2

from noukai._config import ClientConfig
from noukai._errors import (
    APIConnectionError,
    APITimeoutError,
    NoukaiError,
    error_from_response,
    parse_body,
    parse_retry_after,
)
from noukai._retry import RetryPolicy

logger = logging.getLogger("noukai")

_NO_BODY: Any = object()


@dataclass(frozen=True, slots=True)
class Call:
    """One logical request (its retries included)."""

    method: str
    path: str
    """Relative to the API root, starting with `/`."""
    json: Any = _NO_BODY
    params: Mapping[str, str | Sequence[str]] | None = None
    """Query parameters; a sequence of values repeats the name (`metadata=a:1&metadata=b:2`)."""
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None
    idempotent: bool = False
    """Safe to send twice even without an Idempotency-Key (e.g. cancel)."""

    @property
    def replayable(self) -> bool:
        return self.method == "GET" or self.idempotent or "Idempotency-Key" in self.headers

    @property
    def has_body(self) -> bool:
        return self.json is not _NO_BODY


def _query(params: Mapping[str, str | Sequence[str]] | None) -> list[tuple[str, str]] | None:
    if not params:
        return None
    return [
        (name, value)
        for name, values in params.items()
        for value in ([values] if isinstance(values, str) else values)
    ]


@dataclass(slots=True)
class Tries:
    """What one call has used: ordinary retries (`max_retries`) and refusals waited out
    (`rate_limit_retries`)."""

    retries: int = 0
    refusals: int = 0

    @property
    def total(self) -> int:
        return self.retries + self.refusals


@dataclass(frozen=True, slots=True)
class ApiResponse:
    status_code: int
    headers: httpx2.Headers
    body: Any
    request_id: str | None


class _TransportBase:
    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self._policy = RetryPolicy(
            max_retries=config.max_retries,
            retry_after_cap=config.max_rate_limit_wait,
            rate_limit_retries=config.rate_limit_retries,
        )
        self._rng = random.Random()

    # -- requests ---------------------------------------------------------------------------

    def _timeout(self, call: Call) -> float:
        return call.timeout if call.timeout is not None else self.config.timeout

    def _request_kwargs(self, call: Call, *, timeout: httpx2.Timeout) -> dict[str, Any]:
        headers = {**self.config.headers(), **call.headers}
        kwargs: dict[str, Any] = {
            "method": call.method,
            "url": self.config.base_url + call.path,
            "headers": headers,
            "params": _query(call.params),
            "timeout": timeout,
        }
        if call.has_body:
            kwargs["json"] = call.json
        return kwargs

    def _stream_timeout(self, read_timeout: float) -> httpx2.Timeout:
        t = self.config.timeout
        return httpx2.Timeout(connect=t, read=read_timeout, write=t, pool=t)

    def _after_transport_error(self, call: Call, tries: Tries, exc: httpx2.TransportError) -> float:
        """Seconds to wait before retrying (counted in `tries`), or raises the SDK's error for `exc`."""
        if isinstance(exc, httpx2.TimeoutException):
            raise APITimeoutError(f"{call.method} {call.path} timed out") from exc
        delay = self._policy.after_connection_error(tries.retries, replayable=call.replayable, rng=self._rng)
        if delay is None:
            raise APIConnectionError(f"{call.method} {call.path} failed: {exc!r}") from exc
        self._log_retry(call, tries.total, delay, f"{type(exc).__name__}")
        tries.retries += 1
        return delay

    def _after_answer(
        self, call: Call, tries: Tries, status: int, headers: httpx2.Headers, raw: bytes
    ) -> ApiResponse | tuple[NoukaiError, float | None]:
        """The answer, or its error and the wait before sending again (None: raise it); counts
        the retry it plans in `tries`."""
        attempt = tries.total
        request_id = headers.get("x-request-id")
        body = parse_body(raw)
        self._log_response(call, attempt, status, request_id, body)
        if 200 <= status < 300:
            return ApiResponse(status, headers, body, request_id)
        error = error_from_response(status, headers, raw)
        retry_after = parse_retry_after(headers.get("retry-after"))
        delay = self._policy.after_refusal(tries.refusals, error, retry_after=retry_after)
        if delay is not None:
            tries.refusals += 1
        else:
            delay = self._policy.after_error(
                tries.retries, error, replayable=call.replayable, rng=self._rng, retry_after=retry_after
            )
            if delay is not None:
                tries.retries += 1
        if delay is not None:
            self._log_retry(call, attempt, delay, f"HTTP {status}")
        return error, delay

    # -- logging ----------------------------------------------------------------------------

    def _emit(self, event: dict[str, Any]) -> None:
        handler = self.config.log_handler
        if handler is None:
            return
        try:
            handler(event)
        except Exception:  # a broken log hook must not break the call it reports on
            logger.exception("noukai log_handler raised")

    def _log_request(self, call: Call, retries: int) -> None:
        event: dict[str, Any] = {
            "phase": "request",
            "method": call.method,
            "path": call.path,
            "attempt": retries + 1,
        }
        if self.config.log_payloads and call.has_body:
            event["request_body"] = call.json
        self._emit(event)

    def _log_response(
        self, call: Call, retries: int, status: int, request_id: str | None, body: Any = _NO_BODY
    ) -> None:
        event: dict[str, Any] = {
            "phase": "response",
            "method": call.method,
            "path": call.path,
            "attempt": retries + 1,
            "status_code": status,
            "request_id": request_id,
        }
        if self.config.log_payloads and body is not _NO_BODY:
            event["response_body"] = body
        self._emit(event)

    def _log_retry(self, call: Call, retries: int, delay: float, reason: str) -> None:
        self._emit(
            {
                "phase": "retry",
                "method": call.method,
                "path": call.path,
                "attempt": retries + 1,
                "delay": delay,
                "reason": reason,
            }
        )

    def log_stream_retry(self, path: str, attempt: int, delay: float, reason: str) -> None:
        self._emit(
            {
                "phase": "retry",
                "method": "GET",
                "path": path,
                "attempt": attempt,
                "delay": delay,
                "reason": reason,
            }
        )

    def _deadline_check(self, call: Call, deadline: float) -> None:
        # The server keeps a long /execute alive with whitespace, so a read timeout alone would
        # never fire; the call's budget is checked between chunks.
        if time.monotonic() > deadline:
            raise httpx2.ReadTimeout(f"{call.method} {call.path} exceeded its {self._timeout(call)} s budget")


class SyncTransport(_TransportBase):
    def __init__(self, config: ClientConfig, http_client: httpx2.Client | None = None) -> None:
        super().__init__(config)
        self._owns_client = http_client is None
        self.http = http_client or httpx2.Client(timeout=config.timeout, follow_redirects=False)

    def request(self, call: Call) -> ApiResponse:
        tries = Tries()
        while True:
            self._log_request(call, tries.total)
            try:
                status, headers, raw = self._send(call)
            except httpx2.TransportError as exc:
                self.sleep(self._after_transport_error(call, tries, exc))
                continue
            outcome = self._after_answer(call, tries, status, headers, raw)
            if isinstance(outcome, ApiResponse):
                return outcome
            error, delay = outcome
            if delay is None:
                raise error
            self.sleep(delay)

    def _send(self, call: Call) -> tuple[int, httpx2.Headers, bytes]:
        budget = self._timeout(call)
        deadline = time.monotonic() + budget
        kwargs = self._request_kwargs(call, timeout=httpx2.Timeout(budget))
        with self.http.stream(**kwargs) as response:
            chunks = []
            for chunk in response.iter_bytes():
                chunks.append(chunk)
                self._deadline_check(call, deadline)
            return response.status_code, response.headers, b"".join(chunks)

    @contextmanager
    def stream(self, call: Call, *, read_timeout: float) -> Iterator[httpx2.Response]:
        """Open a streaming response (no retries here: the stream machine decides)."""
        self._log_request(call, 0)
        kwargs = self._request_kwargs(call, timeout=self._stream_timeout(read_timeout))
        with self.http.stream(**kwargs) as response:
            self._log_response(call, 0, response.status_code, response.headers.get("x-request-id"))
            yield response

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def close(self) -> None:
        if self._owns_client:
            self.http.close()


class AsyncTransport(_TransportBase):
    def __init__(self, config: ClientConfig, http_client: httpx2.AsyncClient | None = None) -> None:
        super().__init__(config)
        self._owns_client = http_client is None
        self.http = http_client or httpx2.AsyncClient(timeout=config.timeout, follow_redirects=False)

    async def request(self, call: Call) -> ApiResponse:
        tries = Tries()
        while True:
            self._log_request(call, tries.total)
            try:
                status, headers, raw = await self._send(call)
            except httpx2.TransportError as exc:
                await self.sleep(self._after_transport_error(call, tries, exc))
                continue
            outcome = self._after_answer(call, tries, status, headers, raw)
            if isinstance(outcome, ApiResponse):
                return outcome
            error, delay = outcome
            if delay is None:
                raise error
            await self.sleep(delay)

    async def _send(self, call: Call) -> tuple[int, httpx2.Headers, bytes]:
        budget = self._timeout(call)
        deadline = time.monotonic() + budget
        kwargs = self._request_kwargs(call, timeout=httpx2.Timeout(budget))
        async with self.http.stream(**kwargs) as response:
            chunks = []
            async for chunk in response.aiter_bytes():
                chunks.append(chunk)
                self._deadline_check(call, deadline)
            return response.status_code, response.headers, b"".join(chunks)

    @asynccontextmanager
    async def stream(self, call: Call, *, read_timeout: float) -> AsyncIterator[httpx2.Response]:
        self._log_request(call, 0)
        kwargs = self._request_kwargs(call, timeout=self._stream_timeout(read_timeout))
        async with self.http.stream(**kwargs) as response:
            self._log_response(call, 0, response.status_code, response.headers.get("x-request-id"))
            yield response

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)

    async def aclose(self) -> None:
        if self._owns_client:
            await self.http.aclose()
