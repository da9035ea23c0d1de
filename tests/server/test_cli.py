"""The `noukai` command on real data dirs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURE_FLOWS, REPO_ROOT


def noukai(data_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "noukai_server", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        check=check,
        cwd=REPO_ROOT,
    )


def test_keys_create_prints_only_the_key(tmp_path: Path) -> None:
    result = noukai(tmp_path, "keys", "create", "--org", "acme", "--project", "spelling")
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("nk_")
    listed = noukai(tmp_path, "keys", "list", "--org", "acme").stdout
    key_id = lines[0].split("_")[1]
    assert key_id in listed and "acme/spelling" in listed
    assert lines[0] not in listed  # the secret is never shown again


def test_keys_revoke_unknown_fails(tmp_path: Path) -> None:
    result = noukai(tmp_path, "keys", "revoke", "000000000000", check=False)
    assert result.returncode == 1
    assert "no active key" in result.stderr


def test_flows_push_saves_and_publishes(tmp_path: Path) -> None:
    file = FIXTURE_FLOWS / "greet.yaml"
    draft = noukai(tmp_path, "flows", "push", str(file), "--org", "acme", "--project", "p")
    assert "acme/p/greet: draft revision 1" in draft.stdout
    published = noukai(tmp_path, "flows", "push", str(file), "--org", "acme", "--project", "p", "--publish")
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
def test_flows_push_refuses_invalid_files(tmp_path: Path, text: str, needle: str) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text(text)
    result = noukai(tmp_path, "flows", "push", str(file), "--org", "a", "--project", "b", check=False)
    assert result.returncode == 1
    assert needle in result.stderr
    assert str(file) in result.stderr


# `serve` with a bad file in --flows skips it and serves the rest: tests/server/test_serve_startup.py


def test_version_prints_the_version() -> None:
    from noukai import __version__

    result = subprocess.run(
        [sys.executable, "-m", "noukai_server", "version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == __version__
