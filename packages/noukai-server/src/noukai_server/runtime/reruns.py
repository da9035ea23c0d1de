"""Where a rerun starts, and what it carries over from the original run.

A rerun is a new run of the very document the original ran (same flow, version and revision),
with the original's stored inputs. From the first step it is simply a fresh run. From step N it is
created at cursor N with the outputs the original recorded for steps 0..N-1 in its state, exactly
as a paced run waiting at step N holds them: the engine then runs steps N.. only, and templates
see `steps.<id>.output` of the earlier steps as the original produced them. The new run's log
starts with `run_started` and then step N's events, so a reader sees which steps ran; the RunInfo
says which run and step it came from (`rerunOf`, `rerunFromStep`).

Pure functions of the original run's record: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from noukai.types.errors import ErrorCode
from noukai_server.engine import RunState
from noukai_server.runtime.errors import RequestRejected
from noukai_server.store import RunRecord
from noukai_server.store.threads_repo import THREAD_INPUT_KEY


@dataclass(frozen=True, slots=True)
class RerunStart:
    """The new run's cursor, state and inputs, and the step id it starts from (None: the first)."""

    cursor: int
    state: dict[str, Any]
    input: dict[str, Any]
    from_step: str | None


def rerun_start(original: RunRecord, from_step: str | int | None) -> RerunStart:
    """Plan a rerun of `original` from `from_step` (a step id, or a 0-based index; None: the first
    step). Refused with STEP_NOT_FOUND for a step the document does not have, and with
    RERUN_NOT_POSSIBLE when an earlier step has no recorded outcome in the original, or when the
    original offered client-side tools (a rerun is queued like a job, which nobody can answer)."""
    if original.input.get("tools"):
        raise RequestRejected(
            ErrorCode.RERUN_NOT_POSSIBLE,
            f"run {original.id} offered client-side tools; a rerun is queued like a job and could "
            "not pause for their results: start a new run with /execute instead",
            executionId=original.id,
        )
    # A thread's turn is rerun on its own: with the history it saw, but appending nothing to it.
    inputs = {name: value for name, value in original.input.items() if name != THREAD_INPUT_KEY}
    step_ids = [str(step.get("id")) for step in original.document.get("steps") or []]
    index = _step_index(original, step_ids, from_step)
    if index == 0:
        return RerunStart(0, {}, inputs, None if from_step is None else step_ids[0])
    done = RunState.from_json(original.state)
    earlier = step_ids[:index]
    missing = [step_id for step_id in earlier if step_id not in done.outputs and step_id not in done.skipped]
    if missing:
        raise RequestRejected(
            ErrorCode.RERUN_NOT_POSSIBLE,
            f"run {original.id} has no recorded output for step {missing[0]!r}, which comes before "
            f"step {step_ids[index]!r}: rerun from an earlier step",
            executionId=original.id,
            stepId=missing[0],
        )
    reused = RunState(
        outputs={step_id: done.outputs[step_id] for step_id in earlier if step_id in done.outputs},
        skipped=[step_id for step_id in earlier if step_id in done.skipped],
        # What input guards replaced: the rerun skips them (they ran before the first step).
        guarded_inputs=done.guarded_inputs,
    )
    # The flow's result is the last executed step's output, even if every later step is skipped.
    executed = [step_id for step_id in earlier if step_id in done.outputs]
    reused.result_step = executed[-1] if executed else None
    return RerunStart(index, reused.to_json(), inputs, step_ids[index])


def _step_index(original: RunRecord, step_ids: list[str], from_step: str | int | None) -> int:
    if from_step is None:
        return 0
    if isinstance(from_step, int):
        if 0 <= from_step < len(step_ids):
            return from_step
        raise RequestRejected(
            ErrorCode.STEP_NOT_FOUND,
            f"fromStep {from_step} is out of range: run {original.id}'s flow has {len(step_ids)} steps "
            f"(0 to {len(step_ids) - 1})",
            executionId=original.id,
        )
    if from_step in step_ids:
        return step_ids.index(from_step)
    raise RequestRejected(
        ErrorCode.STEP_NOT_FOUND,
        f"run {original.id}'s flow has no step {from_step!r} (its steps: {', '.join(step_ids)})",
        executionId=original.id,
    )
