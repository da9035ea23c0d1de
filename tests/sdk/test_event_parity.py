"""The SDK's event models know every key the server writes: for each event of the wire schema
(`noukai.types.EVENT_PAYLOADS`), the model the SDK parses it into declares a field, by its wire
alias, for every key of the event's TypedDict. A key added to the schema without a field here fails,
naming the key (the SDK would otherwise leave it in `model_extra`, untyped)."""

from __future__ import annotations

import typing

import pytest
from pydantic import BaseModel

from noukai._events import _CLASSES, sdk_type
from noukai.types import EVENT_PAYLOADS, StepOutputPayload

DISCRIMINATOR = "eventType"
"""Not a field of its own: it picks the model (and lands in `.type`)."""


def payload_keys(payload: type) -> set[str]:
    return set(typing.get_type_hints(payload)) - {DISCRIMINATOR}


def declared_aliases(model: type[BaseModel]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


def missing_fields(payload: type, model: type[BaseModel]) -> list[str]:
    return sorted(payload_keys(payload) - declared_aliases(model))


@pytest.mark.parametrize("wire_name", sorted(EVENT_PAYLOADS))
def test_the_sdk_model_declares_every_key_of_the_payload(wire_name: str) -> None:
    model = _CLASSES[sdk_type(wire_name)]
    missing = missing_fields(EVENT_PAYLOADS[wire_name], model)
    assert missing == [], f"{model.__name__} ({wire_name}) declares no field for {', '.join(missing)}"


def test_the_comparison_sees_a_missing_key() -> None:
    class Newer(StepOutputPayload):
        tokensSoFar: int

    assert missing_fields(Newer, _CLASSES["step_output"]) == ["tokensSoFar"]
    assert missing_fields(StepOutputPayload, _CLASSES["step_output"]) == []
