"""What a model call cost, in US dollars, from its token usage.

Prices are list prices per million tokens. They change more often than this code, so operators
override or add entries in the server config (`ProviderSettings.prices`); a model nobody priced
costs 0 rather than failing a run.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal

from noukai_server.providers.base import Usage

__all__ = ["DEFAULT_PRICES", "Price", "PriceTable", "format_cost"]

Price = tuple[Decimal, Decimal]
"""(input, output) USD per 1M tokens."""

_MILLION = Decimal(1_000_000)
_SIX_PLACES = Decimal("0.000001")


def _p(input_per_m: str, output_per_m: str) -> Price:
    return Decimal(input_per_m), Decimal(output_per_m)


# Public list prices (USD per 1M input / output tokens, standard tier, no caching or batch
# discount) as last known to the author, around late 2025; newer models (the SDKs know of later
# ones) are unpriced until an operator adds them. Good enough for cost estimates.
DEFAULT_PRICES: Mapping[str, Price] = {
    "openai:gpt-4o": _p("2.50", "10.00"),
    "openai:gpt-4o-mini": _p("0.15", "0.60"),
    "openai:gpt-4.1": _p("2.00", "8.00"),
    "openai:gpt-4.1-mini": _p("0.40", "1.60"),
    "openai:gpt-4.1-nano": _p("0.10", "0.40"),
    "openai:gpt-5": _p("1.25", "10.00"),
    "openai:gpt-5-mini": _p("0.25", "2.00"),
    "openai:gpt-5-nano": _p("0.05", "0.40"),
    "openai:gpt-5.1": _p("1.25", "10.00"),
    "openai:o3": _p("2.00", "8.00"),
    "openai:o3-mini": _p("1.10", "4.40"),
    "openai:o4-mini": _p("1.10", "4.40"),
    "anthropic:claude-3-haiku": _p("0.25", "1.25"),
    "anthropic:claude-3-5-haiku": _p("0.80", "4.00"),
    "anthropic:claude-3-5-sonnet": _p("3.00", "15.00"),
    "anthropic:claude-3-7-sonnet": _p("3.00", "15.00"),
    "anthropic:claude-sonnet-4": _p("3.00", "15.00"),
    "anthropic:claude-sonnet-4-5": _p("3.00", "15.00"),
    "anthropic:claude-haiku-4-5": _p("1.00", "5.00"),
    "anthropic:claude-opus-4": _p("15.00", "75.00"),
    "anthropic:claude-opus-4-1": _p("15.00", "75.00"),
    "anthropic:claude-opus-4-5": _p("5.00", "25.00"),
}

# What may follow a priced name in a longer model name: dated snapshots ("gpt-4o-2024-08-06",
# "claude-sonnet-4-20250514") and Vertex-style versions ("claude-3-5-sonnet@20240620").
_SUFFIX_STARTS = ("-", "@")


class PriceTable:
    """Prices by `provider:model`, with dated model names matched to their longest priced prefix."""

    def __init__(self, overrides: Mapping[str, Price] | None = None) -> None:
        self._prices: dict[str, Price] = dict(DEFAULT_PRICES)
        for key, (input_per_m, output_per_m) in (overrides or {}).items():
            # Decimal(str(...)) so a float from a config file keeps the digits the operator wrote.
            self._prices[key] = (Decimal(str(input_per_m)), Decimal(str(output_per_m)))

    def price(self, provider: str, model: str) -> Price | None:
        """The price of `provider:model`, or None when neither it nor a prefix of it is priced."""
        if provider == "builtin":
            return Decimal(0), Decimal(0)
        ref = f"{provider}:{model}"
        exact = self._prices.get(ref)
        if exact is not None:
            return exact
        best: str | None = None
        for key in self._prices:
            if (
                ref.startswith(key)
                and ref[len(key)] in _SUFFIX_STARTS
                and (best is None or len(key) > len(best))
            ):
                best = key
        return self._prices[best] if best is not None else None

    def cost_usd(self, provider: str, model: str, usage: Usage) -> Decimal:
        """Dollars spent on `usage` (Decimal(0) for unpriced models)."""
        price = self.price(provider, model)
        if price is None:
            return Decimal(0)
        input_per_m, output_per_m = price
        return (usage.prompt_tokens * input_per_m + usage.completion_tokens * output_per_m) / _MILLION


def format_cost(value: Decimal) -> str:
    """The wire's `costUsd`: a decimal string with exactly six places, e.g. `"0.000150"`."""
    return format(value.quantize(_SIX_PLACES, rounding=ROUND_HALF_UP), "f")
