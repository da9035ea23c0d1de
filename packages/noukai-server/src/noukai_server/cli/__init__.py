"""The `noukai` command: serve, flows, keys and run."""

from noukai_server.cli.app import app, main

__all__ = ["app", "main"]
