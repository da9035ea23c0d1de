"""The `noukai` command on real data dirs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURE_FLOWS, REPO_ROOT, _server_env


def noukai(data_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The command in local mode (no NOUKAI_* variables, so no server URL) on `data_dir`."""
    return subprocess.run(
        [sys.executable, "-m", "noukai_server", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        check=check,
        cwd=REPO_ROOT,
        env=_server_env(),
    )


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A data dir with a store in it (`keys` and `flows push` never create one)."""
    noukai(tmp_path, "migrate")
    return tmp_path


def test_migrate_creates_the_store(tmp_path: Path) -> None:
    noukai(tmp_path / "data", "migrate")
    assert (tmp_path / "data" / "noukai.db").is_file()


def test_keys_create_prints_only_the_key(store: Path) -> None:
    result = noukai(store, "keys", "create", "--org", "acme", "--project", "spelling")
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("nk_")
    listed = noukai(store, "keys", "list", "--org", "acme").stdout
    key_id = lines[0].split("_")[1]
    assert key_id in listed and "acme/spelling" in listed
    assert lines[0] not in listed  # the secret is never shown again


def test_keys_revoke_unknown_fails(store: Path) -> None:
    result = noukai(store, "keys", "revoke", "000000000000", check=False)
    assert result.returncode == 1
    assert "no active key" in result.stderr


def test_flows_push_saves_and_publishes(store: Path) -> None:
    file = FIXTURE_FLOWS / "greet.yaml"
    draft = noukai(store, "flows", "push", str(file), "--org", "acme", "--project", "p")
    assert "acme/p/greet: draft revision 1" in draft.stdout
    published = noukai(store, "flows", "push", str(file), "--org", "acme", "--project", "p", "--publish")
    assert "draft revision 2, published as version 1" in published.stdout


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("slug: bad\nsteps:\n  - id: a\n    type: nope\n", "'a'"),
        ("slug: bad\nsteps: []\n", "steps"),
        ("slug: bad\nsteps:\n  - {id: a, type: template, template: '{{ x }}'}\n", "'x'"),
        (": : :\n", "YAML"),
    ],
)
def test_flows_push_refuses_invalid_files(store: Path, text: str, needle: str) -> None:
    file = store / "bad.yaml"
    file.write_text(text)
    result = noukai(store, "flows", "push", str(file), "--org", "a", "--project", "b", check=False)
    assert result.returncode == 1
    assert needle in result.stderr
    assert str(file) in result.stderr


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        (
            "slug: bad\nsteps:\n  - {id: a, type: llm, model: 'mistral:large', prompt: hi}\n",
            ["'mistral'", "builtin", "openai"],
        ),
        (
            "slug: bad\nsteps:\n  - {id: a, type: python, function: text.word_count, args: {txt: x}}\n",
            ["txt", "text.word_count(text: str)"],
        ),
    ],
)
def test_a_local_push_makes_the_checks_the_server_makes(store: Path, text: str, needles: list[str]) -> None:
    """Providers and python-step arguments are checked by `--local` as by the HTTP push."""
    file = store / "bad.yaml"
    file.write_text(text)
    result = noukai(store, "flows", "push", str(file), "--org", "a", "--project", "b", "--local", check=False)
    assert result.returncode == 1, result.stdout
    for needle in needles:
        assert needle in result.stderr


# Without a store, in local mode, and the remote mode: tests/server/test_cli_remote.py
# `serve` with a bad file in --flows skips it and serves the rest: tests/server/test_serve_startup.py


def test_version_prints_the_version() -> None:
    from noukai import __version__

    result = subprocess.run(
        [sys.executable, "-m", "noukai_server", "version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == __version__
