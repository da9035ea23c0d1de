"""A real engine (builtin models, default functions, the sandboxed templates) writing to a sink that
keeps events in memory, with a recorded sleep so retries take no time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from noukai_server.engine import FlowEngine, RunInputs, RunState, default_functions
from noukai_server.engine.outcome import Outcome
from noukai_server.flows import FlowSpec, TemplateEngine, load_flow
from noukai_server.providers import ModelRegistry, ProviderSettings


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class MemorySink:
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    checkpoints: list[int] = field(default_factory=list)

    async def emit(self, event_type: str, payload: Mapping[str, Any]) -> None:
        self.events.append((event_type, dict(payload)))

    async def checkpoint(self, next_step_index: int, state: RunState) -> None:
        self.checkpoints.append(next_step_index)

    def of(self, *types: str) -> list[tuple[str, dict[str, Any]]]:
        return [(t, p) for t, p in self.events if t in types]


@dataclass
class Harness:
    engine: FlowEngine
    sleeps: list[float]

    async def run(
        self, document: dict[str, Any], message: str | None = "hi", **kwargs: Any
    ) -> tuple[Outcome, MemorySink, RunState]:
        spec: FlowSpec = load_flow(document, known_functions=set(default_functions().names()))
        sink = MemorySink()
        state = RunState()
        outcome = await self.engine.run(
            spec, RunInputs(message=message), state, sink, run={"id": "r"}, **kwargs
        )
        return outcome, sink, state


@pytest.fixture
def harness() -> Harness:
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    engine = FlowEngine(
        ModelRegistry(ProviderSettings()),
        default_functions(),
        TemplateEngine(),
        sleep=sleep,
        jitter=lambda: 0.5,
    )
    return Harness(engine, sleeps)
