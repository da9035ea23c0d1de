from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakeprovider import FakeProvider


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def _fake_server() -> Iterator[FakeProvider]:
    # One server for the whole session: starting and stopping uvicorn per test adds up.
    with FakeProvider() as fake:
        yield fake


@pytest.fixture
def fake(_fake_server: FakeProvider) -> Iterator[FakeProvider]:
    _fake_server.clear()
    yield _fake_server
    _fake_server.clear()
