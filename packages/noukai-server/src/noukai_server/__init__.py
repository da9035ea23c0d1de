"""The Noukai server: runs LLM flows and streams every step as events.

One folder per concept (see docs/architecture.md for the map and the direction of imports):
`flows` (the flow language), `providers` (model access), `engine` (runs steps, emits events),
`store` (schema, migrations, lease queue), `bus` (live fan-out), `eventlog` (writer, follower,
retention), `runtime` (run service and workers), `api` (HTTP), `cli` (the `noukai` command).
Importing this package loads none of them.
"""

from importlib.metadata import version

__version__ = version("noukai-server")
"""Written once, in this distribution's pyproject.toml."""

__all__ = ["__version__"]
