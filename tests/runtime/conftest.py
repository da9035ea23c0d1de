"""A real SQLite store on a movable clock, for the runtime services tested in process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from noukai_server.store import Store
from tests.store.conftest import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def sqlite_store(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Store]:
    opened = await Store.connect(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}", clock=clock)
    try:
        yield opened
    finally:
        await opened.close()
