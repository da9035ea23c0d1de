"""Jobs: runs submitted to the server's queue (`execute_async()`), polled for their result."""

from __future__ import annotations

import time
from urllib.parse import quote

from noukai._constants import JOB_NOT_FOUND_GRACE, JOB_POLL_INTERVAL, JOB_WAIT_TIMEOUT
from noukai._errors import APITimeoutError, FlowNotFoundError
from noukai._models import JobAccepted, JobStatus
from noukai._transport import AsyncTransport, Call, SyncTransport


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
        """The job's status now."""
        try:
            return JobStatus.model_validate(self._transport.request(self._call(timeout)).body)
        except FlowNotFoundError as error:
            return self._not_found(error)

    def wait(self, timeout: float = JOB_WAIT_TIMEOUT, poll_interval: float = JOB_POLL_INTERVAL) -> JobStatus:
        """Poll until the job completed or failed; `APITimeoutError` after `timeout` seconds."""
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
        try:
            return JobStatus.model_validate((await self._transport.request(self._call(timeout))).body)
        except FlowNotFoundError as error:
            return self._not_found(error)

    async def wait(
        self,
        timeout: float = JOB_WAIT_TIMEOUT,
        poll_interval: float = JOB_POLL_INTERVAL,
    ) -> JobStatus:
        deadline = self._check_wait(timeout, poll_interval)
        while not (status := await self.poll()).done:
            await self._transport.sleep(self._next_sleep(deadline, poll_interval, timeout))
        return status
