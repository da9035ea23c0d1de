"""Client configuration: constructor arguments first, then environment variables, then defaults."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx2

from noukai._constants import (
    API_VERSION,
    DEFAULT_RATE_LIMIT_RETRIES,
    DEV_BASE_URL,
    PRODUCTION_BASE_URL,
    RETRY_AFTER_CAP,
)
from noukai._errors import AuthenticationError
from noukai._version import __version__
from noukai.types import API_PREFIX

LogHandler = Callable[[dict[str, Any]], None]
Env = Literal["production", "dev", "development"]

_ENV_URLS = {"production": PRODUCTION_BASE_URL, "dev": DEV_BASE_URL, "development": DEV_BASE_URL}


@dataclass(frozen=True, slots=True)
class ClientConfig:
    api_key: str
    base_url: str
    """The API root, always ending in `/api/v1` (no trailing slash)."""
    org: str | None
    project: str | None
    timeout: float
    max_retries: int
    log_handler: LogHandler | None
    log_payloads: bool
    session_id: str | None
    rate_limit_retries: int = DEFAULT_RATE_LIMIT_RETRIES
    """How many refusals (429 or 503 with `Retry-After`) one call waits out and sends again."""
    max_rate_limit_wait: float = RETRY_AFTER_CAP
    """The longest `Retry-After` waited for; a longer one raises at once."""

    def headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.api_key}",
            "X-Noukai-API-Version": API_VERSION,
            "User-Agent": user_agent(),
            "Accept": "application/json",
        }


def user_agent() -> str:
    return (
        f"noukai-python/{__version__} (httpx2/{httpx2.__version__}; "
        f"python/{platform.python_version()}; {platform.system() or 'unknown'})"
    )


def resolve_config(
    *,
    api_key: str | None,
    env: str | None,
    base_url: str | None,
    org: str | None,
    project: str | None,
    timeout: float,
    max_retries: int,
    log_handler: LogHandler | None,
    log_payloads: bool,
    session_id: str | None,
    environ: Mapping[str, str] | None = None,
    rate_limit_retries: int = DEFAULT_RATE_LIMIT_RETRIES,
    max_rate_limit_wait: float = RETRY_AFTER_CAP,
) -> ClientConfig:
    environ = os.environ if environ is None else environ
    key = api_key if api_key is not None else environ.get("NOUKAI_API_KEY")
    key = (key or "").strip()
    if not key:
        raise AuthenticationError("no API key: pass api_key= or set NOUKAI_API_KEY")
    if not key.startswith("nk_"):
        raise AuthenticationError("API keys start with 'nk_'; check api_key= or NOUKAI_API_KEY")
    if (org is None) != (project is None):
        raise ValueError("pass org and project together (or neither)")
    for name, value in (("org", org), ("project", project)):
        if value is not None and (not value or "/" in value):
            raise ValueError(f"{name} must be a non-empty name without '/', got {value!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
    if (
        isinstance(rate_limit_retries, bool)
        or not isinstance(rate_limit_retries, int)
        or rate_limit_retries < 0
    ):
        raise ValueError(f"rate_limit_retries must be an int >= 0, got {rate_limit_retries!r}")
    wait = max_rate_limit_wait
    if isinstance(wait, bool) or not isinstance(wait, int | float) or not 0 <= wait < float("inf"):
        raise ValueError(f"max_rate_limit_wait must be a number of seconds >= 0, got {wait!r}")
    return ClientConfig(
        api_key=key,
        base_url=resolve_base_url(env=env, base_url=base_url, environ=environ),
        org=org,
        project=project,
        timeout=float(timeout),
        max_retries=max_retries,
        log_handler=log_handler,
        log_payloads=log_payloads,
        session_id=session_id,
        rate_limit_retries=rate_limit_retries,
        max_rate_limit_wait=float(wait),
    )


def resolve_base_url(*, env: str | None, base_url: str | None, environ: Mapping[str, str]) -> str:
    """Explicit arguments win over environment variables; `base_url` and `env` exclude each other."""
    if base_url is not None and env is not None:
        raise ValueError("pass either base_url or env, not both")
    if base_url is not None:
        return normalize_base_url(base_url)
    if env is not None:
        return _env_url(env, "env")
    if environ.get("NOUKAI_BASE_URL", "").strip():
        return normalize_base_url(environ["NOUKAI_BASE_URL"])
    if environ.get("NOUKAI_ENV", "").strip():
        return _env_url(environ["NOUKAI_ENV"], "NOUKAI_ENV")
    return PRODUCTION_BASE_URL


def _env_url(value: str, source: str) -> str:
    # An unknown name is refused rather than read as production: a typo must not send dev
    # traffic (and its API key) to the hosted service.
    try:
        return _ENV_URLS[value.strip().lower()]
    except KeyError:
        raise ValueError(f"{source} must be 'production' or 'dev', got {value!r}") from None


def normalize_base_url(url: str) -> str:
    """A server root (`http://127.0.0.1:8080`) or API root (`.../api/v1`) as the API root."""
    text = url.strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"base_url must be an http(s) URL, got {url!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"base_url must not carry a query or fragment, got {url!r}")
    return text if text.endswith(API_PREFIX) else text + API_PREFIX
