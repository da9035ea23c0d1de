"""Every span name and attribute name the server's traces use, in one place.

The `gen_ai.*` names follow the OpenTelemetry semantic conventions for generative AI as of
**v1.41.0** (https://opentelemetry.io/docs/specs/semconv/gen-ai/; status *Development*: names may
still change, so a move to a later version is a change to this module alone). `error.type` is the
stable general attribute. The `noukai.*` names are ours: what a GenAI backend has no name for
(the run, the flow, the step and its attempt).

Spans, one trace per run:

| span | name | kind |
|---|---|---|
| the run | `invoke_workflow {flow slug}` | INTERNAL |
| an attempt of an `agent` step | `invoke_agent {step name or id}` | INTERNAL |
| an attempt of any other step | `step {step id}` (`noukai.step.type` says which) | INTERNAL |
| a model call | `chat {model}` | CLIENT |
| a tool call | `execute_tool {tool name}` | INTERNAL |

`error.type` is always one of the server's error codes (`noukai.types.errors.ErrorCode`, e.g.
`PROVIDER_TIMEOUT`, `STEP_TIMEOUT`, `RUN_CANCELLED`; `STEP_INTERRUPTED` for an attempt stopped from
outside: a cancel, the run's deadline, a lost lease, a draining worker), `TOOL_ERROR` for a tool
call whose tool raised, or the exception's class name for an error inside the server.
"""

from __future__ import annotations

from typing import Final

SEMCONV_VERSION: Final = "1.41.0"
SCHEMA_URL: Final = f"https://opentelemetry.io/schemas/{SEMCONV_VERSION}"
INSTRUMENTATION_NAME: Final = "noukai_server"

# -- gen_ai.operation.name values and span name prefixes ------------------------------------------
INVOKE_WORKFLOW: Final = "invoke_workflow"
INVOKE_AGENT: Final = "invoke_agent"
CHAT: Final = "chat"
EXECUTE_TOOL: Final = "execute_tool"
STEP: Final = "step"
"""The span name prefix of a non-agent step attempt; GenAI has no operation for it, so such a span
carries no `gen_ai.operation.name`."""

# -- gen_ai.* (Development) ------------------------------------------------------------------------
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
GEN_AI_REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
GEN_AI_WORKFLOW_NAME: Final = "gen_ai.workflow.name"
GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"
GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ID: Final = "gen_ai.tool.call.id"
GEN_AI_TOOL_TYPE: Final = "gen_ai.tool.type"
# Content (opt-in in the conventions; here only when the flow's `trace_capture_mode` allows it):
GEN_AI_SYSTEM_INSTRUCTIONS: Final = "gen_ai.system_instructions"
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
GEN_AI_TOOL_CALL_ARGUMENTS: Final = "gen_ai.tool.call.arguments"
GEN_AI_TOOL_CALL_RESULT: Final = "gen_ai.tool.call.result"

# -- general (Stable) ------------------------------------------------------------------------------
ERROR_TYPE: Final = "error.type"
ERROR_TYPE_OTHER: Final = "_OTHER"
TOOL_ERROR: Final = "TOOL_ERROR"

# -- noukai.* --------------------------------------------------------------------------------------
RUN_ID: Final = "noukai.run.id"
RUN_STATUS: Final = "noukai.run.status"
"""The run's terminal status: completed, failed or cancelled."""
RUN_TRIGGER: Final = "noukai.run.trigger"
RUN_ATTEMPT: Final = "noukai.run.attempt"
"""How many times a worker claimed the run (its lease's fencing token)."""
ORG: Final = "noukai.org"
PROJECT_ID: Final = "noukai.project.id"
FLOW_ID: Final = "noukai.flow.id"
FLOW_VERSION: Final = "noukai.flow.version"
"""0 for the draft."""
STEP_ID: Final = "noukai.step.id"
STEP_INDEX: Final = "noukai.step.index"
STEP_TYPE: Final = "noukai.step.type"
STEP_ATTEMPT: Final = "noukai.step.attempt"
STEP_OUTCOME: Final = "noukai.step.outcome"
"""How the attempt's span ended: completed, failed, paused_for_tools (the attempt goes on in a
later span, `noukai.step.resumed` = true, once the caller sends tool results) or stopped (cancel,
deadline, lost lease, drain)."""
STEP_RESUMED: Final = "noukai.step.resumed"
CHILD_RUN_IDS: Final = "noukai.step.child_run_ids"
"""On a `flow` step's (or a `flow:` tool's agent step's) span: the child runs it started; each
child's workflow span is a child of this span, in the same trace."""
TOOL_SIDE: Final = "noukai.tool.side"
"""`server` (run here: the operator's tools and MCP tools) or `client` (run by the caller)."""
