"""The flow engine: runs steps and reports them as events; it knows nothing of HTTP or SQL."""

from noukai.engine.functions import FunctionRegistry, default_functions
from noukai.engine.outcome import (
    Completed,
    Failed,
    Outcome,
    PausedBetweenSteps,
    PausedForTools,
    StepFailure,
)
from noukai.engine.runner import FlowEngine
from noukai.engine.sink import EventSink
from noukai.engine.state import RunInputs, RunState
from noukai.engine.tools import ToolRegistry, default_tools

__all__ = [
    "Completed",
    "EventSink",
    "Failed",
    "FlowEngine",
    "FunctionRegistry",
    "Outcome",
    "PausedBetweenSteps",
    "PausedForTools",
    "RunInputs",
    "RunState",
    "StepFailure",
    "ToolRegistry",
    "default_functions",
    "default_tools",
]
