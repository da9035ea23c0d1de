"""The clients: `Noukai` (sync) and `AsyncNoukai` (async), with the same arguments."""

from __future__ import annotations

from types import TracebackType

import httpx2

from noukai._config import ClientConfig, LogHandler, resolve_config
from noukai._constants import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_RATE_LIMIT_RETRIES,
    DEFAULT_TIMEOUT,
    RETRY_AFTER_CAP,
)
from noukai._flows import AsyncFlow, Flow, resolve_flow
from noukai._runs import AsyncRuns, Runs
from noukai._threads import AsyncThreads, Threads
from noukai._transport import AsyncTransport, SyncTransport


class _ClientBase:
    _config: ClientConfig

    @property
    def base_url(self) -> str:
        """The API root requests go to (ends in `/api/v1`)."""
        return self._config.base_url

    @property
    def org(self) -> str | None:
        return self._config.org

    @property
    def project(self) -> str | None:
        return self._config.project

    @property
    def timeout(self) -> float:
        return self._config.timeout

    @property
    def max_retries(self) -> int:
        return self._config.max_retries

    @property
    def rate_limit_retries(self) -> int:
        """Refusals (429 or 503 with `Retry-After`) one call waits out before raising."""
        return self._config.rate_limit_retries

    def _flow_name(
        self, identifier: str | None, org: str | None, project: str | None, slug: str | None
    ) -> tuple[str, str, str]:
        return resolve_flow(
            identifier,
            org=org,
            project=project,
            slug=slug,
            default_org=self._config.org,
            default_project=self._config.project,
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._config.base_url}>"


class Noukai(_ClientBase):
    """The sync client. Reads `NOUKAI_API_KEY`, `NOUKAI_BASE_URL` and `NOUKAI_ENV` for the
    arguments not given. Use it as a context manager, or call `close()` (safe to repeat).

    `rate_limit_retries=N` waits out up to N refusals per call (a 429 or 503 with `Retry-After`:
    the server did nothing), each for the server's `Retry-After` but at most
    `max_rate_limit_wait` seconds (a longer one raises at once); the default 0 raises
    `RateLimitError` (`.retry_after`) as soon as ordinary retries (`max_retries`) are used up."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        env: str | None = None,
        base_url: str | None = None,
        org: str | None = None,
        project: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        log_handler: LogHandler | None = None,
        log_payloads: bool = False,
        session_id: str | None = None,
        rate_limit_retries: int = DEFAULT_RATE_LIMIT_RETRIES,
        max_rate_limit_wait: float = RETRY_AFTER_CAP,
        http_client: httpx2.Client | None = None,
    ) -> None:
        self._config = resolve_config(
            api_key=api_key,
            env=env,
            base_url=base_url,
            org=org,
            project=project,
            timeout=timeout,
            max_retries=max_retries,
            log_handler=log_handler,
            log_payloads=log_payloads,
            session_id=session_id,
            rate_limit_retries=rate_limit_retries,
            max_rate_limit_wait=max_rate_limit_wait,
        )
        self._transport = SyncTransport(self._config, http_client)
        self.runs = Runs(self._transport)
        """Any run by execution id: `events()` (resumable), `retrieve()`, `cancel()`."""
        self.threads = Threads(self._transport)
        """Conversations kept by the server: `create()`, `get()`, `messages()`, `delete()`,
        `fork()`, `events()` (one resumable stream across the thread's runs)."""

    def flow(
        self,
        identifier: str | None = None,
        *,
        org: str | None = None,
        project: str | None = None,
        slug: str | None = None,
    ) -> Flow:
        """A flow: `"slug"` (client defaults), `"org/project/slug"`, or `org=, project=, slug=`."""
        org, project, slug = self._flow_name(identifier, org, project, slug)
        return Flow(self._transport, org, project, slug, default_session_id=self._config.session_id)

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Noukai:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncNoukai(_ClientBase):
    """The async client: the same arguments as `Noukai`. Use `async with`, or `await aclose()`."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        env: str | None = None,
        base_url: str | None = None,
        org: str | None = None,
        project: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        log_handler: LogHandler | None = None,
        log_payloads: bool = False,
        session_id: str | None = None,
        rate_limit_retries: int = DEFAULT_RATE_LIMIT_RETRIES,
        max_rate_limit_wait: float = RETRY_AFTER_CAP,
        http_client: httpx2.AsyncClient | None = None,
    ) -> None:
        self._config = resolve_config(
            api_key=api_key,
            env=env,
            base_url=base_url,
            org=org,
            project=project,
            timeout=timeout,
            max_retries=max_retries,
            log_handler=log_handler,
            log_payloads=log_payloads,
            session_id=session_id,
            rate_limit_retries=rate_limit_retries,
            max_rate_limit_wait=max_rate_limit_wait,
        )
        self._transport = AsyncTransport(self._config, http_client)
        self.runs = AsyncRuns(self._transport)
        self.threads = AsyncThreads(self._transport)

    def flow(
        self,
        identifier: str | None = None,
        *,
        org: str | None = None,
        project: str | None = None,
        slug: str | None = None,
    ) -> AsyncFlow:
        org, project, slug = self._flow_name(identifier, org, project, slug)
        return AsyncFlow(self._transport, org, project, slug, default_session_id=self._config.session_id)

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> AsyncNoukai:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
