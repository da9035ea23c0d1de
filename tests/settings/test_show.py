"""`noukai config show` as data: every setting with its source, passwords masked, keys never shown.

The command itself is run end to end in tests/server/test_operator_config.py; these tests check
the rendering of the docs' complete example in process, where every branch can be reached."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from noukai_server.cli.starter import FILES
from noukai_server.settings import load_settings
from noukai_server.settings.show import as_json, as_toml, effective, mask_url
from noukai_server.settings.table import SETTINGS
from tests.settings.test_configuration_doc import example

KEY = "sk-gateway-never-shown"
ENV = {
    "GATEWAY_API_KEY": KEY,
    "TEAM_NAME": "search",
    "NOUKAI_DATABASE_URL": "postgresql+psycopg://app:db-pass-1@db.internal/noukai",
    "NOUKAI_REDIS_URL": "redis://:redis-pass-2@cache:6379/0",
}


@pytest.fixture
def shown(tmp_path: Path) -> dict[str, object]:
    (tmp_path / "noukai.toml").write_text(example())
    (tmp_path / "project_tools.py").write_text(FILES["project_tools.py"])
    return effective(load_settings(tmp_path / "noukai.toml", ENV, {"port": 9999}), ENV)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql+psycopg://app:s3cret@db/x", "postgresql+psycopg://app:***@db/x"),
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
        ("sqlite+aiosqlite:///data/noukai.db", "sqlite+aiosqlite:///data/noukai.db"),
    ],
)
def test_mask_url_hides_only_the_password(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_every_setting_is_shown_with_where_it_came_from(shown: dict[str, object], tmp_path: Path) -> None:
    settings = shown["settings"]
    assert isinstance(settings, dict)
    for row in SETTINGS:
        assert row.key in settings[row.section], row.name
    assert settings["server"]["port"] == {"value": 9999, "source": "command line"}
    assert settings["server"]["host"]["source"] == f"{tmp_path / 'noukai.toml'}:2"
    assert settings["store"]["database_url"] == {
        "value": "postgresql+psycopg://app:***@db.internal/noukai",
        "source": "environment NOUKAI_DATABASE_URL",
    }
    assert settings["bus"]["redis_url"]["value"] == "redis://:***@cache:6379/0"
    assert settings["flows"]["dirs"]["value"] == [str(tmp_path / "flows")]


def test_providers_show_the_variable_not_the_key(shown: dict[str, object]) -> None:
    providers = shown["providers"]
    assert isinstance(providers, dict)
    gateway = providers["gateway"]
    assert (gateway["api_key_env"], gateway["api_key_set"]) == ("GATEWAY_API_KEY", True)
    assert gateway["headers"]["X-Team"] == "${TEAM_NAME}"  # as written, never the value
    assert gateway["models"]["gpt-4o-mini"] == {"input_per_million": "0.15", "output_per_million": "0.6"}
    assert providers["ollama"]["api_key_env"] is None
    assert providers["openai"] == {"kind": "built-in", "api_key_env": "OPENAI_API_KEY", "api_key_set": False}
    assert shown["functions"] == {
        "project.slugify": "project_tools:slugify",
        "slug_again": "project_tools:slugify",
    }
    assert shown["mcp_servers"] == ["files"]


def test_both_renderings_carry_no_secret(shown: dict[str, object], tmp_path: Path) -> None:
    text, data = as_toml(shown), as_json(shown)
    for secret in (KEY, "db-pass-1", "redis-pass-2", "search"):
        assert secret not in text
        assert secret not in data
    assert json.loads(data) == shown
    assert text.startswith(f"# config file: {tmp_path / 'noukai.toml'}\n")
    assert "[providers.gateway]  # key: GATEWAY_API_KEY (set)" in text
    assert "[providers.ollama]  # key: none (the endpoint checks no key)" in text
    assert 'models.gpt-4o-mini = {input_per_million = "0.15", output_per_million = "0.6"}' in text
    assert '"project.slugify" = "project_tools:slugify"' in text
    assert "# MCP servers: files" in text
    assert "org_max_running_overrides = {acme = 500}" in text


def test_a_project_without_a_file_shows_defaults(tmp_path: Path) -> None:
    loaded = load_settings(None, {}, cwd=tmp_path)
    text = as_toml(effective(loaded, {}))
    assert text.startswith("# config file: none\n")
    assert "# database_url is not set  (default)" in text
    assert "[functions]" not in text and "MCP servers" not in text
