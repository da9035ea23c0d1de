"""Drive the real, unmodified published `noukai-sdk` against a real server socket.

`make compat` runs this folder once per published version, layered over the project env with
`uv run --with noukai-sdk==X`. The SDK only knows two hosts; its documented `env="dev"` resolves a
module constant when the client is built, so pointing that constant at the test server's port is
the whole adaptation (contract section 9).
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ServerProcess

noukai_sdk = pytest.importorskip("noukai_sdk")

SDK_VERSION = importlib.metadata.version("noukai-sdk")


def pytest_report_header() -> str:
    return f"published noukai-sdk {SDK_VERSION}"


def pytest_configure() -> None:
    expected = os.environ.get("NOUKAI_COMPAT_SDK_VERSION")
    if expected and expected != SDK_VERSION:
        raise pytest.UsageError(f"expected noukai-sdk {expected}, found {SDK_VERSION}")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _point_sdk_at(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    import noukai_sdk._client

    monkeypatch.setattr(noukai_sdk._client, "DEV_BASE_URL", server.api_url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv("NOUKAI_API_KEY", raising=False)


@pytest.fixture
def client(server: ServerProcess) -> Iterator[Any]:
    with noukai_sdk.Noukai(api_key=server.dev_key, env="dev", org="dev", project="main") as sdk:
        yield sdk


@pytest.fixture
def async_client_factory(server: ServerProcess) -> Any:
    def make(**kwargs: Any) -> Any:
        kwargs.setdefault("api_key", server.dev_key)
        return noukai_sdk.AsyncNoukai(env="dev", org="dev", project="main", **kwargs)

    return make


def sdk_at_least(version: str) -> bool:
    def parts(text: str) -> tuple[int, ...]:
        return tuple(int(p) for p in text.split(".")[:3])

    return parts(SDK_VERSION) >= parts(version)
