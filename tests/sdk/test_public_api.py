"""The SDK's public surface: `__all__`, its types under `mypy --strict`, and its light imports."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import noukai
from tests.public_api import assert_reexported

REPO = Path(__file__).resolve().parents[2]
SDK_PROJECT = REPO / "packages" / "noukai"

EXPECTED = {
    # clients and resources
    "Noukai", "AsyncNoukai", "Flow", "AsyncFlow", "Run", "AsyncRun", "Runs", "AsyncRuns",
    "Job", "AsyncJob", "Stream", "AsyncStream",
    "Threads", "AsyncThreads", "ThreadStream", "AsyncThreadStream",
    # results
    "ExecuteResult", "PausedResult", "AsyncPausedResult", "JobAccepted", "JobStatus", "Trace",
    "RunSummary", "StepTrace", "StepAttempts", "TokenUsage", "RunInfo", "RunPage", "CancelResult",
    "Thread", "ThreadMessage", "ThreadMessagePage", "ThreadDeleted", "ThreadEvent",
    # events
    "StreamEvent", "RunStarted", "StepStarted", "StepInput", "StepOutput", "StepReasoning",
    "StepProgress", "StepCompleted", "StepFailed", "StepRetrying", "StepPaused", "ToolCallsRequired",
    "ToolCallStarted", "ToolCallCompleted", "FlowCompleted", "RunFailed", "RunCancelled", "UnknownEvent",
    "GuardTripped", "SubflowEvent", "FlowTransfer",
    # errors
    "NoukaiError", "APIConnectionError", "APITimeoutError", "AuthenticationError",
    "PermissionDeniedError", "FlowNotFoundError", "InsufficientCreditsError", "RateLimitError",
    "FlowExecutionError", "ToolCallLimitError", "ReplayError", "ReplayMissError",
    "ReplayLeftoverError", "ReplayForbiddenError", "ReplaySessionNotFoundError",
    "ReplaySessionExpiredError", "ReplayInvalidSessionError", "ReplayNoSnapshotsError",
    "ReplayDisabledError",
    # sessions
    "trace", "trace_scope", "trace_scope_sync", "TraceScope",
    "__version__",
}  # fmt: skip

HEAVY = (
    "fastapi",
    "starlette",
    "flask",
    "sqlalchemy",
    "alembic",
    "jinja2",
    "openai",
    "anthropic",
    "orjson",
    "uvicorn",
    "typer",
    "rich",
    "yaml",
    "noukai_server.api",
    "noukai_server.runtime",
    "noukai_server.store",
    "noukai_server.engine",
    "noukai_server.flows",
    "noukai_server.providers",
    "noukai_server.bus",
    "noukai.adapters",
)


def test_all_is_the_public_surface() -> None:
    assert set(noukai.__all__) == EXPECTED
    assert len(noukai.__all__) == len(EXPECTED)
    for name in EXPECTED:
        assert_reexported(noukai, name)
    exported_classes = {name for name in vars(noukai) if not name.startswith("_") and name[0].isupper()}
    assert exported_classes <= EXPECTED  # nothing capitalised leaks out of the private modules
    sdk_version = tomllib.loads((SDK_PROJECT / "pyproject.toml").read_text())["project"]["version"]
    assert noukai.__version__ == sdk_version


def test_importing_the_sdk_loads_nothing_heavy() -> None:
    code = (
        "import json, sys, noukai; "
        "client = noukai.Noukai(api_key='nk_x'); client.close(); "
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    loaded = json.loads(out.stdout)
    offenders = [m for m in loaded if any(m == h or m.startswith(h + ".") for h in (*HEAVY, "noukai_server"))]
    assert offenders == []
    assert "pydantic" in loaded and "httpx2" in loaded


def test_the_sdk_distribution_declares_only_its_own_dependencies() -> None:
    project = tomllib.loads((SDK_PROJECT / "pyproject.toml").read_text())["project"]
    names = {
        dep.split(">")[0].split("<")[0].split("=")[0].split("[")[0].strip() for dep in project["dependencies"]
    }
    assert names == {"pydantic", "httpx2", "anyio", "typing-extensions"}
    assert "scripts" not in project  # the `noukai` command belongs to noukai-server
    for path in (SDK_PROJECT / "src" / "noukai").rglob("*.py"):
        text = path.read_text()
        for heavy in (*HEAVY, "noukai_server"):
            if path.parent.name == "adapters" and heavy != "noukai_server":
                continue  # the adapters are the `[fastapi]` / `[flask]` extras' whole point
            assert f"import {heavy}" not in text and f"from {heavy}" not in text, (path.name, heavy)


def test_the_whole_public_api_type_checks_strictly() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            str(REPO / "tests/sdk/typed_usage.py"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr
