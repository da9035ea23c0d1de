"""The SDK parses every JSON answer of the shared wire schema: each field `noukai.types.wire`
declares for an answer is a field of the SDK's model for it.

The SDK's models stay lenient (plain strings for statuses, optional fields) so that a newer or
older server still parses; this test keeps them from missing anything the server sends.
"""

from __future__ import annotations

import pytest
from pydantic import BaseModel

import noukai
from noukai import _models, _replay, _threads
from noukai.types import wire

PAIRS: list[tuple[type[BaseModel], type[BaseModel]]] = [
    (wire.ExecuteCompleted, noukai.ExecuteResult),
    (wire.ExecuteFailed, noukai.ExecuteResult),
    (wire.PausedResult, noukai.PausedResult),
    (wire.PausedResult, noukai.AsyncPausedResult),
    (wire.JobAccepted, noukai.JobAccepted),
    (wire.JobStatus, noukai.JobStatus),
    (wire.RunInfo, noukai.RunInfo),
    (wire.CancelResult, noukai.CancelResult),
    (wire.RunList, noukai.RunPage),
    (wire.RunSummary, _models.RunSummary),
    (wire.StepTrace, _models.StepTrace),
    (wire.StepAttempts, _models.StepAttempts),
    (wire.Trace, _models.Trace),
    (wire.SessionResponse, _replay.Session),
    (wire.SessionExecution, _replay.SessionExecution),
    (wire.SessionStepSnapshot, _replay.SessionStep),
    (wire.ThreadInfo, _threads.Thread),
    (wire.ThreadMessageInfo, _threads.ThreadMessage),
    (wire.ThreadMessagePage, _threads.ThreadMessagePage),
    (wire.ThreadErased, _threads.ThreadDeleted),
]


def _wire_names(model: type[BaseModel]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


@pytest.mark.parametrize(("answer", "sdk_model"), PAIRS, ids=lambda c: c.__name__)
def test_the_sdk_model_reads_every_field_of_the_answer(
    answer: type[BaseModel], sdk_model: type[BaseModel]
) -> None:
    missing = sorted(_wire_names(answer) - _wire_names(sdk_model))
    assert missing == [], f"{sdk_model.__name__} does not read {missing} of {answer.__name__}"


def test_every_answer_model_of_the_wire_is_paired() -> None:
    """A new answer model in noukai.types.wire needs an SDK model (or a reason here)."""
    not_parsed_by_the_sdk = {
        # Flow administration and health are read by operators' tools; the SDK's surface (the
        # original README) has no call for them.
        "FlowInfo",
        "FlowList",
        "FlowSummary",
        "FlowVersionDocument",
        "FlowVersionInfo",
        "FlowVersionList",
        "Health",
        # Requests, not answers; the error envelope is read by the SDK's error mapping.
        "ExecuteRequest",
        "StepRequest",
        "RerunRequest",
        "ThreadCreate",
        "ThreadFork",
        "ErrorBody",
        "ErrorEnvelope",
        # Parts of answers, checked through them; the base of the two /execute answers.
        "RunError",
        "ErrorSnapshot",
        "TokenUsage",
        "ExecuteResult",
        "WireModel",
    }
    models = {
        name
        for name, value in vars(wire).items()
        if isinstance(value, type) and issubclass(value, BaseModel) and value.__module__ == wire.__name__
    }
    assert models - not_parsed_by_the_sdk == {answer.__name__ for answer, _ in PAIRS}
