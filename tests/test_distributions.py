"""The two distributions, installed as a user would from the repository path into clean venvs.

`noukai` (the SDK) must pull no server dependency and install no console script, and importing it
must load no server module; `noukai-server` must give the `noukai` command. The installs come from
uv's cache when it is warm (`make install` has just filled it), so this costs seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SERVER_ONLY = {
    "fastapi",
    "uvicorn",
    "sqlalchemy",
    "aiosqlite",
    "psycopg",
    "alembic",
    "jinja2",
    "pyyaml",
    "openai",
    "anthropic",
    "typer",
    "rich",
    "orjson",
    "fastapi-offline",
    "noukai-server",
}


def _uv() -> str:
    found = shutil.which("uv") or str(REPO / ".tools" / "bin" / "uv")
    if not Path(found).exists():
        pytest.fail("uv is needed to build the distributions; `make install` puts it in .tools/")
    return found


def _venv(tmp_path: Path, name: str) -> Path:
    venv = tmp_path / name
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    subprocess.run([_uv(), "venv", "--quiet", "--python", sys.executable, str(venv)], check=True, env=env)
    return venv


def _install(venv: Path, *packages: Path | str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    subprocess.run(
        [_uv(), "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), *map(str, packages)],
        check=True,
        env=env,
        cwd=REPO,
    )


def _installed(venv: Path) -> set[str]:
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import importlib.metadata as m, json; "
         "print(json.dumps(sorted(d.metadata['Name'].lower() for d in m.distributions())))"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return set(json.loads(out.stdout))


@pytest.mark.timeout(300)
def test_the_sdk_alone_pulls_no_server_dependency_and_no_command(tmp_path: Path) -> None:
    venv = _venv(tmp_path, "sdk")
    _install(venv, REPO / "packages" / "noukai")

    installed = _installed(venv)
    assert "noukai" in installed
    assert {"pydantic", "httpx2", "anyio"} <= installed
    assert installed & SERVER_ONLY == set()
    assert not (venv / "bin" / "noukai").exists()

    code = (
        "import json, sys, noukai; client = noukai.Noukai(api_key='nk_x'); client.close(); "
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True
    )
    loaded = json.loads(out.stdout)
    assert [m for m in loaded if m.split(".")[0] in {"noukai_server", "fastapi", "sqlalchemy", "typer"}] == []


@pytest.mark.timeout(300)
def test_the_server_distribution_gives_the_noukai_command(tmp_path: Path) -> None:
    venv = _venv(tmp_path, "server")
    _install(venv, REPO / "packages" / "noukai", REPO / "packages" / "noukai-server")

    command = venv / "bin" / "noukai"
    assert command.exists()
    out = subprocess.run([str(command), "version"], capture_output=True, text=True, check=True)
    version = tomllib.loads((REPO / "packages" / "noukai-server" / "pyproject.toml").read_text())["project"][
        "version"
    ]
    assert out.stdout.strip() == version


@pytest.mark.timeout(300)
def test_both_install_from_a_git_url_as_the_readme_says(tmp_path: Path) -> None:
    """The README's git-URL install, from this repository's committed HEAD (`git+file://`)."""
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout: nothing to install from a git URL")
    url = f"git+file://{REPO}"
    venv = _venv(tmp_path, "git")
    _install(
        venv,
        f"noukai @ {url}#subdirectory=packages/noukai",
        f"noukai-server @ {url}#subdirectory=packages/noukai-server",
    )
    out = subprocess.run(
        [str(venv / "bin" / "noukai"), "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("noukai-server ")
    readme = (REPO / "README.md").read_text()
    assert "#subdirectory=packages/noukai-server" in readme and '#subdirectory=packages/noukai"' in readme
