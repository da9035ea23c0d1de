"""`serve --reload`: watch the flow folders and save changed flow files as drafts, while serving.

The watcher is a thread with its own event loop and its own store connection: the server's loop
stays untouched, and runs pick up a new draft as they do any saved draft (by its revision).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from noukai_server.cli.flow_files import is_flow_file, load_flow_files

if TYPE_CHECKING:
    from noukai_server.config import ServerConfig
    from noukai_server.runtime.flow_admin import FlowChecks

logger = logging.getLogger("noukai_server.cli")


class FlowWatcher:
    def __init__(self, config: ServerConfig, checks: FlowChecks) -> None:
        self._config = config
        self._checks = checks
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="noukai-flow-reload", daemon=True)

    def start(self) -> None:
        self._thread.start()
        folders = ", ".join(str(folder) for folder in self._config.flows_dirs)
        logger.info("watching %s for flow changes", folders)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _watch(self) -> None:
        import watchfiles

        folders = [str(folder) for folder in self._config.flows_dirs]
        for changes in watchfiles.watch(*folders, stop_event=self._stop, debounce=200, rust_timeout=500):
            changed = sorted({Path(path) for kind, path in changes if kind != watchfiles.Change.deleted})
            for kind, path in sorted(changes):
                if kind == watchfiles.Change.deleted and is_flow_file(Path(path)):
                    logger.info("flow file %s was removed; its flow stays in the store", path)
            paths = [path for path in changed if is_flow_file(path) and path.is_file()]
            if paths:
                try:
                    asyncio.run(self._reload(paths))
                except Exception:  # a reload failure must not end the watching (nor the server)
                    logger.exception("reloading %s failed", ", ".join(map(str, paths)))

    async def _reload(self, paths: list[Path]) -> None:
        from noukai_server.store import Store

        store = await Store.connect(self._config.resolved_database_url)
        try:
            for path in paths:
                logger.info("flow file %s changed", path)
            await load_flow_files(store, self._config, paths, self._checks)
        finally:
            await store.close()
