"""The flow language: flow documents (YAML/JSON), their validation, and sandboxed templating."""

from noukai_server.flows._context import build_context
from noukai_server.flows._errors import FlowIssue, FlowValidationError, OverrideError, TemplateError
from noukai_server.flows._guards import GUARD_VALUE_NAME, GuardSpec, InputGuardSpec
from noukai_server.flows._inputs import InputError, bind_parameters
from noukai_server.flows._loader import load_flow, load_flow_file
from noukai_server.flows._offload import parse_off_loop
from noukai_server.flows._overrides import apply_block_overrides
from noukai_server.flows._source import MAX_NESTING, nests_too_deep
from noukai_server.flows._spec import (
    AgentStep,
    FlowInput,
    FlowSpec,
    FlowStep,
    LlmStep,
    PythonStep,
    RetryPolicy,
    StepSpec,
    TemplateStep,
    TraceCaptureMode,
)
from noukai_server.flows._subflow import (
    FLOW_TOOL_PREFIX,
    FlowAddress,
    FlowReference,
    flow_references,
    flow_tool_address,
)
from noukai_server.flows._templates import TemplateEngine

__all__ = [
    "FLOW_TOOL_PREFIX",
    "GUARD_VALUE_NAME",
    "MAX_NESTING",
    "AgentStep",
    "FlowAddress",
    "FlowInput",
    "FlowIssue",
    "FlowReference",
    "FlowSpec",
    "FlowStep",
    "FlowValidationError",
    "GuardSpec",
    "InputError",
    "InputGuardSpec",
    "LlmStep",
    "OverrideError",
    "PythonStep",
    "RetryPolicy",
    "StepSpec",
    "TemplateEngine",
    "TemplateError",
    "TemplateStep",
    "TraceCaptureMode",
    "apply_block_overrides",
    "bind_parameters",
    "build_context",
    "flow_references",
    "flow_tool_address",
    "load_flow",
    "load_flow_file",
    "nests_too_deep",
    "parse_off_loop",
]
