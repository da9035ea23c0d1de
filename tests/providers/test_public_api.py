from __future__ import annotations

import inspect

import pytest

import noukai_server.providers
from noukai_server.providers import base
from tests.public_api import assert_reexported


def test_all_is_unique_and_importable() -> None:
    names = noukai_server.providers.__all__
    assert len(names) == len(set(names))
    for name in names:
        assert_reexported(noukai_server.providers, name)


def test_everything_in_base_is_reexported() -> None:
    own = {
        name
        for name, value in vars(base).items()
        if not name.startswith("_") and (inspect.isclass(value) and value.__module__ == base.__name__)
    }
    assert own | {"Role", "ToolChoice", "ModelEvent"} <= set(noukai_server.providers.__all__)


def test_sdk_adapters_are_reexported_lazily() -> None:
    from noukai_server.providers.anthropic_client import AnthropicMessagesClient
    from noukai_server.providers.openai_client import OpenAIChatClient

    assert noukai_server.providers.OpenAIChatClient is OpenAIChatClient
    assert noukai_server.providers.AnthropicMessagesClient is AnthropicMessagesClient


def test_unknown_attributes_still_raise() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        getattr(noukai_server.providers, "NoSuchThing")
