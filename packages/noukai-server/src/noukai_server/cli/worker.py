"""`noukai worker`: a process that only executes runs (no HTTP), for scaled-out deployments.

It reads the same settings as `noukai serve` (noukai.toml, `NOUKAI_*` variables, the same options),
builds the engine through the same code (`runtime.assembly`), with the operator's functions and
tools, and claims runs from the lease queue until
SIGTERM or SIGINT. Then it drains: no new claims, each run goes on to the end of its current step
and is handed back there, and after `--grace-seconds` whatever is still inside a step is cut off and
handed back too, all at once rather than when the leases expire. A second signal ends the grace
period at once. Exit 0 after a drain, 1 when the settings are wrong or the store or the bus cannot
be opened (the message says why).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from noukai_server.cli.config_cmd import ConfigFileOption
from noukai_server.config import LOG_FORMATS, LOG_LEVELS, ConfigError

if TYPE_CHECKING:
    from noukai_server.config import ServerConfig

logger = logging.getLogger("noukai.worker")


def _one_of(allowed: tuple[str, ...]) -> Callable[[str | None], str | None]:
    def check(value: str | None) -> str | None:
        if value is None or value.lower() in allowed:
            return value.lower() if value else None
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(allowed)}")

    return check


def worker(
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            show_default=False,
            help="Where the embedded store lives (default .noukai; NOUKAI_DATA_DIR).",
        ),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            show_default=False,
            help="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db (default: SQLite; "
            "NOUKAI_DATABASE_URL).",
        ),
    ] = None,
    redis_url: Annotated[
        str | None,
        typer.Option(
            "--redis-url",
            show_default=False,
            help="The Redis bus, e.g. redis://host:6379/0 (NOUKAI_REDIS_URL; default none: cancels "
            "and wake-ups then come through the store, within about a second).",
        ),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1, show_default=False, help="Runs executed at once (default 64; NOUKAI_WORKER_CONCURRENCY)."
        ),
    ] = None,
    grace_seconds: Annotated[
        float | None,
        typer.Option(
            "--grace-seconds",
            min=0,
            help="On SIGTERM, how long runs may finish their current step before they are handed "
            "back mid-step (default 30).",
        ),
    ] = None,
    log_level: Annotated[
        str | None,
        typer.Option(
            "--log-level",
            callback=_one_of(LOG_LEVELS),
            metavar="[" + "|".join(LOG_LEVELS) + "]",
            help="What the log (stderr) shows; or NOUKAI_LOG_LEVEL (default info).",
        ),
    ] = None,
    log_format: Annotated[
        str | None,
        typer.Option(
            "--log-format",
            callback=_one_of(LOG_FORMATS),
            metavar="[" + "|".join(LOG_FORMATS) + "]",
            help="text, or json: one object per line; or NOUKAI_LOG_FORMAT (default text).",
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            min=0,
            max=65535,
            show_default=False,
            help="Serve this worker's Prometheus metrics on this port (no access control: bind it "
            "to a private interface with --metrics-host). Default: none; an API process on the "
            "same host serves them through PROMETHEUS_MULTIPROC_DIR.",
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option("--metrics-host", help="Interface for --metrics-port.")
    ] = "127.0.0.1",
    config_file: ConfigFileOption = None,
) -> None:
    """Execute runs from the shared store (no HTTP): scale out with any number of these beside
    `noukai serve --no-workers`."""
    from noukai_server import logs
    from noukai_server.settings import load_server_config

    try:
        config = load_server_config(
            config_file,
            None,
            data_dir=data_dir,
            database_url=database_url,
            redis_url=redis_url,
            worker_concurrency=concurrency,
            worker_grace_seconds=grace_seconds,
            log_level=log_level,
            log_format=log_format,
        )
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    logs.configure(config.log_level, config.log_format)
    if config.metrics_enabled:
        _start_metrics(metrics_port, metrics_host)
    elif metrics_port is not None:
        typer.echo("error: --metrics-port needs [metrics] enabled = true", err=True)
        raise typer.Exit(code=1)
    raise typer.Exit(code=asyncio.run(run_worker(config)))


def _start_metrics(port: int | None, host: str) -> None:
    from noukai_server.telemetry import metrics_exporter, metrics_multiproc

    try:
        metrics_multiproc.start()
    except metrics_multiproc.MultiprocDirUnusable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    if port is not None:
        try:
            bound = metrics_exporter.serve(port, host)
        except OSError as exc:
            typer.echo(f"error: cannot serve metrics on {host}:{port}: {exc}", err=True)
            raise typer.Exit(code=1) from exc
        logger.info("worker metrics on http://%s:%d/metrics", host, bound)


async def run_worker(config: ServerConfig) -> int:
    """Run a worker until SIGTERM or SIGINT, then drain it; the process's exit code."""
    from noukai_server.runtime.assembly import Execution, StartupFailed, org_caps
    from noukai_server.settings.extensions import build_registries
    from noukai_server.telemetry import tracing

    tracing.start()  # OTEL_* variables; shut down (buffered spans exported) on the way out
    functions, tools = build_registries(config)
    try:
        execution = await Execution.open(config, functions=functions, tools=tools)
    except StartupFailed as exc:
        logger.error("worker not started: %s", exc)
        typer.echo(f"error: {exc}", err=True)
        return 1
    try:
        worker = execution.worker(config)
        signals = _Signals(asyncio.get_running_loop())
        await worker.start()
        caps = org_caps(config)
        logger.info(
            "worker %s started: %d slots, at most %d running per org (deployment-wide), store %s, bus %s",
            worker.worker_id,
            config.worker_concurrency,
            caps.default or config.worker_concurrency,
            execution.store.dialect,
            "redis" if config.redis_url else "none (cancels and wake-ups through the store)",
            extra={"worker": worker.worker_id},
        )
        await signals.first.wait()
        logger.info(
            "worker %s draining: no new claims; runs finish their step (up to %.0f s) and are handed back",
            worker.worker_id,
            config.worker_grace_seconds,
            extra={"worker": worker.worker_id},
        )
        drain = asyncio.create_task(worker.drain(config.worker_grace_seconds))
        hurry = asyncio.create_task(signals.second.wait())
        await asyncio.wait({drain, hurry}, return_when=asyncio.FIRST_COMPLETED)
        if not drain.done():
            logger.warning("worker %s: second signal, handing every run back now", worker.worker_id)
            worker.hurry()
        handed = await drain
        hurry.cancel()
        logger.info(
            "worker %s stopped; %d run(s) handed back",
            worker.worker_id,
            len(handed),
            extra={"worker": worker.worker_id},
        )
        return 0
    finally:
        await execution.aclose()
        from noukai_server.telemetry import metrics_multiproc

        metrics_multiproc.process_exit()  # multiprocess mode: this worker's slots leave the sums
        tracing.shutdown()


class _Signals:
    """SIGTERM / SIGINT as events: the first starts the drain, the second cuts its grace short."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.first = asyncio.Event()
        self.second = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._received)

    def _received(self) -> None:
        (self.second if self.first.is_set() else self.first).set()
