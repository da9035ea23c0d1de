"""`[providers.NAME]`: named model endpoints, their keys (by environment variable) and prices."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from string import Template
from typing import Any

from noukai_server.config import ConfigError
from noukai_server.providers import NamedProvider
from noukai_server.providers.pricing import Price
from noukai_server.providers.registry import BUILT_IN_PROVIDERS
from noukai_server.settings.source import ConfigFile, did_you_mean

_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KEYS = ("kind", "base_url", "api_key_env", "headers", "timeout_seconds", "models")
_PRICE_KEYS = ("input_per_million", "output_per_million")
NO_KEY = "none"
"""Sent as the key by a provider without `api_key_env`: local servers that check no key accept it."""


@dataclass(frozen=True, slots=True)
class ProviderEntry:
    """A named provider as configured, for `config show` (never the key itself)."""

    name: str
    provider: NamedProvider
    api_key_env: str | None
    key_is_set: bool
    headers_as_written: Mapping[str, str]
    prices: Mapping[str, Price] = field(default_factory=dict)


class _Reader:
    def __init__(self, file: ConfigFile, environ: Mapping[str, str], name: str) -> None:
        self.file, self.environ, self.name = file, environ, name

    def fail(self, key: str | None, message: str, *, section: tuple[str, ...] = ()) -> ConfigError:
        section = section or ("providers", self.name)
        where = self.file.where(section, key)
        header = ".".join(
            part if part.replace("_", "").replace("-", "").isalnum() else f'"{part}"' for part in section
        )
        label = f"[{header}]" + (f" {key}" if key else "")
        return ConfigError(f"{where}: {label}: {message}")

    def text(self, table: Mapping[str, Any], key: str) -> str | None:
        value = table.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"{value!r} is not allowed: expected a non-empty string")
        return value.strip()

    def expand(self, key: str, text: str, what: str) -> str:
        """`text` with `${VAR}` replaced by the variable's value (a missing one is an error)."""
        try:
            return Template(text).substitute(self.environ)
        except KeyError as exc:
            raise self.fail(
                key, f"{what} refers to the environment variable {exc.args[0]}, which is not set"
            ) from None
        except ValueError as exc:
            raise self.fail(key, f"{what}: {exc} (write $$ for a literal $)") from None

    def headers(self, value: Any) -> tuple[dict[str, str], dict[str, str]]:
        """(as written, with `${VAR}` replaced by the variable's value)."""
        if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
            raise self.fail("headers", 'expected a table of header = "value" strings')
        expanded = {name: self.expand("headers", text, f"header {name!r}") for name, text in value.items()}
        return dict(value), expanded

    def price(self, model: str, table: Any) -> Price:
        section = ("providers", self.name, "models", model)
        if not isinstance(table, Mapping):
            raise self.fail(None, f"models.{model!r} must be a table of {', '.join(_PRICE_KEYS)}")
        for key in table:
            if key not in _PRICE_KEYS:
                hint = did_you_mean(key, _PRICE_KEYS)
                raise self.fail(key, f"unknown key{hint}; allowed: {', '.join(_PRICE_KEYS)}", section=section)
        values: list[Decimal] = []
        for key in _PRICE_KEYS:
            value = table.get(key)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise self.fail(
                    key,
                    f"{value!r} is not allowed: expected a number >= 0 (USD per 1M tokens)",
                    section=section,
                )
            # Through str so that 0.15 stays exactly 0.15.
            values.append(Decimal(str(value)))
        return values[0], values[1]


def parse_providers(table: Any, file: ConfigFile, environ: Mapping[str, str]) -> dict[str, ProviderEntry]:
    if not isinstance(table, Mapping):
        raise ConfigError(f"{file.where(('providers',))}: [providers] must hold [providers.NAME] tables")
    return {name: _provider(name, body, _Reader(file, environ, name)) for name, body in table.items()}


def _provider(name: str, body: Any, read: _Reader) -> ProviderEntry:
    if not _NAME.match(name):
        raise read.fail(
            None, "a provider name is lower-case letters, digits, _ and -, starting with a letter"
        )
    if name in BUILT_IN_PROVIDERS:
        raise read.fail(
            None,
            f"{name!r} is a built-in provider; give this endpoint another name (reserved: "
            f"{', '.join(BUILT_IN_PROVIDERS)})",
        )
    if not isinstance(body, Mapping):
        raise read.fail(None, "expected a table")
    if "api_key" in body:
        raise read.fail(
            "api_key",
            "keys are never written in the config file: put the key in an environment variable and "
            'name it with api_key_env = "VARIABLE_NAME"',
        )
    for key in body:
        if key not in _KEYS:
            raise read.fail(key, f"unknown key{did_you_mean(key, _KEYS)}; allowed: {', '.join(_KEYS)}")
    kind = body.get("kind")
    if kind not in ("openai", "anthropic"):
        raise read.fail(
            "kind", f'{kind!r} is not allowed: expected "openai" or "anthropic" (the API it speaks)'
        )
    key_env = read.text(body, "api_key_env")
    api_key = NO_KEY
    if key_env is not None:
        if not _ENV_NAME.match(key_env):
            raise read.fail("api_key_env", f"{key_env!r} is not an environment variable name")
        api_key = read.environ.get(key_env, "")
        if not api_key:
            raise read.fail(
                "api_key_env",
                f"provider {name!r} takes its key from the environment variable {key_env}, which is not set",
            )
    written, headers = read.headers(body.get("headers", {}))
    base_url = read.text(body, "base_url")
    timeout = body.get("timeout_seconds")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
    ):
        raise read.fail("timeout_seconds", f"{timeout!r} is not allowed: expected a number > 0 (seconds)")
    models = body.get("models", {})
    if not isinstance(models, Mapping):
        raise read.fail("models", 'expected tables [providers.NAME.models."model-id"]')
    prices = {f"{name}:{model}": read.price(model, prices) for model, prices in models.items()}
    provider = NamedProvider(
        kind=kind,
        base_url=read.expand("base_url", base_url, "base_url") if base_url else None,
        api_key=api_key,
        headers=headers,
        timeout_seconds=float(timeout) if timeout is not None else None,
        key_hint=f"the environment variable {key_env}" if key_env else f"api_key_env of [providers.{name}]",
    )
    return ProviderEntry(name, provider, key_env, key_env is not None, written, prices)
