"""The flow engine: runs steps and reports them as events; it knows nothing of HTTP or SQL."""

from noukai_server.engine.functions import FunctionRegistry, default_functions
from noukai_server.engine.guards import GuardChecks, parse_verdict
from noukai_server.engine.outcome import (
    Completed,
    Failed,
    Outcome,
    PausedBetweenSteps,
    PausedForTools,
    StepFailure,
    Yielded,
)
from noukai_server.engine.runner import FlowEngine
from noukai_server.engine.sink import EventSink
from noukai_server.engine.state import RunInputs, RunState
from noukai_server.engine.timeouts import StepTimeouts
from noukai_server.engine.tools import ToolRegistry, default_tools

__all__ = [
    "Completed",
    "EventSink",
    "Failed",
    "FlowEngine",
    "FunctionRegistry",
    "GuardChecks",
    "Outcome",
    "PausedBetweenSteps",
    "PausedForTools",
    "RunInputs",
    "RunState",
    "StepFailure",
    "StepTimeouts",
    "ToolRegistry",
    "Yielded",
    "default_functions",
    "default_tools",
    "parse_verdict",
]
