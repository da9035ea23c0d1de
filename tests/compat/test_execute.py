"""`flow.execute()` of the published SDK, sync and async, against a real server."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.compat.conftest import noukai_sdk, sdk_at_least
from tests.conftest import ServerProcess


def test_sync_execute_echo_returns_the_message(client: Any) -> None:
    result = client.flow("echo").execute(message="The cat sat on the mat.")
    assert result.status == "completed"
    assert result.result == "The cat sat on the mat."
    assert result.block_count == 1
    assert uuid.UUID(result.execution_id)
    assert result.flow_id


@pytest.mark.anyio
async def test_async_execute_echo(async_client_factory: Any) -> None:
    async with async_client_factory() as sdk:
        result = await sdk.flow("dev/main/echo").execute(message="async hello")
    assert result.status == "completed"
    assert result.result == "async hello"


def test_explicit_identifier_form(client: Any, server: ServerProcess) -> None:
    flow = client.flow(org="dev", project="main", slug="echo")
    assert flow.execute(message="x y").result == "x y"


def test_template_flow_returns_the_last_steps_structure(client: Any) -> None:
    result = client.flow("greet").execute(parameters={"name": "Ada", "count": 3})
    assert result.result == {"greeting": "Hello, Ada!", "shout": "HELLO, ADA!", "count": 3}
    assert result.block_count == 2


def test_when_false_skips_the_step_and_the_result_is_the_last_executed_one(client: Any) -> None:
    skipped = client.flow("maybe").execute(message="keep me", parameters={"polish": False})
    assert skipped.result == "keep me"
    polished = client.flow("maybe").execute(message="keep me", parameters={"polish": True})
    assert polished.result == "KEEP ME"


def test_foreach_runs_the_step_per_item(client: Any) -> None:
    result = client.flow("shout-all").execute(parameters={"items": ["a", "bc", "d"]})
    assert result.result == "A, BC, D"


def test_unknown_flow_is_flow_not_found(client: Any) -> None:
    with pytest.raises(noukai_sdk.FlowNotFoundError) as info:
        client.flow("no-such-flow").execute(message="hi")
    assert info.value.status_code == 404
    assert info.value.code == "FLOW_NOT_FOUND"
    assert info.value.request_id


def test_unknown_version_is_flow_not_found(client: Any) -> None:
    with pytest.raises(noukai_sdk.FlowNotFoundError):
        client.flow("echo").execute(message="hi", version=42)


def test_wrong_key_is_authentication_error(server: ServerProcess) -> None:
    with noukai_sdk.Noukai(api_key="nk_not_a_real_key", env="dev") as sdk:
        with pytest.raises(noukai_sdk.AuthenticationError) as info:
            sdk.flow("dev/main/echo").execute(message="hi")
    assert info.value.status_code == 401
    assert info.value.code == "UNAUTHENTICATED"


def test_key_of_another_org_is_permission_denied(server: ServerProcess) -> None:
    other = server.create_key("other-org")
    with noukai_sdk.Noukai(api_key=other, env="dev") as sdk:
        with pytest.raises(noukai_sdk.PermissionDeniedError) as info:
            sdk.flow("dev/main/echo").execute(message="hi")
    assert info.value.status_code == 403


def test_failing_step_is_flow_execution_error_with_its_code(client: Any) -> None:
    with pytest.raises(noukai_sdk.FlowExecutionError) as info:
        client.flow("broken").execute(parameters={"config": {}})
    assert info.value.code == "TEMPLATE_ERROR"
    assert "boom" in str(info.value)


def test_missing_message_is_flow_execution_error(client: Any) -> None:
    with pytest.raises(noukai_sdk.FlowExecutionError) as info:
        client.flow("echo").execute()
    assert info.value.code == "MISSING_MESSAGE"
    assert info.value.status_code == 400


@pytest.mark.anyio
async def test_async_errors_map_the_same_way(async_client_factory: Any) -> None:
    async with async_client_factory() as sdk:
        with pytest.raises(noukai_sdk.FlowNotFoundError):
            await sdk.flow("nope").execute(message="hi")
        with pytest.raises(noukai_sdk.FlowExecutionError):
            await sdk.flow("broken").execute(parameters={"config": {}})


def test_version_routing(server: ServerProcess, client: Any) -> None:
    slug = f"routed-{uuid.uuid4().hex[:8]}"

    def document(text: str) -> dict[str, Any]:
        return {"slug": slug, "steps": [{"id": "t", "type": "template", "template": text}]}

    server.put_flow(server.dev_key, "dev", "main", document("draft only"))
    flow = client.flow(slug)
    # Never published: the base path falls back to the draft.
    assert flow.execute().result == "draft only"
    server.put_flow(server.dev_key, "dev", "main", document("version one"), publish=True)
    server.put_flow(server.dev_key, "dev", "main", document("the new draft"))
    assert flow.execute().result == "version one"
    assert flow.execute(version=1).result == "version one"
    if sdk_at_least("0.5.1"):
        # 0.5.1+ sends "draft" as /v0 and "production" as the base path.
        assert flow.execute(version="draft").result == "the new draft"
        assert flow.execute(version="production").result == "version one"
    else:
        assert flow.execute(version=0).result == "the new draft"
