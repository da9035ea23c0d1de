"""The package's public surface is exactly what __init__ re-exports."""

from __future__ import annotations

import noukai_server.flows
from tests.public_api import assert_reexported

EXPECTED = {
    "MAX_NESTING",
    "AgentStep",
    "FLOW_TOOL_PREFIX",
    "FlowAddress",
    "FlowInput",
    "FlowReference",
    "FlowStep",
    "FlowIssue",
    "FlowSpec",
    "FlowValidationError",
    "GUARD_VALUE_NAME",
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
}


def test_all_is_the_public_surface() -> None:
    assert set(noukai_server.flows.__all__) == EXPECTED
    assert len(noukai_server.flows.__all__) == len(EXPECTED)
    for name in EXPECTED:
        assert_reexported(noukai_server.flows, name)
    public = {name for name in vars(noukai_server.flows) if not name.startswith("_")}
    assert public == EXPECTED


def test_errors_are_exceptions_with_codes() -> None:
    assert issubclass(noukai_server.flows.FlowValidationError, Exception)
    assert issubclass(noukai_server.flows.TemplateError, Exception)
    assert noukai_server.flows.OverrideError.code == "INVALID_OVERRIDE"
