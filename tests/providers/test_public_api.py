from __future__ import annotations

import inspect

import pytest

import noukai.providers
from noukai.providers import base


def test_all_is_unique_and_importable() -> None:
    names = noukai.providers.__all__
    assert len(names) == len(set(names))
    for name in names:
        assert getattr(noukai.providers, name) is not None


def test_everything_in_base_is_reexported() -> None:
    own = {
        name
        for name, value in vars(base).items()
        if not name.startswith("_") and (inspect.isclass(value) and value.__module__ == base.__name__)
    }
    assert own | {"Role", "ToolChoice", "ModelEvent"} <= set(noukai.providers.__all__)


def test_sdk_adapters_are_reexported_lazily() -> None:
    from noukai.providers.anthropic_client import AnthropicMessagesClient
    from noukai.providers.openai_client import OpenAIChatClient

    assert noukai.providers.OpenAIChatClient is OpenAIChatClient
    assert noukai.providers.AnthropicMessagesClient is AnthropicMessagesClient


def test_unknown_attributes_still_raise() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        getattr(noukai.providers, "NoSuchThing")
