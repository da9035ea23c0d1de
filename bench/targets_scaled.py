"""The scaled-out Noukai target: one API process (`noukai serve --no-workers`) and one worker process
(`noukai worker`) on a fresh PostgreSQL database and the Redis bus (`deployment.ScaledDeployment`).

Clients talk to the API process only, with the same requests as the embedded target: a run created
there is queued in PostgreSQL, announced on Redis, claimed and executed by the worker, whose events
are stored in PostgreSQL and published on Redis, where the API process hears them and streams them.

Measured per process role: `api`, `worker` (the target's own server, summed into the server
columns), and apart from them `postgres` and `redis`: each whole server (see
`services.postgres_server_pid`), shared with anything else using it on this machine, whose share
shows as "others" CPU when the bench waits for the machine to go quiet before a target.
"""

from __future__ import annotations

from pathlib import Path

from . import services
from .deployment import ScaledDeployment, nofile_limit
from .targets import TARGETS, NoukaiTarget, Target, free_port
from .targets_telemetry import TELEMETRY_TARGETS

WORKER_CONCURRENCY = 64
"""Runs the worker executes at once: the embedded server's default, so both have the same slots."""


class ScaledNoukaiTarget(NoukaiTarget):
    name = "noukai-scaled"
    server_roles = ("api", "worker")

    def __init__(self, org: str = "dev", project: str = "main") -> None:
        super().__init__(org, project)
        self.deployment = ScaledDeployment(workers=1, worker_concurrency=WORKER_CONCURRENCY)
        self._redis_pid: int | None = None
        self._postgres_pid: int | None = None

    def command(self, workdir: Path, port: int) -> list[str]:
        raise NotImplementedError("started by ScaledDeployment (several processes)")

    async def start(self, timeout: float = 60.0) -> None:
        """Raises `services.ServiceUnavailable` when PostgreSQL or Redis is not reachable."""
        self.port = free_port()
        await self.deployment.start(self.port, timeout)
        self._auth = {"Authorization": f"Bearer {self.deployment.api_key}"}
        self._redis_pid = services.redis_pid()
        self._postgres_pid = services.postgres_server_pid()

    async def stop(self) -> None:
        await self.deployment.stop()

    @property
    def pid(self) -> int:
        return self.deployment.api.popen.pid

    def processes(self) -> dict[str, list[int]]:
        roles = {"api": [self.pid], "worker": [w.popen.pid for w in self.deployment.worker_processes]}
        for role, pid in (("postgres", self._postgres_pid), ("redis", self._redis_pid)):
            if pid is not None:
                roles[role] = [pid]
        return roles

    def log_tail(self, lines: int = 40) -> str:
        return self.deployment.log_tails()

    def run_times(self, run_id: str) -> services.RunTimes:
        return services.postgres_run_times(self.deployment.database_url, run_id)

    def facts(self) -> dict[str, object]:
        """What the report says about this deployment (read at the end of its benchmark)."""
        return {
            "worker_concurrency": WORKER_CONCURRENCY,
            "nofile_api": nofile_limit(self.pid),
            "postgres_usage": services.postgres_usage(self.deployment.database_url),
            **services.versions(),
        }


ALL_TARGETS: dict[str, type[Target]] = {
    **TARGETS,
    ScaledNoukaiTarget.name: ScaledNoukaiTarget,
    **TELEMETRY_TARGETS,
}
"""Every target `python -m bench --targets` can name."""
