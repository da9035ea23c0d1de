from __future__ import annotations

from decimal import Decimal

import pytest

from noukai_server.providers import PriceTable, Usage, format_cost


def test_cost_of_a_known_model() -> None:
    table = PriceTable()
    cost = table.cost_usd("openai", "gpt-4o-mini", Usage(prompt_tokens=1000, completion_tokens=500))
    # 1000 * 0.15/1M + 500 * 0.60/1M
    assert cost == Decimal("0.00045")
    assert format_cost(cost) == "0.000450"


@pytest.mark.parametrize(
    ("provider", "model", "priced_as"),
    [
        ("openai", "gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("openai", "gpt-4o-2024-08-06", "gpt-4o"),
        ("openai", "gpt-4.1-nano-2025-04-14", "gpt-4.1-nano"),
        ("anthropic", "claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("anthropic", "claude-opus-4-1-20250805", "claude-opus-4-1"),
        ("anthropic", "claude-3-5-sonnet@20240620", "claude-3-5-sonnet"),
    ],
)
def test_dated_names_match_the_longest_priced_prefix(provider: str, model: str, priced_as: str) -> None:
    table = PriceTable()
    assert table.price(provider, model) == table.price(provider, priced_as)
    assert table.price(provider, model) is not None


def test_a_prefix_must_end_at_a_name_boundary() -> None:
    assert PriceTable().price("openai", "gpt-4oxyz") is None


def test_builtin_models_are_free() -> None:
    table = PriceTable()
    assert table.price("builtin", "echo") == (Decimal(0), Decimal(0))
    assert table.cost_usd("builtin", "test", Usage(10**6, 10**6)) == Decimal(0)


@pytest.mark.parametrize(
    ("provider", "model"), [("openai", "my-finetune"), ("ollama", "llama3"), ("anthropic", "claude")]
)
def test_unknown_models_cost_nothing(provider: str, model: str) -> None:
    table = PriceTable()
    assert table.price(provider, model) is None
    assert table.cost_usd(provider, model, Usage(123, 456)) == Decimal(0)


def test_overrides_add_and_replace_prices() -> None:
    table = PriceTable({"ollama:llama3": (Decimal("0.10"), Decimal("0.20")), "openai:gpt-4o": (1, 2)})  # type: ignore[dict-item]
    assert table.cost_usd("ollama", "llama3", Usage(10**6, 10**6)) == Decimal("0.30")
    assert table.price("openai", "gpt-4o") == (Decimal(1), Decimal(2))
    assert table.price("openai", "gpt-4o-2024-08-06") == (Decimal(1), Decimal(2))


def test_float_overrides_keep_the_written_digits() -> None:
    table = PriceTable({"x:y": (0.1, 0.3)})  # type: ignore[dict-item]
    assert table.price("x", "y") == (Decimal("0.1"), Decimal("0.3"))


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal(0), "0.000000"),
        (Decimal("0.00015"), "0.000150"),
        (Decimal("0.0000005"), "0.000001"),
        (Decimal("0.00000049"), "0.000000"),
        (Decimal("1E-7"), "0.000000"),
        (Decimal("1E+2"), "100.000000"),
        (Decimal("12.5"), "12.500000"),
        (Decimal("1.23456789"), "1.234568"),
    ],
)
def test_format_cost_has_exactly_six_decimals(value: Decimal, text: str) -> None:
    assert format_cost(value) == text
