"""The published SDK raises its `InsufficientCreditsError`, with our code, against our server: 402
INSUFFICIENT_CREDITS for a run refused before it starts, 402 CREDITS_EXHAUSTED for a run stopped
where its org's balance ran out. Each test uses an org of its own (and, for the second, a server
whose model steps cost 1 USD each: `tests/server/test_credits.py`), so the other compat tests'
dev org is never limited."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.compat.conftest import noukai_sdk
from tests.conftest import ServerProcess
from tests.fakeprovider import FakeProvider
from tests.server.test_credits import priced_flow, start_priced_server

ECHO = {"slug": "echo", "steps": [{"id": "say", "type": "template", "template": "{{ message }}"}]}


def limited_org(server: ServerProcess, usd: list[str], *flows: dict[str, Any]) -> tuple[str, str]:
    """A new org with an org-wide admin key, these flows in its `main` project, and these grants."""
    org = f"c{uuid.uuid4().hex[:10]}"
    key = server.create_key(org)
    for document in flows:
        server.put_flow(key, org, "main", document)
    for amount in usd:
        response = httpx.post(
            f"{server.api_url}/orgs/{org}/credits",
            json={"usd": amount},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert response.status_code == 200, response.text
    return org, key


def test_a_run_refused_for_credit_is_insufficient_credits(server: ServerProcess) -> None:
    org, key = limited_org(server, ["1", "-1"], ECHO)  # a balance of exactly zero
    with noukai_sdk.Noukai(api_key=key, env="dev", org=org, project="main") as sdk:
        with pytest.raises(noukai_sdk.InsufficientCreditsError) as caught:
            sdk.flow("echo").execute(message="hello")
    assert caught.value.status_code == 402
    assert caught.value.code == "INSUFFICIENT_CREDITS"
    assert "credit" in caught.value.message


@pytest.mark.anyio
async def test_async_too(server: ServerProcess) -> None:
    org, key = limited_org(server, ["1", "-1"], ECHO)
    async with noukai_sdk.AsyncNoukai(api_key=key, env="dev", org=org, project="main") as sdk:
        with pytest.raises(noukai_sdk.InsufficientCreditsError) as caught:
            await sdk.flow("echo").execute(message="hello")
    assert (caught.value.status_code, caught.value.code) == (402, "INSUFFICIENT_CREDITS")


@pytest.fixture(scope="module")
def priced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with FakeProvider() as fake:
        server = start_priced_server(tmp_path_factory.mktemp("compat-credits"), fake)
        try:
            yield server
        finally:
            server.stop()
            shutil.rmtree(server.data_dir, ignore_errors=True)


def test_a_run_that_ran_out_is_credits_exhausted(
    priced: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    import noukai_sdk._client

    monkeypatch.setattr(noukai_sdk._client, "DEV_BASE_URL", priced.api_url)
    org, key = limited_org(priced, ["1.5"], priced_flow("three", 3))
    with noukai_sdk.Noukai(api_key=key, env="dev", org=org, project="main") as sdk:
        with pytest.raises(noukai_sdk.InsufficientCreditsError) as caught:
            sdk.flow("three").execute(message="hello")
    assert caught.value.status_code == 402
    assert caught.value.code == "CREDITS_EXHAUSTED"
    credits = httpx.get(
        f"{priced.api_url}/orgs/{org}/credits", headers={"Authorization": f"Bearer {key}"}
    ).json()
    assert credits["balanceUsd"] == "-0.500000"  # two steps charged, the third never started
