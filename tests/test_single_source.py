"""Constants are written once: the API prefix, the event-name sets and the versions.

Scans the source of both distributions for a second definition (the defect these tests pin: the
terminal event types were written in four places, the API prefix in two, the version in two).
"""

from __future__ import annotations

import ast
import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import noukai
import noukai_server
from noukai.types import API_PREFIX, TERMINAL_EVENTS

REPO = Path(__file__).resolve().parent.parent
SOURCES = sorted((REPO / "packages").rglob("src/**/*.py"))
HOME_OF_PREFIX = REPO / "packages" / "noukai" / "src" / "noukai" / "types" / "wire.py"
HOME_OF_EVENTS = REPO / "packages" / "noukai" / "src" / "noukai" / "types" / "events.py"


def _string_constants(path: Path) -> list[tuple[int, str]]:
    """Every string literal in the module's code (docstrings excluded), with its line."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def test_the_api_prefix_is_written_once() -> None:
    found = [
        f"{path.relative_to(REPO)}:{line}"
        for path in SOURCES
        if path != HOME_OF_PREFIX
        for line, text in _string_constants(path)
        if text.rstrip("/") == API_PREFIX or text.startswith(API_PREFIX + "/")
    ]
    assert found == [], "use noukai.types.API_PREFIX"


def test_event_name_sets_are_written_once() -> None:
    """No module but `noukai.types.events` spells two terminal event names in one collection."""
    found: list[str] = []
    for path in SOURCES:
        if path == HOME_OF_EVENTS:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Set | ast.List | ast.Tuple):
                names = {e.value for e in node.elts if isinstance(e, ast.Constant)}
                if len(names & TERMINAL_EVENTS) >= 2:
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert found == [], "use noukai.types.events.TERMINAL_EVENTS (or the sets beside it)"


def test_each_version_is_written_once_in_its_pyproject() -> None:
    for module, distribution, folder in (
        (noukai, "noukai", "noukai"),
        (noukai_server, "noukai-server", "noukai-server"),
    ):
        declared = tomllib.loads((REPO / "packages" / folder / "pyproject.toml").read_text())["project"]
        assert module.__version__ == version(distribution) == declared["version"]
    literal = re.compile(r"""__version__\s*=\s*["']""")
    assert [p.name for p in SOURCES if literal.search(p.read_text())] == []
