"""The files `noukai init` writes: a project that `noukai serve` runs as is, offline."""

from __future__ import annotations

from collections.abc import Mapping

NOUKAI_TOML = """\
# Settings of `noukai serve` (and every other `noukai` command) run in this folder.
# Each setting can also come from a NOUKAI_* environment variable (which wins over this file);
# command-line options win over both. Every setting: docs/configuration.md in the Noukai repository.
# Paths are relative to this file; this folder is importable, so [functions] and [tools] may name
# modules kept here.

[server]
host = "127.0.0.1"
port = 8080

[store]
data_dir = ".noukai"        # the embedded SQLite store and the dev API key
# database_url = "postgresql+psycopg://user:password@localhost/noukai"

[flows]
dirs = ["flows"]            # loaded as drafts of dev/main at start (`serve --reload` watches them)

[logging]
level = "info"              # debug, info, warning or error
format = "text"             # or json

# Python functions that `python` steps may call, beside the built-in ones.
[functions]
"project.slugify" = "project_tools:slugify"

# Python functions that `agent` steps may offer the model as tools.
[tools]
capital_of = "project_tools:capital_of"

# A named, OpenAI-compatible endpoint; flows then say `model: local:llama3.2`.
# The key is never written here: api_key_env names the variable holding it.
# [providers.local]
# kind = "openai"
# base_url = "http://localhost:11434/v1"
# api_key_env = "LOCAL_LLM_KEY"
# [providers.local.models."llama3.2"]
# input_per_million = 0
# output_per_million = 0
"""

PROJECT_TOOLS = '''\
"""This project's functions (for `python` steps) and tools (for `agent` steps), named in
noukai.toml. A tool's parameters and docstring are what the model is shown."""

from __future__ import annotations

import re

CAPITALS = {"france": "Paris", "japan": "Tokyo", "kenya": "Nairobi", "peru": "Lima"}


def slugify(text: str) -> str:
    """Lower-case words joined by dashes."""
    return "-".join(re.findall(r"[a-z0-9]+", text.lower()))


def capital_of(country: str) -> str:
    """The capital city of a country."""
    return CAPITALS.get(country.strip().lower(), f"no capital known for {country!r}")
'''

HELLO_FLOW = """\
slug: hello
name: A python step and an agent step with this project's tool
steps:
  - id: slug
    type: python
    function: project.slugify
    args: {text: "{{ message }}"}
  - id: capital
    type: agent
    model: builtin:test    # calls every tool it is offered once; no key needed
    prompt: "Which capital does {{ steps.slug.output }} need?"
    tools: [capital_of]
"""

FILES: Mapping[str, str] = {
    "noukai.toml": NOUKAI_TOML,
    "project_tools.py": PROJECT_TOOLS,
    "flows/hello.yaml": HELLO_FLOW,
}
"""Relative path -> text."""
