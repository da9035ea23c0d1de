"""Flows for the protocol endpoints, pushed into their own org of the session's server (so the
fixture flows of dev/main, which other tests list, stay as they are)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import ServerProcess

ORG = "proto"
PROJECT = "chat"

WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}

FLOWS: list[dict[str, Any]] = [
    {
        "slug": "echo",
        "name": "Echo",
        "steps": [{"id": "say", "type": "llm", "model": "builtin:echo", "prompt": "{{ message }}"}],
    },
    {
        "slug": "chain",
        "name": "Two echo steps: only the last one is the answer",
        "steps": [
            {"id": "one", "type": "llm", "model": "builtin:echo", "prompt": "first {{ message }}"},
            {"id": "two", "type": "llm", "model": "builtin:echo", "prompt": "then {{ steps.one.output }}"},
        ],
    },
    {
        "slug": "agent",
        "name": "One agent step with the caller's tools",
        "steps": [{"id": "agent", "type": "agent", "model": "builtin:test", "prompt": "{{ message }}"}],
    },
    {
        "slug": "greet",
        "name": "A template answer from declared inputs",
        "inputs": {
            "name": {"type": "string", "description": "Who to greet"},
            "excited": {"type": "boolean", "default": False},
        },
        "steps": [
            {"id": "hello", "type": "template", "template": "Hello, {{ parameters.name }}!"},
            {
                "id": "shape",
                "type": "template",
                "template": {"greeting": "{{ steps.hello.output }}", "excited": "{{ parameters.excited }}"},
            },
        ],
    },
    {
        "slug": "broken",
        "name": "Fails at its second step",
        "steps": [
            {"id": "ok", "type": "llm", "model": "builtin:echo", "prompt": "{{ message }}"},
            {"id": "boom", "type": "template", "template": "{{ parameters.config.missing }}"},
        ],
    },
    {
        "slug": "slow",
        "name": "Streams one word every 300 ms",
        "steps": [
            {
                "id": "say",
                "type": "llm",
                "model": "builtin:echo",
                "prompt": "{{ message }}",
                "params": {"token_delay_ms": 300},
            }
        ],
    },
    {
        "slug": "limited",
        "name": "A provider that is always rate limited",
        "steps": [
            {
                "id": "ask",
                "type": "llm",
                "model": "builtin:flaky",
                "prompt": "{{ message }}",
                "params": {"fail_times": 9, "fail_with": "rate_limited"},
                "retry": {"max_attempts": 1},
            }
        ],
    },
]


@dataclass
class Tenant:
    server: ServerProcess
    key: str
    org: str = ORG
    project: str = PROJECT

    def model(self, slug: str) -> str:
        return f"{self.org}/{self.project}/{slug}"


@pytest.fixture(scope="session")
def tenant(server: ServerProcess) -> Tenant:
    key = server.create_key(ORG)
    for document in FLOWS:
        server.put_flow(key, ORG, PROJECT, document, publish=document["slug"] == "echo")
    return Tenant(server, key)
