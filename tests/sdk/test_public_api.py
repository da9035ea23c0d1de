"""The SDK's public surface: `__all__`, its types under `mypy --strict`, and its light imports."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import noukai

REPO = Path(__file__).resolve().parents[2]

EXPECTED = {
    # clients and resources
    "Noukai", "AsyncNoukai", "Flow", "AsyncFlow", "Run", "AsyncRun", "Runs", "AsyncRuns",
    "Job", "AsyncJob", "Stream", "AsyncStream",
    # results
    "ExecuteResult", "PausedResult", "AsyncPausedResult", "JobAccepted", "JobStatus", "Trace",
    "RunSummary", "StepTrace", "StepAttempts", "TokenUsage", "RunInfo", "CancelResult",
    # events
    "StreamEvent", "RunStarted", "StepStarted", "StepInput", "StepOutput", "StepReasoning",
    "StepProgress", "StepCompleted", "StepFailed", "StepRetrying", "StepPaused", "ToolCallsRequired",
    "ToolCallStarted", "ToolCallCompleted", "FlowCompleted", "RunFailed", "RunCancelled", "UnknownEvent",
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
    "noukai.server",
    "noukai.runtime",
    "noukai.store",
    "noukai.engine",
    "noukai.flows",
    "noukai.providers",
    "noukai.bus",
    "noukai.adapters",
)


def test_all_is_the_public_surface() -> None:
    assert set(noukai.__all__) == EXPECTED
    assert len(noukai.__all__) == len(EXPECTED)
    for name in EXPECTED:
        assert getattr(noukai, name) is not None
    exported_classes = {name for name in vars(noukai) if not name.startswith("_") and name[0].isupper()}
    assert exported_classes <= EXPECTED  # nothing capitalised leaks out of the private modules
    assert noukai.__version__ == "0.1.0"


def test_importing_the_sdk_loads_nothing_heavy() -> None:
    code = (
        "import json, sys, noukai; "
        "client = noukai.Noukai(api_key='nk_x'); client.close(); "
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    loaded = json.loads(out.stdout)
    offenders = [m for m in loaded if any(m == h or m.startswith(h + ".") for h in HEAVY)]
    assert offenders == []
    assert "pydantic" in loaded and "httpx2" in loaded


def test_the_sdk_needs_only_its_two_dependencies() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = {
        dep.split(">")[0].split("<")[0].split("=")[0].split("[")[0].strip() for dep in project["dependencies"]
    }
    assert names == {"pydantic", "httpx2"}
    for path in (REPO / "src" / "noukai").glob("_*.py"):
        text = path.read_text()
        for heavy in HEAVY:
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
