"""Replay sessions: the runs a caller tagged with `X-Session-Id`, as the cassette the published
SDK replays (`GET /seq/sessions/{id}`, contract 6.2).

One run is one execution entry, however many `/step` segments or resumes it took. Each entry's
steps are the final attempt of every step that ran, in the order those attempts started; skipped
steps are left out, so the last snapshot's output is the run's result, which is exactly what a
replayed `execute()` returns. A failed or cancelled run names the step it stopped at
(`errorAtStep`) with that step's error, so a replay raises what the live call raised.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final

from noukai.types.errors import ErrorCode
from noukai_server.engine.capture import captured, redact, truncate
from noukai_server.runtime.attempts import StepAttempt
from noukai_server.runtime.errors import RequestRejected
from noukai_server.runtime.traces import CapturePolicy, TraceService, iso
from noukai_server.store import RunRecord, Store

DEFAULT_SESSION_RETENTION_SECONDS: Final = 30 * 24 * 3600.0
MAX_SESSION_RUNS: Final = 1000

_STATUS: Final = {
    "queued": "pending",
    "running": "running",
    "waiting": "running",
    "completed": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
}


class SessionService:
    def __init__(
        self,
        store: Store,
        traces: TraceService,
        *,
        retention_seconds: float = DEFAULT_SESSION_RETENTION_SECONDS,
    ) -> None:
        self._store = store
        self._traces = traces
        self._retention = timedelta(seconds=retention_seconds)

    async def get(self, session_id: str, *, org: str, project: str | None) -> dict[str, Any]:
        """The session as the caller's key may see it: 404 unknown, 403 another tenant's, 410 past
        its retention (counted from its oldest run) or once its logs were pruned."""
        runs = await self._store.list_session_runs(session_id, limit=MAX_SESSION_RUNS)
        if not runs:
            raise RequestRejected(ErrorCode.SESSION_NOT_FOUND, f"no session {session_id!r}")
        # Session ids are chosen by clients, so two tenants may share one: each sees only its runs.
        visible = [r for r in runs if r.org_id == org and (project is None or r.project_id == project)]
        if not visible:
            raise RequestRejected(
                ErrorCode.FORBIDDEN, f"session {session_id!r} belongs to another org or project"
            )
        cutoff = datetime.now(UTC) - self._retention
        if any((run.completed_at or run.created_at) < cutoff for run in visible):
            raise self._expired(session_id)
        executions = []
        for run in visible:
            try:
                folded = await self._traces.attempts(run)
            except RequestRejected as exc:
                if exc.code == ErrorCode.EVENTS_EXPIRED:
                    raise self._expired(session_id) from exc
                raise
            executions.append(self._execution(run, folded.final_attempts()))
        return {"sessionId": session_id, "executions": executions}

    def _expired(self, session_id: str) -> RequestRejected:
        return RequestRejected(
            ErrorCode.SESSION_EXPIRED,
            f"session {session_id!r} is older than the session retention period; its recordings are gone",
        )

    def _execution(self, run: RunRecord, attempts: list[StepAttempt]) -> dict[str, Any]:
        policy = self._traces.policy(run)
        steps = [self._snapshot(a, policy) for a in attempts if a.status != "skipped"]
        error_at: str | None = None
        if run.status in ("failed", "cancelled"):
            error_at, missing = self._error_step(run, attempts, policy)
            if missing is not None:
                steps.append(missing)
        slug = run.document.get("slug")
        return {
            "executionId": run.id,
            "flowId": run.flow_id,
            "slug": slug if isinstance(slug, str) else None,
            "triggerType": run.trigger_type,
            "status": _STATUS.get(run.status, run.status),
            "startedAt": iso(run.created_at),
            "completedAt": iso(run.completed_at),
            "traceCaptureMode": policy.mode,
            "snapshotsAvailable": policy.snapshots,
            "errorAtStep": error_at,
            "steps": steps,
        }

    def _snapshot(self, attempt: StepAttempt, policy: CapturePolicy) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "stepId": attempt.step_id,
            "attempt": attempt.attempt,
            "loopIndex": None,
            "status": attempt.status,
            "startedAt": iso(attempt.started_at),
            "completedAt": iso(attempt.completed_at),
            "inputSnapshot": None,
            "outputSnapshot": None,
            "errorSnapshot": None,
            "truncated": False,
        }
        if attempt.duration_ms is not None:
            entry["durationMs"] = attempt.duration_ms
        if policy.snapshots:
            source = attempt.input
            if source is None and attempt.iterations:
                inputs = [i.input for i in attempt.iterations.values() if i.input is not None]
                source = {"iterations": inputs} if inputs else None
            kept = None if source is None else captured(source, policy.mode, policy.redact_fields)
            if kept is not None:
                entry["inputSnapshot"], entry["truncated"] = truncate(kept, policy.max_context_bytes)
            if attempt.status == "completed":
                # Never truncated: replay serves this value as the step's (and the run's) output.
                output = attempt.output
                entry["outputSnapshot"] = (
                    redact(output, policy.redact_fields) if policy.mode == "redacted" else output
                )
        if attempt.error is not None:
            entry["errorSnapshot"] = _error(attempt.error, policy)
        return entry

    def _error_step(
        self, run: RunRecord, attempts: list[StepAttempt], policy: CapturePolicy
    ) -> tuple[str | None, dict[str, Any] | None]:
        """The step a failed or cancelled run stopped at, and a snapshot to add when no attempt of
        it carries the run's error (it failed before any step ran, or between steps)."""
        failed = [a for a in attempts if a.status == "failed"]
        if failed:
            return failed[-1].step_id, None
        error = run.error if isinstance(run.error, dict) else {}
        if run.status == "cancelled":
            error = {"code": ErrorCode.RUN_CANCELLED.value, "message": "the run was cancelled"}
        steps = run.document.get("steps") or []
        step_id = error.get("stepId")
        if (
            not isinstance(step_id, str)
            and 0 <= run.cursor < len(steps)
            and isinstance(steps[run.cursor], dict)
        ):
            step_id = steps[run.cursor].get("id")
        if not isinstance(step_id, str):
            return None, None
        snapshot = {
            "stepId": step_id,
            "attempt": 1,
            "loopIndex": None,
            "status": "failed",
            "inputSnapshot": None,
            "outputSnapshot": None,
            "errorSnapshot": _error(
                {
                    "code": error.get("code", ErrorCode.INTERNAL_ERROR.value),
                    "message": error.get("message", "failed"),
                },
                policy,
            ),
            "truncated": False,
        }
        return step_id, snapshot


def _error(error: dict[str, Any], policy: CapturePolicy) -> dict[str, Any]:
    """`{"code", "message"}`: replay raises with both, so a message is always there (a generic one
    where the capture mode keeps no text)."""
    code = str(error.get("code", ErrorCode.INTERNAL_ERROR.value))
    message = error.get("message")
    if policy.mode == "redacted" and isinstance(message, str):
        message = redact(message, policy.redact_fields)
    elif not policy.snapshots:
        message = f"step failed with {code}"
    return {"code": code, "message": message if isinstance(message, str) else f"step failed with {code}"}
