"""docs/configuration.md: its example noukai.toml loads, and it documents every setting."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from noukai_server.cli.starter import FILES
from noukai_server.settings import load_settings
from noukai_server.settings.table import SETTINGS

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def example() -> str:
    blocks: list[str] = re.findall(r"```toml\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert len(blocks) == 1
    return blocks[0]


def test_the_example_loads(tmp_path: Path) -> None:
    (tmp_path / "noukai.toml").write_text(example())
    (tmp_path / "project_tools.py").write_text(FILES["project_tools.py"])  # what [functions] name
    env = {"GATEWAY_API_KEY": "sk-gw", "TEAM_NAME": "search"}
    config = load_settings(tmp_path / "noukai.toml", env).config
    assert config.providers.named["gateway"].headers == {"X-Team": "search", "X-Source": "noukai"}
    assert sorted(config.functions) == ["project.slugify", "slug_again"]
    assert config.tools["capital_of"].timeout_seconds == 5
    assert list(config.mcp_servers) == ["files"]
    assert config.flows_dirs == (tmp_path / "flows",)


def test_every_setting_is_in_the_example_and_the_table() -> None:
    data = tomllib.loads(example())
    text = DOC.read_text()
    for row in SETTINGS:
        assert row.key in data.get(row.section, {}) or f"# {row.key} = " in example(), row.name
        assert f"| `{row.name}` | `{row.env}` |" in text, row.name


def test_the_providers_doc_examples_load(tmp_path: Path) -> None:
    text = (DOC.parent / "providers.md").read_text()
    blocks: list[str] = re.findall(r"```toml\n(.*?)```", text, re.DOTALL)
    assert blocks
    for index, block in enumerate(blocks):
        path = tmp_path / f"providers-{index}.toml"
        path.write_text(block)
        assert load_settings(path, {}).config.providers.named
