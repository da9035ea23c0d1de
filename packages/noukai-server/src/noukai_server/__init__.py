"""The Noukai server: runs LLM flows and streams every step as events.

One folder per concept (see docs/architecture.md for the map and the direction of imports):
`flows` (the flow language), `providers` (model access), `engine` (runs steps, emits events),
`store` (schema, migrations, lease queue), `bus` (live fan-out), `eventlog` (writer, follower,
retention), `runtime` (run service and workers), `api` (HTTP), `cli` (the `noukai` command).
Importing this package loads none of them.
"""

from importlib.metadata import version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from noukai_server.local import AsyncLocalStream, LocalFlow, LocalResult, LocalStream, load_flow

__version__ = version("noukai-server")
"""Written once, in this distribution's pyproject.toml."""

_LOCAL = frozenset({"AsyncLocalStream", "LocalFlow", "LocalResult", "LocalStream", "load_flow"})
"""In-process flows (`noukai_server.local`), imported on first use so that importing this
package still loads nothing else."""


def __getattr__(name: str) -> Any:
    if name in _LOCAL:
        from noukai_server import local

        return getattr(local, name)
    raise AttributeError(f"module 'noukai_server' has no attribute {name!r}")


__all__ = ["AsyncLocalStream", "LocalFlow", "LocalResult", "LocalStream", "__version__", "load_flow"]
