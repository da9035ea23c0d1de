"""Jobs: runs submitted to the server's queue (`execute_async()`), polled for their result.

The job answer (`GET .../jobs/{id}`) keeps the four statuses the published SDK accepts, so a
cancelled run reads "failed" there, with a `RUN_CANCELLED: ...` error. A poll that reads "failed"
therefore asks the run itself (`GET /runs/{id}`) and reports "cancelled" when the run was; when
that answer cannot be had (an older server, a key without access), the error's code decides.
"""

from __future__ import annotations

import time
from urllib.parse import quote

from pydantic import ValidationError

from noukai._constants import JOB_NOT_FOUND_GRACE, JOB_POLL_INTERVAL, JOB_WAIT_TIMEOUT
from noukai._errors import APITimeoutError, FlowNotFoundError, NoukaiError
from noukai._models import JobAccepted, JobStatus, RunInfo
from noukai._transport import AsyncTransport, Call, SyncTransport

_CANCELLED_CODE = "RUN_CANCELLED"


class _JobBase:
    def __init__(self, jobs_path: str, accepted: JobAccepted, *, submitted_at: float) -> None:
        self.accepted = accepted
        self.execution_id = accepted.execution_id
        self._path = f"{jobs_path}/{quote(accepted.execution_id, safe='')}"
        self._submitted_at = submitted_at

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.execution_id}>"

    def _call(self, timeout: float | None) -> Call:
        return Call("GET", self._path, timeout=timeout)

    def _run_call(self, timeout: float | None) -> Call:
        return Call("GET", f"/runs/{quote(self.execution_id, safe='')}", timeout=timeout)

    @staticmethod
    def _settle(status: JobStatus, run: RunInfo | None) -> JobStatus:
        """A "failed" job whose run was cancelled (by the run's own status, else by the error's
        code) becomes "cancelled"; anything else is returned as it is."""
        cancelled = run.status == "cancelled" if run is not None else status.error_code == _CANCELLED_CODE
        return status.model_copy(update={"status": "cancelled"}) if cancelled else status

    def _not_found(self, error: FlowNotFoundError) -> JobStatus:
        # The queue may not know a job it accepted a moment ago.
        if time.monotonic() - self._submitted_at < JOB_NOT_FOUND_GRACE:
            return JobStatus(execution_id=self.execution_id, status="pending")
        raise error

    @staticmethod
    def _check_wait(timeout: float, poll_interval: float) -> float:
        if not timeout > 0 or not poll_interval > 0:
            raise ValueError("timeout and poll_interval must be positive")
        return time.monotonic() + timeout

    def _next_sleep(self, deadline: float, poll_interval: float, timeout: float) -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise APITimeoutError(
                f"job {self.execution_id} did not finish within {timeout:g} s", execution_id=self.execution_id
            )
        return min(poll_interval, remaining)


class Job(_JobBase):
    """A queued run (sync client)."""

    def __init__(
        self, transport: SyncTransport, jobs_path: str, accepted: JobAccepted, *, submitted_at: float
    ) -> None:
        super().__init__(jobs_path, accepted, submitted_at=submitted_at)
        self._transport = transport

    def poll(self, *, timeout: float | None = None) -> JobStatus:
        """The job's status now: "pending", "running", "completed", "failed" or "cancelled"."""
        try:
            status = JobStatus.model_validate(self._transport.request(self._call(timeout)).body)
        except FlowNotFoundError as error:
            return self._not_found(error)
        if status.status != "failed":
            return status
        try:
            run: RunInfo | None = RunInfo.model_validate(
                self._transport.request(self._run_call(timeout)).body
            )
        except (NoukaiError, ValidationError):
            run = None
        return self._settle(status, run)

    def wait(self, timeout: float = JOB_WAIT_TIMEOUT, poll_interval: float = JOB_POLL_INTERVAL) -> JobStatus:
        """Poll until the job completed, failed or was cancelled, and return its status (a failed
        or cancelled job is returned, not raised); `APITimeoutError` after `timeout` seconds."""
        deadline = self._check_wait(timeout, poll_interval)
        while not (status := self.poll()).done:
            self._transport.sleep(self._next_sleep(deadline, poll_interval, timeout))
        return status


class AsyncJob(_JobBase):
    """A queued run (async client)."""

    def __init__(
        self, transport: AsyncTransport, jobs_path: str, accepted: JobAccepted, *, submitted_at: float
    ) -> None:
        super().__init__(jobs_path, accepted, submitted_at=submitted_at)
        self._transport = transport

    async def poll(self, *, timeout: float | None = None) -> JobStatus:
        """See `Job.poll`."""
        try:
            status = JobStatus.model_validate((await self._transport.request(self._call(timeout))).body)
        except FlowNotFoundError as error:
            return self._not_found(error)
        if status.status != "failed":
            return status
        try:
            run: RunInfo | None = RunInfo.model_validate(
                (await self._transport.request(self._run_call(timeout))).body
            )
        except (NoukaiError, ValidationError):
            run = None
        return self._settle(status, run)

    async def wait(
        self,
        timeout: float = JOB_WAIT_TIMEOUT,
        poll_interval: float = JOB_POLL_INTERVAL,
    ) -> JobStatus:
        """See `Job.wait`."""
        deadline = self._check_wait(timeout, poll_interval)
        while not (status := await self.poll()).done:
            await self._transport.sleep(self._next_sleep(deadline, poll_interval, timeout))
        return status
