"""Open protocols over Noukai runs: OpenAI chat completions, AG-UI and flows as MCP tools.

Each protocol is a translation of the same thing: start (or resume) a run, follow its log from
where this request's part of it begins, and turn the events into the protocol's messages. The
shared part is `common` (addressing flows by model id, client tool call ids that name their run,
following one segment of a log, and the answer-step rule); the protocols' modules only translate.
docs/protocols.md describes the wire behaviour.
"""

from noukai_server.runtime.protocols.common import (
    AnswerText,
    FlowAddress,
    ProtocolRuns,
    Segment,
    decode_call_id,
    encode_call_id,
    result_text,
)

__all__ = [
    "AnswerText",
    "FlowAddress",
    "ProtocolRuns",
    "Segment",
    "decode_call_id",
    "encode_call_id",
    "result_text",
]
